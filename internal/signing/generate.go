package signing

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// noExpiry is RFC 5280's NotAfter for a certificate without a defined
// expiration: generated certificates cannot be renewed, since the CA key is
// discarded, so they do not expire.
var noExpiry = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// generate creates a CA and a signing key and certificate issued by it, and
// writes the key to KeyFile and the signing and CA certificates to CertFile
// in dir. Existing files are never replaced.
func generate(dir string, now time.Time) error {
	caKey, err := rsa.GenerateKey(rand.Reader, MinKeyBits)
	if err != nil {
		return fmt.Errorf("generate identity CA key: %w", err)
	}
	key, err := rsa.GenerateKey(rand.Reader, MinKeyBits)
	if err != nil {
		return fmt.Errorf("generate identity signing key: %w", err)
	}
	notBefore := now.Add(-time.Hour).UTC().Truncate(time.Second) // hosts whose clocks lag still accept it
	caTemplate := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "imds identity CA"},
		NotBefore:             notBefore,
		NotAfter:              noExpiry,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("create identity CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return fmt.Errorf("create identity CA certificate: %w", err)
	}
	leafTemplate := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "imds instance identity signer"},
		NotBefore:             notBefore,
		NotAfter:              noExpiry,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTemplate, ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("create identity signing certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode identity signing key: %w", err)
	}
	certPEM := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})...)

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create key directory: %w", err)
	}
	// The key goes first: a certificate without its key is never left behind.
	if err := createFile(filepath.Join(dir, KeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return createFile(filepath.Join(dir, CertFile), certPEM, 0o644)
}

// serial returns a random positive 128-bit certificate serial number.
func serial() *big.Int {
	b := make([]byte, 16)
	rand.Read(b)
	b[0] &= 0x7f
	b[0] |= 0x40 // no leading zero byte: always 16 octets when encoded
	return new(big.Int).SetBytes(b)
}

// createFile writes data to path with perm, atomically: the file appears
// complete or not at all. It fails with an error satisfying
// errors.Is(err, fs.ErrExist) when path exists.
func createFile(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(perm)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// A hard link, unlike a rename, never replaces an existing file.
	if err := os.Link(tmp.Name(), path); err != nil {
		var le *os.LinkError
		if errors.As(err, &le) {
			err = le.Err
		}
		return fmt.Errorf("create %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
