package e2e

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imds/imds/internal/testenv"
)

// identityLeaves are the leaves of dynamic/instance-identity/ that imds
// serves.
var identityLeaves = []string{"document", "pkcs7", "rsa2048", "signature"}

// identityFiles fetches the identity document and its signatures from s,
// as web-1 with IMDSv2, and writes the files of AWS's verification
// instructions in a new directory: document (the exact bytes), signature
// (base64-decoded), pkcs7 and rsa2048 (with the PEM lines AWS's
// instructions add), and the leaves as served in *.leaf.
func identityFiles(t *testing.T, s *server) string {
	t.Helper()
	token := tokenFrom(t, s, "127.0.0.1")
	listing := mustGetFrom(t, s, "127.0.0.1", token, "dynamic/instance-identity/")
	for _, leaf := range identityLeaves {
		if !strings.Contains("\n"+listing+"\n", "\n"+leaf+"\n") {
			t.Errorf("dynamic/instance-identity/ lists %q, want %s among them", listing, leaf)
		}
	}
	dir := t.TempDir()
	for _, leaf := range identityLeaves {
		body := mustGetFrom(t, s, "127.0.0.1", token, "dynamic/instance-identity/"+leaf)
		writeTestFile(t, filepath.Join(dir, leaf+".leaf"), body)
		switch leaf {
		case "document":
			writeTestFile(t, filepath.Join(dir, "document"), body)
		case "signature":
			raw, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(body, "\n", ""))
			if err != nil {
				t.Fatalf("signature leaf %q: %v", body, err)
			}
			writeTestFile(t, filepath.Join(dir, "signature"), string(raw))
		default:
			writeTestFile(t, filepath.Join(dir, leaf), "-----BEGIN PKCS7-----\n"+body+"\n-----END PKCS7-----\n")
		}
	}
	return dir
}

func writeTestFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readTestFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// runIMDS runs the built binary with args.
func runIMDS(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return runCmd(t.Context(), os.Environ(), imdsBin, args...)
}

// identityCert is what `imds identity cert` prints for dataDir (with --ca
// if ca).
func identityCert(t *testing.T, dataDir string, ca bool) string {
	t.Helper()
	args := []string{"identity", "cert", "--data-dir", dataDir}
	if ca {
		args = append(args, "--ca")
	}
	out, stderr, err := runIMDS(t, args...)
	if err != nil || !strings.HasPrefix(out, "-----BEGIN CERTIFICATE-----") {
		t.Fatalf("imds %s: %v\nstdout: %q\nstderr: %s", strings.Join(args, " "), err, out, stderr)
	}
	return out
}

// opensslIn runs openssl with args in dir.
func opensslIn(t *testing.T, openssl, dir string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), openssl, args...)
	cmd.Dir = dir
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// verifyCommands are AWS's documented openssl commands for each leaf, run in
// a directory laid out by identityFiles with the certificate in
// "certificate", its public key in "key" and the CA in "ca.pem", with doc as
// the document file; the last is the stricter form that trusts the CA
// instead of the message's own certificates.
func verifyCommands(doc string) []struct {
	name string
	args []string
} {
	return []struct {
		name string
		args []string
	}{
		{"signature", []string{"dgst", "-sha256", "-verify", "key", "-signature", "signature", doc}},
		{"pkcs7", []string{"smime", "-verify", "-in", "pkcs7", "-inform", "PEM", "-content", doc, "-certfile", "certificate", "-noverify"}},
		{"rsa2048", []string{"smime", "-verify", "-in", "rsa2048", "-inform", "PEM", "-content", doc, "-certfile", "certificate", "-noverify"}},
		{"rsa2048 chained to the CA", []string{"smime", "-verify", "-in", "rsa2048", "-inform", "PEM", "-content", doc, "-CAfile", "ca.pem"}},
	}
}

