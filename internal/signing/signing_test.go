package signing

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// document is an identity document as EC2 formats it, without a final newline.
var document = []byte(`{
  "accountId" : "123456789012",
  "architecture" : "arm64",
  "availabilityZone" : "eu-central-1b",
  "billingProducts" : null,
  "devpayProductCodes" : null,
  "marketplaceProductCodes" : null,
  "imageId" : "ami-0a5f22e9f90ef8ef8",
  "instanceId" : "i-01b0f6cf495625076",
  "instanceType" : "t4g.medium",
  "kernelId" : null,
  "pendingTime" : "2023-12-04T10:04:05Z",
  "privateIp" : "172.26.2.30",
  "ramdiskId" : null,
  "region" : "eu-central-1",
  "version" : "2017-09-30"
}`)

// newSigner returns a signer generated into a fresh directory, and that directory.
func newSigner(t testing.TB) (*Signer, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	s, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatalf("LoadOrCreate: %v", err)
	}
	return s, dir
}

func sign(t testing.TB, s *Signer, doc []byte) Signatures {
	t.Helper()
	sigs, err := s.Sign(doc)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return sigs
}

func TestLoadOrCreateGeneratesAndReloads(t *testing.T) {
	s, dir := newSigner(t)
	for name, want := range map[string]os.FileMode{KeyFile: 0o600, CertFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode: got %v, want %v", name, got, want)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("got %d files in the key directory, want 2 (no temporary files left)", len(entries))
	}

	chain, err := parseCertificates(s.CertificatePEM())
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 2 {
		t.Fatalf("got %d certificates, want the signer and the CA", len(chain))
	}
	leaf, ca := chain[0], chain[1]
	if leaf.IsCA || !ca.IsCA {
		t.Errorf("IsCA: signer %v, CA %v; want false, true", leaf.IsCA, ca.IsCA)
	}
	if err := leaf.CheckSignatureFrom(ca); err != nil {
		t.Errorf("signer not issued by the CA: %v", err)
	}
	if err := ca.CheckSignatureFrom(ca); err != nil {
		t.Errorf("CA not self-signed: %v", err)
	}
	if got := leaf.PublicKey.(*rsa.PublicKey).N.BitLen(); got != 2048 {
		t.Errorf("key size: got %d, want 2048", got)
	}

	again, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.CertificatePEM(), s.CertificatePEM()) {
		t.Error("a second LoadOrCreate produced a different certificate; want the stored one")
	}
	read, err := ReadCertificates(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(read, s.CertificatePEM()) {
		t.Error("ReadCertificates differs from CertificatePEM")
	}
}

func TestLoadOrCreateRefusesHalfAPair(t *testing.T) {
	_, src := newSigner(t)
	for _, present := range []string{KeyFile, CertFile} {
		t.Run(present, func(t *testing.T) {
			dir := t.TempDir()
			b, err := os.ReadFile(filepath.Join(src, present))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, present), b, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = LoadOrCreate(dir)
			if err == nil {
				t.Fatal("LoadOrCreate succeeded with half a pair; want an error")
			}
			missing := KeyFile
			if present == KeyFile {
				missing = CertFile
			}
			if !strings.Contains(err.Error(), missing) {
				t.Errorf("error %q does not name the missing %s", err, missing)
			}
			if _, err := os.Stat(filepath.Join(dir, missing)); !os.IsNotExist(err) {
				t.Errorf("%s was created; want the directory left alone", missing)
			}
		})
	}
}

func TestLoadRefusesBadKeys(t *testing.T) {
	_, good := newSigner(t)
	_, other := newSigner(t)
	goodCert, err := os.ReadFile(filepath.Join(good, CertFile))
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := os.ReadFile(filepath.Join(other, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		key, cert []byte
		want      string
	}{
		{"key of another certificate", otherKey, goodCert, "does not match the key"},
		{"1024-bit key", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(small)}), goodCert, "at least 2048"},
		{"ECDSA key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}), goodCert, "need RSA"},
		{"encrypted key", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{0x30}}), goodCert, "encrypted"},
		{"not PEM", []byte("hello"), goodCert, "no PEM block"},
		{"no certificate", otherKey, []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), "only CERTIFICATE"},
		{"empty certificate file", otherKey, nil, "no PEM CERTIFICATE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, KeyFile), tt.key, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, CertFile), tt.cert, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadOrCreate(dir)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestSignatureEncoding(t *testing.T) {
	s, _ := newSigner(t)
	sigs := sign(t, s, document)
	for name, body := range map[string][]byte{"pkcs7": sigs.PKCS7, "signature": sigs.Signature, "rsa2048": sigs.RSA2048} {
		lines := strings.Split(string(body), "\n")
		for i, l := range lines {
			last := i == len(lines)-1
			if !last && len(l) != 76 || last && (len(l) == 0 || len(l) > 76) {
				t.Errorf("%s line %d has %d characters; want 76, and 1 to 76 on the last", name, i+1, len(l))
			}
		}
		if _, err := base64.StdEncoding.DecodeString(strings.Join(lines, "")); err != nil {
			t.Errorf("%s is not standard base64: %v", name, err)
		}
	}
	raw, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(string(sigs.Signature), "\n", ""))
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != 256 {
		t.Errorf("signature has %d bytes, want 256 (RSA-2048)", len(raw))
	}
	if got, want := len(sigs.Signature), 344+4; got != want {
		t.Errorf("signature leaf has %d bytes, want %d (344 characters in 5 lines)", got, want)
	}
}

