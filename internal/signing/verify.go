package signing

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/smallstep/pkcs7"
)

var (
	// ErrSignature means a signature does not match the document and the key.
	ErrSignature = errors.New("signature does not match the document and key")
	// ErrUntrustedSigner means a PKCS #7 message was signed by a certificate
	// that is neither one of the trusted certificates nor issued by one.
	ErrUntrustedSigner = errors.New("signer is not trusted")
)

// Verify checks signature, the body of the signature leaf, over document
// against the public key of each RSA certificate in certPEM, and returns nil
// if one of them made it. The raw signature bytes (the body after base64 -d)
// are accepted too. Like openssl dgst, it does not look at the certificates'
// validity periods. A mismatch returns an error wrapping ErrSignature.
func Verify(document, signature, certPEM []byte) error {
	certs, err := parseCertificates(certPEM)
	if err != nil {
		return fmt.Errorf("trusted certificates: %w", err)
	}
	sig := signature
	if b, err := decodeBase64(signature); err == nil {
		sig = b
	}
	digest := sha256.Sum256(document)
	tried := false
	for _, c := range certs {
		pub, ok := c.PublicKey.(*rsa.PublicKey)
		if !ok {
			continue
		}
		tried = true
		if rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig) == nil {
			return nil
		}
	}
	if !tried {
		return errors.New("trusted certificates: none has an RSA key")
	}
	return fmt.Errorf("RSA SHA-256: %w", ErrSignature)
}

// VerifyPKCS7 checks a PKCS #7 SignedData message, the body of the pkcs7 or
// rsa2048 leaf, and returns the document it carries. The body may also be
// PEM ("-----BEGIN PKCS7-----") or DER.
//
// The message must have exactly one signer, and its certificate must be one
// of the certificates in certPEM or chain to one of them through the
// certificates embedded in the message (at the signing time the message
// states, else now); otherwise the error wraps ErrUntrustedSigner. A
// signature or digest that does not match wraps ErrSignature.
func VerifyPKCS7(body, certPEM []byte) (document []byte, err error) {
	trusted, err := parseCertificates(certPEM)
	if err != nil {
		return nil, fmt.Errorf("trusted certificates: %w", err)
	}
	der, err := decodePKCS7(body)
	if err != nil {
		return nil, err
	}
	p7, err := parsePKCS7(der)
	if err != nil {
		return nil, fmt.Errorf("parse PKCS #7: %w", err)
	}
	if n := len(p7.Signers); n != 1 {
		return nil, fmt.Errorf("PKCS #7 has %d signers, want 1", n)
	}
	embedded := p7.Certificates
	// Trusted certificates first, so that a signer found among them is the
	// trusted copy and not an embedded look-alike.
	p7.Certificates = append(append([]*x509.Certificate(nil), trusted...), embedded...)
	signer := p7.GetOnlySigner()
	if signer == nil {
		return nil, fmt.Errorf("no certificate for the PKCS #7 signer: %w", ErrUntrustedSigner)
	}
	if !contains(trusted, signer) {
		roots, intermediates := x509.NewCertPool(), x509.NewCertPool()
		for _, c := range trusted {
			roots.AddCert(c)
		}
		for _, c := range embedded {
			intermediates.AddCert(c)
		}
		at := time.Now()
		var signingTime time.Time
		if p7.UnmarshalSignedAttribute(pkcs7.OIDAttributeSigningTime, &signingTime) == nil {
			at = signingTime
		}
		if _, err := signer.Verify(x509.VerifyOptions{
			Roots:         roots,
			Intermediates: intermediates,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
			CurrentTime:   at,
		}); err != nil {
			return nil, fmt.Errorf("PKCS #7 signer %q: %w: %v", signer.Subject, ErrUntrustedSigner, err)
		}
	}
	if err := p7.Verify(); err != nil {
		return nil, fmt.Errorf("PKCS #7 signed by %q: %w: %v", signer.Subject, ErrSignature, err)
	}
	return p7.Content, nil
}

// parsePKCS7 parses DER or BER, turning a panic in the parser on hostile
// input into an error.
func parsePKCS7(der []byte) (p7 *pkcs7.PKCS7, err error) {
	defer func() {
		if r := recover(); r != nil {
			p7, err = nil, fmt.Errorf("malformed message: %v", r)
		}
	}()
	return pkcs7.Parse(der)
}

func contains(certs []*x509.Certificate, c *x509.Certificate) bool {
	for _, t := range certs {
		if t.Equal(c) {
			return true
		}
	}
	return false
}

// decodePKCS7 accepts the served base64 body, PEM or DER.
func decodePKCS7(body []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(body)
	if bytes.HasPrefix(trimmed, []byte("-----BEGIN")) {
		block, _ := pem.Decode(trimmed)
		if block == nil {
			return nil, errors.New("PKCS #7: malformed PEM")
		}
		if block.Type != "PKCS7" && block.Type != "CMS" {
			return nil, fmt.Errorf("PKCS #7: PEM block is %q, want PKCS7", block.Type)
		}
		return block.Bytes, nil
	}
	if der, err := decodeBase64(trimmed); err == nil {
		return der, nil
	}
	if len(trimmed) > 0 && trimmed[0] == 0x30 { // an ASN.1 SEQUENCE: DER
		return body, nil
	}
	return nil, errors.New("PKCS #7: neither base64, PEM nor DER")
}

// decodeBase64 decodes standard base64 with padding, ignoring line breaks
// and other white space.
func decodeBase64(b []byte) ([]byte, error) {
	clean := bytes.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, b)
	if len(clean) == 0 {
		return nil, errors.New("empty")
	}
	return base64.StdEncoding.DecodeString(string(clean))
}
