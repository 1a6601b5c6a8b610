package adminapi

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode"

	"github.com/aws/aws-sdk-go-v2/config"
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
// file (aws_access_key_id and aws_secret_access_key) with the AWS SDK's own
// loader, so that the file means to imds what it means to the AWS CLI.
func ReadCredentialsFile(path string) (Credentials, error) {
	if _, err := os.Stat(path); err != nil {
		return Credentials{}, fmt.Errorf("read credentials: %w", err)
	}
	sc, err := loadProfile(path)
	var missing config.SharedConfigProfileNotExistError
	switch {
	case errors.Is(err, errUnparsable):
		return Credentials{}, fmt.Errorf("credentials %s: %w: %w", path, ErrNoCredentials, err)
	case errors.As(err, &missing):
		return Credentials{}, fmt.Errorf("credentials %s: %w: no [%s] profile", path, ErrNoCredentials, Profile)
	case err != nil:
		// The SDK's errors for a partial profile carry no type of their own.
		return Credentials{}, fmt.Errorf("credentials %s: %w: the [%s] profile needs aws_access_key_id and aws_secret_access_key: %v",
			path, ErrNoCredentials, Profile, strings.Join(strings.Fields(err.Error()), " "))
	case sc.Credentials.AccessKeyID == "" || sc.Credentials.SecretAccessKey == "":
		return Credentials{}, fmt.Errorf("credentials %s: %w: the [%s] profile needs aws_access_key_id and aws_secret_access_key", path, ErrNoCredentials, Profile)
	}
	c := Credentials{AccessKeyID: sc.Credentials.AccessKeyID, SecretAccessKey: sc.Credentials.SecretAccessKey}
	if err := c.check(); err != nil {
		return Credentials{}, fmt.Errorf("credentials %s: %w: the [%s] profile's %w", path, ErrNoCredentials, Profile, err)
	}
	return c, nil
}

var errUnparsable = errors.New("the AWS SDK cannot parse the file")

// loadProfile loads the [imds] profile of the credentials file at path with
// the AWS SDK, returning a panic of its INI parser as errUnparsable: a value
// that is a lone quote (aws_access_key_id = ") makes it slice out of range
// (aws-sdk-go-v2/config v1.33.21 and before).
func loadProfile(path string) (sc config.SharedConfig, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w (%v): is a value a lone quote?", errUnparsable, p)
		}
	}()
	return config.LoadSharedConfigProfile(context.Background(), Profile, func(o *config.LoadSharedConfigOptions) {
		o.CredentialsFiles = []string{path}
		o.ConfigFiles = []string{}
	})
}

// check refuses a key that a credentials file cannot hold as it is, so that
// what WriteCredentialsFile writes reads back the same: the SDK's loader
// joins an indented next line to a value with a line break, trims spaces,
// and takes a # or ; after a space for a comment. No access key has a space,
// a control character or a leading # or ;, and the access key id travels in
// an HTTP header.
func (c Credentials) check() error {
	for _, k := range []struct{ name, v string }{{"aws_access_key_id", c.AccessKeyID}, {"aws_secret_access_key", c.SecretAccessKey}} {
		if strings.HasPrefix(k.v, "#") || strings.HasPrefix(k.v, ";") {
			return fmt.Errorf("%s begins with %q, which starts a comment", k.name, k.v[:1])
		}
		for i, r := range k.v {
			if unicode.IsControl(r) || unicode.IsSpace(r) {
				return fmt.Errorf("%s has %q at byte %d: a key has no spaces or control characters", k.name, r, i)
			}
		}
	}
	return nil
}

// WriteCredentialsFile writes c as the [imds] profile of a shared-credentials
// file readable by its owner only, replacing the file atomically. The AWS CLI
// reads it too: AWS_SHARED_CREDENTIALS_FILE=path aws --profile imds ...
func WriteCredentialsFile(path string, c Credentials) error {
	if err := c.check(); err != nil {
		return fmt.Errorf("write credentials %s: %w", path, err)
	}
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