func TestVerifyGo(t *testing.T) {
	s, _ := newSigner(t)
	other, _ := newSigner(t)
	sigs := sign(t, s, document)
	cert := s.CertificatePEM()
	chain, err := parseCertificates(cert)
	if err != nil {
		t.Fatal(err)
	}
	leafOnly := encodeCertificates(chain[:1])
	caOnly := encodeCertificates(chain[1:])

	rawSig, err := decodeBase64(sigs.Signature)
	if err != nil {
		t.Fatal(err)
	}
	tamperedDoc := bytes.Replace(document, []byte("i-01b0f6cf495625076"), []byte("i-01b0f6cf495625077"), 1)
	tamperedSig := bytes.Clone(rawSig)
	tamperedSig[100] ^= 1

	t.Run("signature", func(t *testing.T) {
		tests := []struct {
			name           string
			doc, sig, cert []byte
			wantErr        error
		}{
			{"served body, signer and CA", document, sigs.Signature, cert, nil},
			{"served body, signer alone", document, sigs.Signature, leafOnly, nil},
			{"raw bytes", document, rawSig, cert, nil},
			{"document changed", tamperedDoc, sigs.Signature, cert, ErrSignature},
			{"document with a final newline", append(bytes.Clone(document), '\n'), sigs.Signature, cert, ErrSignature},
			{"signature changed", document, tamperedSig, cert, ErrSignature},
			{"another signer's certificate", document, sigs.Signature, other.CertificatePEM(), ErrSignature},
			{"CA alone", document, sigs.Signature, caOnly, ErrSignature},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := Verify(tt.doc, tt.sig, tt.cert)
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("Verify: got %v, want %v", err, tt.wantErr)
				}
			})
		}
	})

	der, err := decodeBase64(sigs.PKCS7)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(der, []byte("i-01b0f6cf495625076"))
	if i < 0 {
		t.Fatal("the document is not attached to the PKCS #7 message")
	}
	tamperedDER := bytes.Clone(der)
	tamperedDER[i+len("i-01b0f6cf49562507")] = '7'
	pemBody := pem.EncodeToMemory(&pem.Block{Type: "PKCS7", Bytes: der})

	t.Run("pkcs7", func(t *testing.T) {
		tests := []struct {
			name       string
			body, cert []byte
			wantErr    error
		}{
			{"pkcs7 leaf, signer and CA", sigs.PKCS7, cert, nil},
			{"rsa2048 leaf, signer and CA", sigs.RSA2048, cert, nil},
			{"signer alone", sigs.RSA2048, leafOnly, nil},
			{"CA alone", sigs.RSA2048, caOnly, nil},
			{"PEM", pemBody, cert, nil},
			{"DER", der, cert, nil},
			{"attached document changed", wrap(tamperedDER), cert, ErrSignature},
			{"another signer's certificates", sigs.RSA2048, other.CertificatePEM(), ErrUntrustedSigner},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := VerifyPKCS7(tt.body, tt.cert)
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("VerifyPKCS7: got %v, want %v", err, tt.wantErr)
				}
				if err == nil && !bytes.Equal(got, document) {
					t.Errorf("VerifyPKCS7 returned %q, want the document", got)
				}
			})
		}
	})
}

func TestVerifyPKCS7RefusesAnEmbeddedImpostor(t *testing.T) {
	// A message signed by another key, embedding its own certificate, must
	// not verify against ours even though it verifies against itself.
	s, _ := newSigner(t)
	impostor, _ := newSigner(t)
	sigs := sign(t, impostor, document)
	if _, err := VerifyPKCS7(sigs.PKCS7, impostor.CertificatePEM()); err != nil {
		t.Fatalf("control: %v", err)
	}
	if _, err := VerifyPKCS7(sigs.PKCS7, s.CertificatePEM()); !errors.Is(err, ErrUntrustedSigner) {
		t.Errorf("got %v, want %v", err, ErrUntrustedSigner)
	}
}

func TestSignConcurrently(t *testing.T) {
	s, _ := newSigner(t)
	cert := s.CertificatePEM()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			doc := append(bytes.Clone(document), byte('0'+i))
			sigs, err := s.Sign(doc)
			if err == nil {
				err = Verify(doc, sigs.Signature, cert)
			}
			if err == nil {
				_, err = VerifyPKCS7(sigs.PKCS7, cert)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	s, _ := newSigner(b)
	for b.Loop() {
		if _, err := s.Sign(document); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzVerifyPKCS7(f *testing.F) {
	dir := filepath.Join(f.TempDir(), "data")
	s, err := LoadOrCreate(dir)
	if err != nil {
		f.Fatal(err)
	}
	sigs, err := s.Sign(document)
	if err != nil {
		f.Fatal(err)
	}
	der, err := decodeBase64(sigs.PKCS7)
	if err != nil {
		f.Fatal(err)
	}
	cert := s.CertificatePEM()
	f.Add(sigs.PKCS7)
	f.Add(der)
	f.Add(der[:len(der)/2])
	f.Add([]byte{0x30, 0x80, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02, 0xa0, 0x80, 0x00, 0x00})
	f.Add([]byte("-----BEGIN PKCS7-----\nMIAG\n-----END PKCS7-----\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		doc, err := VerifyPKCS7(body, cert)
		if err == nil && !bytes.Equal(doc, document) {
			t.Errorf("verified a document we never signed: %q", doc)
		}
	})
}
