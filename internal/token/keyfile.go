package token

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// keyFile is the on-disk form of a key ring: the first key signs.
type keyFile struct {
	Keys []struct {
		ID     uint16 `json:"id"`
		Secret []byte `json:"secret"` // base64 in JSON
	} `json:"keys"`
}

// LoadOrCreateKeys reads the key ring at path, creating it with one fresh
// random key (mode 0600) when it does not exist. Replicas that must accept each
// other's tokens share this file.
func LoadOrCreateKeys(path string) ([]Key, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		secret := make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return nil, fmt.Errorf("generate token key: %w", err)
		}
		var kf keyFile
		kf.Keys = append(kf.Keys, struct {
			ID     uint16 `json:"id"`
			Secret []byte `json:"secret"`
		}{1, secret})
		data, _ = json.MarshalIndent(kf, "", "  ")
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("create token key dir: %w", err)
		}
		if err := writeFileAtomic(path, data, 0o600); err != nil {
			return nil, fmt.Errorf("write token key %s: %w", path, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("read token key %s: %w", path, err)
	}
	var kf keyFile
	if err := json.Unmarshal(data, &kf); err != nil {
		return nil, fmt.Errorf("token key %s: %w", path, err)
	}
	keys := make([]Key, len(kf.Keys))
	for i, k := range kf.Keys {
		keys[i] = Key{ID: k.ID, Secret: k.Secret}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("token key %s: no keys", path)
	}
	return keys, nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
