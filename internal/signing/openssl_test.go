package signing

import (
	"bytes"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imds/imds/internal/testenv"
)

// These tests check the signatures with the commands AWS documents for
// verifying instance identity documents, given the imds certificate file in
// place of AWS's public certificate.

// requireOpenSSL skips the test when openssl is missing, except in CI.
func requireOpenSSL(t *testing.T) {
	t.Helper()
	testenv.Command(t, "openssl")
}

// openssl runs openssl with args in dir and returns its standard output.
func openssl(t *testing.T, dir string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "openssl", args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

func mustOpenSSL(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, stderr, err := openssl(t, dir, args...)
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return out
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// armour adds the lines AWS's instructions add around a PKCS #7 leaf body.
func armour(body []byte) []byte {
	return []byte("-----BEGIN PKCS7-----\n" + string(body) + "\n-----END PKCS7-----\n")
}

// awsFiles lays out the files of AWS's instructions in a new directory:
// document, signature (base64-decoded), pkcs7 and rsa2048 (armoured),
// certificate, and key (extracted from certificate with openssl x509).
func awsFiles(t *testing.T, doc []byte, sigs Signatures, certPEM []byte) string {
	t.Helper()
	dir := t.TempDir()
	raw, err := decodeBase64(sigs.Signature)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "document"), doc)
	writeFile(t, filepath.Join(dir, "signature"), raw)
	writeFile(t, filepath.Join(dir, "pkcs7"), armour(sigs.PKCS7))
	writeFile(t, filepath.Join(dir, "rsa2048"), armour(sigs.RSA2048))
	writeFile(t, filepath.Join(dir, "certificate"), certPEM)
	writeFile(t, filepath.Join(dir, "key"), []byte(mustOpenSSL(t, dir, "x509", "-pubkey", "-noout", "-in", "certificate")))
	return dir
}

// awsCommands are AWS's documented verification commands for each leaf,
// plus the stricter forms a verifier who does not trust the message's own
// certificates uses. want is what a successful run prints to stdout.
func awsCommands(doc []byte) []struct {
	name string
	args []string
	want string
} {
	d := string(doc)
	return []struct {
		name string
		args []string
		want string
	}{
		{"signature", []string{"dgst", "-sha256", "-verify", "key", "-signature", "signature", "document"}, "Verified OK\n"},
		{"pkcs7 with -content", []string{"smime", "-verify", "-in", "pkcs7", "-inform", "PEM", "-content", "document", "-certfile", "certificate", "-noverify"}, d},
		{"pkcs7 attached", []string{"smime", "-verify", "-in", "pkcs7", "-inform", "PEM", "-certfile", "certificate", "-noverify"}, d},
		{"rsa2048 with -content", []string{"smime", "-verify", "-in", "rsa2048", "-inform", "PEM", "-content", "document", "-certfile", "certificate", "-noverify"}, d},
		{"rsa2048 attached", []string{"smime", "-verify", "-in", "rsa2048", "-inform", "PEM", "-certfile", "certificate", "-noverify"}, d},
		{"rsa2048 -nointern", []string{"smime", "-verify", "-in", "rsa2048", "-inform", "PEM", "-content", "document", "-nointern", "-certfile", "certificate", "-noverify"}, d},
	}
}

func TestOpenSSLVerifiesAWSCommands(t *testing.T) {
	requireOpenSSL(t)
	s, _ := newSigner(t)
	sigs := sign(t, s, document)
	dir := awsFiles(t, document, sigs, s.CertificatePEM())
	chain, err := parseCertificates(s.CertificatePEM())
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "ca.pem"), encodeCertificates(chain[1:]))

	cmds := awsCommands(document)
	cmds = append(cmds, struct {
		name string
		args []string
		want string
	}{"rsa2048 chained to the imds CA", []string{"smime", "-verify", "-in", "rsa2048", "-inform", "PEM", "-content", "document", "-CAfile", "ca.pem"}, string(document)})
	for _, c := range cmds {
		t.Run(c.name, func(t *testing.T) {
			out, stderr, err := openssl(t, dir, c.args...)
			if err != nil {
				t.Fatalf("openssl %s: %v\n%s", strings.Join(c.args, " "), err, stderr)
			}
			if out != c.want {
				t.Errorf("stdout: got %q, want %q", out, c.want)
			}
			if strings.HasPrefix(c.name, "signature") {
				return
			}
			if !strings.Contains(stderr, "Verification successful") {
				t.Errorf("stderr: got %q, want Verification successful", stderr)
			}
		})
	}
}

