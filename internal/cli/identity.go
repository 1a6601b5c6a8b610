package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/imds/imds/internal/signing"
)

func newIdentityCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "identity",
		Short: "Show and check the signatures of instance identity documents",
		Long: `imds signs each instance identity document with the key in the data dir:
` + signing.KeyFile + ` (RSA, at least 2048 bits) and ` + signing.CertFile + ` (its certificate,
optionally followed by its issuers). Provide both to use your own; when neither
exists, serve generates a key, an "imds identity CA" and a signing certificate
issued by it.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newIdentityCertCmd(), newIdentityVerifyCmd())
	return cmd
}

func newIdentityCertCmd() *cobra.Command {
	var (
		dataDir string
		caOnly  bool
	)
	cmd := &cobra.Command{
		Use:   "cert",
		Short: "Print the certificate that verifies identity signatures",
		Long: `Print the signing certificate followed by its issuers, in PEM, as verifiers
use it in place of AWS's public certificate:

  openssl x509 -pubkey -noout -in certificate > key
  openssl dgst -sha256 -verify key -signature signature document
  openssl smime -verify -in rsa2048 -inform PEM -content document -certfile certificate -noverify

With --ca, print only the last certificate (the root), for chain verification:

  openssl smime -verify -in rsa2048 -inform PEM -content document -CAfile ca.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			certs, err := signing.ReadCertificates(dataDir)
			if err != nil {
				return noKeyHint(err, dataDir)
			}
			if caOnly {
				if i := bytes.LastIndex(certs, []byte("-----BEGIN CERTIFICATE-----")); i > 0 {
					certs = certs[i:]
				}
			}
			_, err = cmd.OutOrStdout().Write(certs)
			return err
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir(), "directory holding "+signing.CertFile)
	cmd.Flags().BoolVar(&caOnly, "ca", false, "print only the root of the chain")
	return cmd
}

func newIdentityVerifyCmd() *cobra.Command {
	var documentPath, signaturePath, pkcs7Path, rsa2048Path, certPath, dataDir string
	cmd := &cobra.Command{
		Use:   "verify --document FILE (--signature FILE | --pkcs7 FILE | --rsa2048 FILE) [--cert FILE | --data-dir DIR]",
		Short: "Check an instance identity document and one of its signatures",
		Long: `Check an instance identity document and one of its signatures, as a verifier
would. The signature file holds the body of the leaf as served (the base64 text;
for --signature also the decoded bytes, for --pkcs7 and --rsa2048 also PEM).
The document must be the exact bytes served.

--cert names the trusted certificates in PEM: the signing certificate, or for
--pkcs7 and --rsa2048 also a CA that issued it. Without --cert, the certificates
in the data dir are used. Prints "verified" and exits 0, or names what failed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kind, sigPath, err := oneSignature(map[string]string{"signature": signaturePath, "pkcs7": pkcs7Path, "rsa2048": rsa2048Path})
			if err != nil {
				return &exitError{ExitUsage, err}
			}
			if documentPath == "" {
				return &exitError{ExitUsage, errors.New("--document is required")}
			}
			if certPath != "" && cmd.Flags().Changed("data-dir") {
				return &exitError{ExitUsage, errors.New("give --cert or --data-dir, not both")}
			}
			document, err := os.ReadFile(documentPath)
			if err != nil {
				return err
			}
			sig, err := os.ReadFile(sigPath)
			if err != nil {
				return err
			}
			var certs []byte
			if certPath != "" {
				certs, err = os.ReadFile(certPath)
			} else {
				certs, err = signing.ReadCertificates(dataDir)
				err = noKeyHint(err, dataDir)
			}
			if err != nil {
				return err
			}
			if kind == "signature" {
				if err := signing.Verify(document, sig, certs); err != nil {
					return fmt.Errorf("%s: %w", sigPath, err)
				}
			} else {
				signed, err := signing.VerifyPKCS7(sig, certs)
				if err != nil {
					return fmt.Errorf("%s: %w", sigPath, err)
				}
				if !bytes.Equal(signed, document) {
					return fmt.Errorf("%s is validly signed but carries a different document than %s", sigPath, documentPath)
				}
			}
			fmt.Fprintln(cmd.OutOrStdout(), "verified")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&documentPath, "document", "", "the identity document")
	f.StringVar(&signaturePath, "signature", "", "the signature leaf (RSA SHA-256)")
	f.StringVar(&pkcs7Path, "pkcs7", "", "the pkcs7 leaf (PKCS #7 SignedData)")
	f.StringVar(&rsa2048Path, "rsa2048", "", "the rsa2048 leaf (PKCS #7 SignedData)")
	f.StringVar(&certPath, "cert", "", "trusted certificates in PEM")
	f.StringVar(&dataDir, "data-dir", defaultDataDir(), "directory holding "+signing.CertFile+", used without --cert")
	return cmd
}

// oneSignature returns the one non-empty path of paths and its name.
func oneSignature(paths map[string]string) (kind, path string, err error) {
	for k, p := range paths {
		if p == "" {
			continue
		}
		if path != "" {
			return "", "", errors.New("give one of --signature, --pkcs7 and --rsa2048")
		}
		kind, path = k, p
	}
	if path == "" {
		return "", "", errors.New("one of --signature, --pkcs7 and --rsa2048 is required")
	}
	return kind, path, nil
}

// noKeyHint adds to a missing certificate file what creates it.
func noKeyHint(err error, dataDir string) error {
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w (imds serve --data-dir %s creates it on first start, or provide %s and %s)", err, dataDir, signing.KeyFile, signing.CertFile)
	}
	return err
}
