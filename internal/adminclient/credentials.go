package adminclient

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Profile is the section of the credentials file that holds the operator key.
const Profile = "imds"

// Credentials are an operator's access key.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
}

// ErrNoCredentials: the credentials file has no [imds] profile with both keys.
var ErrNoCredentials = errors.New("no operator credentials")

// ReadCredentialsFile reads the [imds] profile of an AWS shared-credentials
// file: aws_access_key_id and aws_secret_access_key.
func ReadCredentialsFile(path string) (Credentials, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Credentials{}, fmt.Errorf("read credentials: %w", err)
	}
	c, err := parseCredentials(data)
	if err != nil {
		return Credentials{}, fmt.Errorf("credentials %s: %w", path, err)
	}
	return c, nil
}

func parseCredentials(data []byte) (Credentials, error) {
	var (
		c       Credentials
		section string
		found   bool
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case line[0] == '[':
			if !strings.HasSuffix(line, "]") {
				return Credentials{}, fmt.Errorf("line %d: a section header ends with ]", n)
			}
			section = strings.TrimSpace(line[1 : len(line)-1])
			found = found || section == Profile
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return Credentials{}, fmt.Errorf("line %d: want key = value", n)
		}
		if section != Profile {
			continue
		}
		switch strings.TrimSpace(k) {
		case "aws_access_key_id":
			c.AccessKeyID = strings.TrimSpace(v)
		case "aws_secret_access_key":
			c.SecretAccessKey = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return Credentials{}, err
	}
	switch {
	case !found:
		return Credentials{}, fmt.Errorf("%w: no [%s] profile", ErrNoCredentials, Profile)
	case c.AccessKeyID == "" || c.SecretAccessKey == "":
		return Credentials{}, fmt.Errorf("%w: the [%s] profile needs aws_access_key_id and aws_secret_access_key", ErrNoCredentials, Profile)
	}
	return c, nil
}

// WriteCredentialsFile writes c as the [imds] profile of a shared-credentials
// file readable by its owner only, replacing the file atomically. The AWS CLI
// reads it too: AWS_SHARED_CREDENTIALS_FILE=path aws --profile imds ...
func WriteCredentialsFile(path string, c Credentials) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".credentials-*")
	if err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = fmt.Fprintf(f, "[%s]\naws_access_key_id = %s\naws_secret_access_key = %s\n", Profile, c.AccessKeyID, c.SecretAccessKey)
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write credentials %s: %w", path, err)
	}
	return nil
}
