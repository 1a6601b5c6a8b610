// Package signing signs instance identity documents the way EC2 serves them
// under dynamic/instance-identity/, and verifies such signatures.
//
// Three leaves carry a signature over the exact bytes of the document:
//
//   - signature: an RSA PKCS #1 v1.5 signature with SHA-256, checked by AWS's
//     documented command against the signing certificate's public key:
//     openssl dgst -sha256 -verify key -signature signature document
//   - rsa2048: a PKCS #7 SignedData (RFC 2315) with the document attached,
//     SHA-256 and RSA, with signed attributes (content type, message digest,
//     signing time) and the signing certificate embedded; AWS's command is
//     openssl smime -verify -in rsa2048 -inform PEM -content document -certfile certificate -noverify
//   - pkcs7: the same SignedData as rsa2048. EC2 signs this leaf with DSA and
//     SHA-1, which current verifiers refuse; the structure, and so AWS's
//     command for it, is the same.
//
// AWS's smime commands pass -noverify, so openssl accepts whatever
// certificate the message itself embeds. A verifier that must know the
// document came from this imds uses -CAfile with the CA certificate instead,
// or -nointern with -certfile, or VerifyPKCS7.
//
// Each leaf is standard base64 with padding, in lines of 76 characters
// separated by "\n" and with no final newline, as EC2 serves them (AWS's own
// metadata mock wraps at 76; a captured 172-character signature leaf was 174
// bytes, two line breaks and no final one). Clients add the
// "-----BEGIN PKCS7-----" and "-----END PKCS7-----" lines themselves.
//
// The signing key and certificate live in a directory, normally the data dir:
// KeyFile holds an RSA private key of at least 2048 bits (PKCS #8 or PKCS #1
// PEM, unencrypted) and CertFile holds its certificate in PEM, optionally
// followed by the certificates of its issuers up to a root. Operators may
// provide both files. When neither exists, LoadOrCreate generates an RSA-2048
// key, a self-signed "imds identity CA" certificate and a signing certificate
// issued by that CA; CertFile then holds the signing certificate followed by
// the CA certificate, which verifiers may trust as their anchor. The CA's
// private key signs that one certificate and is discarded: replacing the pair
// means removing both files, and verifiers then need the new CA.
package signing

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/smallstep/pkcs7"
)

// Names of the files in the key directory.
const (
	KeyFile  = "identity-key.pem"
	CertFile = "identity-cert.pem"
)

// MinKeyBits is the smallest RSA modulus accepted for the signing key.
const MinKeyBits = 2048

// lineLength is the length of the base64 lines of every signature leaf.
const lineLength = 76

// Signatures are the bodies of the signature leaves for one document, each
// exactly the bytes served.
type Signatures struct {
	PKCS7     []byte // dynamic/instance-identity/pkcs7
	Signature []byte // dynamic/instance-identity/signature
	RSA2048   []byte // dynamic/instance-identity/rsa2048
}

// Signer signs identity documents with one key and certificate. It is safe
// for concurrent use.
type Signer struct {
	key     *rsa.PrivateKey
	chain   []*x509.Certificate // signing certificate first, then its issuers
	certPEM []byte
}

// LoadOrCreate returns the signer whose key and certificate are in dir,
// generating and storing them first when neither file exists. It never
// overwrites a file: when only one of the two exists it returns an error
// naming the missing one.
func LoadOrCreate(dir string) (*Signer, error) {
	keyPath, certPath := filepath.Join(dir, KeyFile), filepath.Join(dir, CertFile)
	haveKey, err := exists(keyPath)
	if err != nil {
		return nil, err
	}
	haveCert, err := exists(certPath)
	if err != nil {
		return nil, err
	}
	switch {
	case haveKey && !haveCert:
		return nil, fmt.Errorf("identity signing key %s has no certificate: provide %s, or remove the key to have imds generate a new pair", keyPath, certPath)
	case haveCert && !haveKey:
		return nil, fmt.Errorf("identity certificate %s has no key: provide %s, or remove the certificate to have imds generate a new pair", certPath, keyPath)
	case !haveKey:
		// Another process creating the pair at the same time wins; load reads its files.
		if err := generate(dir, time.Now()); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
	}
	return load(dir)
}