// TestIdentityDocumentsVerify fetches the identity document and its three
// signatures from the built binary and checks them with AWS's openssl
// commands, given the certificate `imds identity cert` prints, and with
// `imds identity verify`; a changed document fails both.
func TestIdentityDocumentsVerify(t *testing.T) {
	t.Parallel()
	openssl := testenv.Command(t, "openssl")
	dataDir := filepath.Join(t.TempDir(), "data")
	s := startServer(t, webConfig(t, webOptions{}), "--data-dir", dataDir)
	dir := identityFiles(t, s)

	// The certificate used: the one in the data dir, printed by the CLI.
	cert := identityCert(t, dataDir, false)
	if onDisk := readTestFile(t, filepath.Join(dataDir, "identity-cert.pem")); cert != onDisk {
		t.Errorf("imds identity cert printed\n%s\nwant the data dir's identity-cert.pem\n%s", cert, onDisk)
	}
	ca := identityCert(t, dataDir, true)
	if n := strings.Count(ca, "-----BEGIN CERTIFICATE-----"); n != 1 || !strings.HasSuffix(cert, ca) {
		t.Errorf("imds identity cert --ca printed %d certificates, want the last of the chain", n)
	}
	writeTestFile(t, filepath.Join(dir, "certificate"), cert)
	writeTestFile(t, filepath.Join(dir, "ca.pem"), ca)
	key, stderr, err := opensslIn(t, openssl, dir, "x509", "-pubkey", "-noout", "-in", "certificate")
	if err != nil {
		t.Fatalf("openssl x509 -pubkey: %v\n%s", err, stderr)
	}
	writeTestFile(t, filepath.Join(dir, "key"), key)

	doc := readTestFile(t, filepath.Join(dir, "document"))
	if !strings.Contains(doc, `"instanceId" : "`+webInstanceID+`"`) {
		t.Fatalf("document:\n%s\nwant web-1's", doc)
	}
	tampered := strings.Replace(doc, webInstanceID, "i-0a1b2c3d4e5f60719", 1)
	writeTestFile(t, filepath.Join(dir, "tampered"), tampered)

	t.Run("openssl", func(t *testing.T) {
		for _, c := range verifyCommands("document") {
			out, stderr, err := opensslIn(t, openssl, dir, c.args...)
			want := doc
			if c.name == "signature" {
				want = "Verified OK\n"
			}
			if err != nil || out != want {
				t.Errorf("%s: openssl %s: %v\nstdout: %q\nstderr: %s", c.name, strings.Join(c.args, " "), err, out, stderr)
			}
		}
		for _, c := range verifyCommands("tampered") {
			out, stderr, err := opensslIn(t, openssl, dir, c.args...)
			if err == nil || !strings.Contains(out+stderr, "Verification failure") {
				t.Errorf("%s of a changed document: openssl %s: %v, want Verification failure\nstdout: %q\nstderr: %s", c.name, strings.Join(c.args, " "), err, out, stderr)
			}
		}
		// The documents are attached to the PKCS #7 messages.
		for _, leaf := range []string{"pkcs7", "rsa2048"} {
			args := []string{"smime", "-verify", "-in", leaf, "-inform", "PEM", "-certfile", "certificate", "-noverify"}
			if out, stderr, err := opensslIn(t, openssl, dir, args...); err != nil || out != doc {
				t.Errorf("openssl %s: %v\nstdout: %q\nstderr: %s", strings.Join(args, " "), err, out, stderr)
			}
		}
	})

	t.Run("imds identity verify", func(t *testing.T) {
		for _, sig := range []struct{ flag, file string }{
			{"--signature", "signature.leaf"},
			{"--signature", "signature"},
			{"--pkcs7", "pkcs7.leaf"},
			{"--pkcs7", "pkcs7"},
			{"--rsa2048", "rsa2048.leaf"},
			{"--rsa2048", "rsa2048"},
		} {
			for _, trust := range [][]string{
				{"--data-dir", dataDir},
				{"--cert", filepath.Join(dir, "certificate")},
			} {
				args := append([]string{"identity", "verify", "--document", filepath.Join(dir, "document"), sig.flag, filepath.Join(dir, sig.file)}, trust...)
				if out, stderr, err := runIMDS(t, args...); err != nil || out != "verified\n" {
					t.Errorf("imds %s: %v\nstdout: %q\nstderr: %s", strings.Join(args, " "), err, out, stderr)
				}
				args = append([]string{"identity", "verify", "--document", filepath.Join(dir, "tampered"), sig.flag, filepath.Join(dir, sig.file)}, trust...)
				if out, stderr, err := runIMDS(t, args...); err == nil || strings.Contains(out, "verified") {
					t.Errorf("imds %s: %v, want a failure for a changed document\nstdout: %q\nstderr: %s", strings.Join(args, " "), err, out, stderr)
				}
			}
		}
		// The rsa2048 message also verifies against the CA alone.
		args := []string{"identity", "verify", "--document", filepath.Join(dir, "document"), "--rsa2048", filepath.Join(dir, "rsa2048.leaf"), "--cert", filepath.Join(dir, "ca.pem")}
		if out, stderr, err := runIMDS(t, args...); err != nil || out != "verified\n" {
			t.Errorf("imds %s: %v\nstdout: %q\nstderr: %s", strings.Join(args, " "), err, out, stderr)
		}
	})
}

