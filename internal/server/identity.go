package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/imds/imds/internal/metadata"
	"github.com/imds/imds/internal/signing"
	"github.com/imds/imds/internal/store"
)

// keyIdentity holds the identity signing key and certificates, so that every
// replica signs with the same key.
const keyIdentity = "keys/identity"

type identityRecord struct {
	Key  []byte `json:"key"`  // PEM
	Cert []byte `json:"cert"` // PEM, signing certificate first
}

// identitySigner returns the signer of identity documents. The key pair lives
// in the store; a replica writes it to its data dir. On first start the pair
// in the data dir (the operator's, or one generated there) goes to the store;
// when another replica stored its pair first, that one is used.
func (s *Server) identitySigner(ctx context.Context) (metadata.SignFunc, error) {
	dir := s.opts.DataDir
	keyPath, certPath := filepath.Join(dir, signing.KeyFile), filepath.Join(dir, signing.CertFile)
	ctx, cancel := context.WithTimeout(ctx, 10*s.timeout())
	defer cancel()
	for range 2 {
		it, err := s.st.Get(ctx, keyIdentity)
		switch {
		case err == nil:
			var rec identityRecord
			if err := json.Unmarshal(it.Value, &rec); err != nil {
				return nil, fmt.Errorf("decode %s: %w", keyIdentity, err)
			}
			if err := writeIfMissing(keyPath, rec.Key, 0o600); err != nil {
				return nil, err
			}
			if err := writeIfMissing(certPath, rec.Cert, 0o644); err != nil {
				return nil, err
			}
			return loadSigner(dir)
		case !errors.Is(err, store.ErrNotFound):
			return nil, fmt.Errorf("read identity key: %w", err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create data dir: %w", err)
		}
		if _, err := signing.LoadOrCreate(dir); err != nil {
			return nil, err
		}
		key, err1 := os.ReadFile(keyPath)
		cert, err2 := os.ReadFile(certPath)
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		data, _ := json.Marshal(identityRecord{Key: key, Cert: cert})
		_, err = s.st.Put(ctx, keyIdentity, data, store.Absent)
		if err == nil {
			return loadSigner(dir)
		}
		if !errors.Is(err, store.ErrConflict) {
			return nil, fmt.Errorf("store identity key: %w", err)
		}
		// Another replica stored its pair first: drop ours and take that one.
		os.Remove(keyPath)
		os.Remove(certPath)
	}
	return nil, fmt.Errorf("identity key: %s keeps changing; retry", keyIdentity)
}

func loadSigner(dir string) (metadata.SignFunc, error) {
	sg, err := signing.LoadOrCreate(dir)
	if err != nil {
		return nil, err
	}
	return func(doc []byte) ([]byte, []byte, []byte, error) {
		sig, err := sg.Sign(doc)
		return sig.PKCS7, sig.Signature, sig.RSA2048, err
	}, nil
}

func writeIfMissing(path string, data []byte, mode os.FileMode) error {
	if _, err := os.Stat(path); err == nil {
		cur, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if string(cur) != string(data) {
			return fmt.Errorf("%s differs from the identity key pair in the store; remove it to use the store's, or remove %s from the store to publish this one", path, keyIdentity)
		}
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, data, mode)
}