func TestOpenSSLRefusesTampering(t *testing.T) {
	requireOpenSSL(t)
	s, _ := newSigner(t)
	other, _ := newSigner(t)
	sigs := sign(t, s, document)
	dir := awsFiles(t, document, sigs, s.CertificatePEM())

	tampered := bytes.Replace(document, []byte("i-01b0f6cf495625076"), []byte("i-01b0f6cf495625077"), 1)
	writeFile(t, filepath.Join(dir, "tampered"), tampered)
	der, err := decodeBase64(sigs.RSA2048)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(der, []byte("i-01b0f6cf495625076"))
	if i < 0 {
		t.Fatal("the document is not attached to the PKCS #7 message")
	}
	der[i+len("i-01b0f6cf49562507")] = '7'
	writeFile(t, filepath.Join(dir, "rsa2048-tampered"), pem.EncodeToMemory(&pem.Block{Type: "PKCS7", Bytes: der}))
	otherChain, err := parseCertificates(other.CertificatePEM())
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "other-certificate"), other.CertificatePEM())
	writeFile(t, filepath.Join(dir, "other-ca.pem"), encodeCertificates(otherChain[1:]))
	writeFile(t, filepath.Join(dir, "other-key"), []byte(mustOpenSSL(t, dir, "x509", "-pubkey", "-noout", "-in", "other-certificate")))

	tests := []struct {
		name string
		args []string
	}{
		{"signature over a changed document", []string{"dgst", "-sha256", "-verify", "key", "-signature", "signature", "tampered"}},
		{"signature against another key", []string{"dgst", "-sha256", "-verify", "other-key", "-signature", "signature", "document"}},
		{"pkcs7 with a changed -content", []string{"smime", "-verify", "-in", "pkcs7", "-inform", "PEM", "-content", "tampered", "-certfile", "certificate", "-noverify"}},
		{"rsa2048 with a changed -content", []string{"smime", "-verify", "-in", "rsa2048", "-inform", "PEM", "-content", "tampered", "-certfile", "certificate", "-noverify"}},
		{"rsa2048 with a changed attached document", []string{"smime", "-verify", "-in", "rsa2048-tampered", "-inform", "PEM", "-certfile", "certificate", "-noverify"}},
		{"rsa2048 against another CA", []string{"smime", "-verify", "-in", "rsa2048", "-inform", "PEM", "-content", "document", "-CAfile", "other-ca.pem"}},
		{"rsa2048 -nointern against another certificate", []string{"smime", "-verify", "-in", "rsa2048", "-inform", "PEM", "-content", "document", "-nointern", "-certfile", "other-certificate", "-noverify"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, stderr, err := openssl(t, dir, tt.args...)
			if err == nil || !strings.Contains(stderr+out, "Verification failure") {
				t.Errorf("openssl %s: got %v, want Verification failure\nstdout: %s\nstderr: %s", strings.Join(tt.args, " "), err, out, stderr)
			}
		})
	}

	// The Go verifier agrees.
	if err := Verify(tampered, sigs.Signature, s.CertificatePEM()); err == nil {
		t.Error("Verify accepted a changed document")
	}
	if _, err := VerifyPKCS7(wrap(der), s.CertificatePEM()); err == nil {
		t.Error("VerifyPKCS7 accepted a changed attached document")
	}
}