// load returns the signer whose key and certificate are in dir.
func load(dir string) (*Signer, error) {
	keyPath, certPath := filepath.Join(dir, KeyFile), filepath.Join(dir, CertFile)
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("read identity signing key: %w", err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("identity signing key %s: %w", keyPath, err)
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("read identity certificate: %w", err)
	}
	chain, err := parseCertificates(certPEM)
	if err != nil {
		return nil, fmt.Errorf("identity certificate %s: %w", certPath, err)
	}
	pub, ok := chain[0].PublicKey.(*rsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, fmt.Errorf("identity certificate %s (the first in the file) does not match the key in %s", certPath, keyPath)
	}
	return &Signer{key: key, chain: chain, certPEM: encodeCertificates(chain)}, nil
}

// ReadCertificates returns the certificates in dir's CertFile, re-encoded as
// PEM: the signing certificate first, then its issuers. It does not read the
// key, so verifiers can use a copy of the file alone.
func ReadCertificates(dir string) ([]byte, error) {
	path := filepath.Join(dir, CertFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read identity certificate: %w", err)
	}
	chain, err := parseCertificates(b)
	if err != nil {
		return nil, fmt.Errorf("identity certificate %s: %w", path, err)
	}
	return encodeCertificates(chain), nil
}

// CertificatePEM returns the signing certificate followed by its issuers, in PEM.
func (s *Signer) CertificatePEM() []byte { return bytes.Clone(s.certPEM) }

// Sign signs document, which must be the exact bytes served at
// dynamic/instance-identity/document.
func (s *Signer) Sign(document []byte) (Signatures, error) {
	digest := sha256.Sum256(document)
	raw, err := rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA256, digest[:])
	if err != nil {
		return Signatures{}, fmt.Errorf("sign identity document: %w", err)
	}
	sd, err := pkcs7.NewSignedData(document)
	if err != nil {
		return Signatures{}, fmt.Errorf("sign identity document: %w", err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	sd.SetEncryptionAlgorithm(pkcs7.OIDEncryptionAlgorithmRSA)
	if err := sd.AddSigner(s.chain[0], s.key, pkcs7.SignerInfoConfig{}); err != nil {
		return Signatures{}, fmt.Errorf("sign identity document: %w", err)
	}
	der, err := sd.Finish()
	if err != nil {
		return Signatures{}, fmt.Errorf("sign identity document: %w", err)
	}
	p7 := wrap(der)
	return Signatures{PKCS7: p7, Signature: wrap(raw), RSA2048: bytes.Clone(p7)}, nil
}

// wrap encodes b as base64 in lines of lineLength, without a final newline.
func wrap(b []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(b)
	out := make([]byte, 0, len(enc)+len(enc)/lineLength)
	for len(enc) > lineLength {
		out = append(out, enc[:lineLength]...)
		out = append(out, '\n')
		enc = enc[lineLength:]
	}
	return append(out, enc...)
}

func parseKey(b []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("no PEM block")
	}
	if _, encrypted := block.Headers["Proc-Type"]; encrypted || block.Type == "ENCRYPTED PRIVATE KEY" {
		return nil, fmt.Errorf("the key is encrypted; imds needs it unencrypted")
	}
	var key *rsa.PrivateKey
	switch block.Type {
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		key = k
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("the key is %T; identity signatures need RSA", k)
		}
		key = rk
	default:
		return nil, fmt.Errorf("PEM block %q is not a PKCS #8 (PRIVATE KEY) or PKCS #1 (RSA PRIVATE KEY) key", block.Type)
	}
	if n := key.N.BitLen(); n < MinKeyBits {
		return nil, fmt.Errorf("the RSA key has %d bits; at least %d are needed", n, MinKeyBits)
	}
	return key, nil
}

// parseCertificates returns every CERTIFICATE block of b, in order, and
// refuses b if it holds none or holds other blocks.
func parseCertificates(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q; only CERTIFICATE blocks belong here", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("no PEM CERTIFICATE block")
	}
	return certs, nil
}

func encodeCertificates(certs []*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case os.IsNotExist(err):
		return false, nil
	default:
		return false, err
	}
}