// TestIdentityCertSurvivesRestart restarts the server on the same data dir:
// it signs with the same certificate, so documents served after the restart
// verify with the certificate printed before it.
func TestIdentityCertSurvivesRestart(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "data")
	cfg := webConfig(t, webOptions{})
	first := startServer(t, cfg, "--data-dir", dataDir)
	before := identityFiles(t, first)
	cert := identityCert(t, dataDir, false)
	certFile := filepath.Join(t.TempDir(), "certificate")
	writeTestFile(t, certFile, cert)
	first.stop(t)
	if first.Err() != nil {
		t.Fatalf("first server's exit: %v\n%s", first.Err(), first.Stderr())
	}

	second := startServer(t, cfg, "--data-dir", dataDir)
	after := identityFiles(t, second)
	if got := identityCert(t, dataDir, false); got != cert {
		t.Errorf("after a restart imds identity cert printed\n%s\nwant the certificate from before\n%s", got, cert)
	}
	for _, dir := range []string{before, after} {
		for _, sig := range []struct{ flag, file string }{
			{"--signature", "signature.leaf"},
			{"--pkcs7", "pkcs7.leaf"},
			{"--rsa2048", "rsa2048.leaf"},
		} {
			args := []string{"identity", "verify", "--document", filepath.Join(dir, "document"), sig.flag, filepath.Join(dir, sig.file), "--cert", certFile}
			if out, stderr, err := runIMDS(t, args...); err != nil || out != "verified\n" {
				t.Errorf("imds %s: %v\nstdout: %q\nstderr: %s", strings.Join(args, " "), err, out, stderr)
			}
		}
	}
	// The identity is the instance's, not the process's: the same document.
	if b, a := readTestFile(t, filepath.Join(before, "document")), readTestFile(t, filepath.Join(after, "document")); a != b {
		t.Errorf("document after a restart:\n%s\nwant the same as before:\n%s", a, b)
	}
}

// TestCloudInitIdentityCrawl: cloud-init's EC2 datasource crawls every leaf
// dynamic/instance-identity/ lists, the signatures included; each answers
// 200, so its crawl succeeds.
func TestCloudInitIdentityCrawl(t *testing.T) {
	t.Parallel()
	s := startServer(t, webConfig(t, webOptions{}))
	r := runCloudInit(t, s.URL, "aws", 20)
	if !r.OK {
		t.Fatalf("cloud-init found no datasource; requests:\n%s", requestList(r.Requests))
	}
	if got := r.Identity["instanceId"]; got != webInstanceID {
		t.Errorf("identity document instanceId = %v, want %s", got, webInstanceID)
	}
	crawled := map[string]int{}
	for _, q := range r.Requests {
		_, rest, ok := strings.Cut(q.URL, "/dynamic/instance-identity")
		if !ok {
			continue
		}
		crawled[strings.TrimPrefix(rest, "/")] = intPtr(q.Status)
		if q.Method != http.MethodGet || !q.Token || intPtr(q.Status) != http.StatusOK {
			t.Errorf("%v: want a GET with the token answered 200", q)
		}
	}
	for _, leaf := range identityLeaves {
		if _, ok := crawled[leaf]; !ok {
			t.Errorf("cloud-init did not fetch dynamic/instance-identity/%s; requests:\n%s", leaf, requestList(r.Requests))
		}
	}
	if _, ok := crawled[""]; !ok {
		t.Errorf("cloud-init did not list dynamic/instance-identity/; requests:\n%s", requestList(r.Requests))
	}
}