// TestOperatorKeys loads keys and certificates made with openssl, signs, and
// verifies with Go and with AWS's commands.
func TestOperatorKeys(t *testing.T) {
	requireOpenSSL(t)
	tests := []struct {
		name string
		// make writes identity-key.pem and identity-cert.pem in dir, and
		// ca.pem when the certificate has an issuer.
		make func(t *testing.T, dir string)
	}{
		{"PKCS #8 key, self-signed certificate", func(t *testing.T, dir string) {
			mustOpenSSL(t, dir, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", KeyFile, "-out", CertFile, "-days", "2", "-subj", "/CN=operator identity")
		}},
		{"PKCS #1 key, 3072 bits", func(t *testing.T, dir string) {
			mustOpenSSL(t, dir, "genrsa", "-traditional", "-out", KeyFile, "3072")
			mustOpenSSL(t, dir, "req", "-new", "-x509", "-key", KeyFile, "-out", CertFile, "-days", "2", "-subj", "/CN=operator identity")
		}},
		{"certificate issued by the operator's CA", func(t *testing.T, dir string) {
			mustOpenSSL(t, dir, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2", "-subj", "/CN=operator CA")
			mustOpenSSL(t, dir, "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", KeyFile, "-out", "signer.csr", "-subj", "/CN=operator identity")
			mustOpenSSL(t, dir, "x509", "-req", "-in", "signer.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-set_serial", "2", "-days", "2", "-out", "signer.pem")
			signer, err := os.ReadFile(filepath.Join(dir, "signer.pem"))
			if err != nil {
				t.Fatal(err)
			}
			ca, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(dir, CertFile), append(signer, ca...))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keyDir := t.TempDir()
			tt.make(t, keyDir)
			before, err := os.ReadFile(filepath.Join(keyDir, KeyFile))
			if err != nil {
				t.Fatal(err)
			}
			s, err := LoadOrCreate(keyDir)
			if err != nil {
				t.Fatalf("LoadOrCreate: %v", err)
			}
			if after, _ := os.ReadFile(filepath.Join(keyDir, KeyFile)); !bytes.Equal(before, after) {
				t.Fatal("the operator's key was replaced")
			}
			sigs := sign(t, s, document)
			cert := s.CertificatePEM()
			if err := Verify(document, sigs.Signature, cert); err != nil {
				t.Errorf("Verify: %v", err)
			}
			for _, body := range [][]byte{sigs.PKCS7, sigs.RSA2048} {
				if doc, err := VerifyPKCS7(body, cert); err != nil || !bytes.Equal(doc, document) {
					t.Errorf("VerifyPKCS7: %v", err)
				}
			}

			dir := awsFiles(t, document, sigs, cert)
			cmds := awsCommands(document)
			if ca, err := os.ReadFile(filepath.Join(keyDir, "ca.pem")); err == nil {
				if _, err := VerifyPKCS7(sigs.RSA2048, ca); err != nil {
					t.Errorf("VerifyPKCS7 against the operator's CA alone: %v", err)
				}
				writeFile(t, filepath.Join(dir, "ca.pem"), ca)
				cmds = append(cmds, struct {
					name string
					args []string
					want string
				}{"rsa2048 chained to the operator's CA", []string{"smime", "-verify", "-in", "rsa2048", "-inform", "PEM", "-content", "document", "-CAfile", "ca.pem"}, string(document)})
			}
			for _, c := range cmds {
				out, stderr, err := openssl(t, dir, c.args...)
				if err != nil || out != c.want {
					t.Errorf("%s: openssl %s: %v\nstdout: %q\nstderr: %s", c.name, strings.Join(c.args, " "), err, out, stderr)
				}
			}
		})
	}

	t.Run("key of another certificate", func(t *testing.T) {
		dir := t.TempDir()
		mustOpenSSL(t, dir, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "unused-key.pem", "-out", CertFile, "-days", "2", "-subj", "/CN=one")
		mustOpenSSL(t, dir, "genrsa", "-out", KeyFile, "2048")
		_, err := LoadOrCreate(dir)
		if err == nil || !strings.Contains(err.Error(), "does not match the key") {
			t.Errorf("got %v, want an error saying the certificate does not match the key", err)
		}
	})
}
