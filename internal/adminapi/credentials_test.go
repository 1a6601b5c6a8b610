package adminapi

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCredentialsFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "credentials")
	want := Credentials{AccessKeyID: "AKIAOPERATOR", SecretAccessKey: "secret/with+chars"}
	if err := WriteCredentialsFile(path, want); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, %v; want 0600", fi.Mode(), err)
	}
	if got, err := ReadCredentialsFile(path); err != nil || got != want {
		t.Errorf("read back %+v, %v", got, err)
	}
	if _, err := ReadCredentialsFile(filepath.Join(dir, "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing file: %v, want os.ErrNotExist", err)
	}

	for _, tc := range []struct {
		name, text string
		want       Credentials
		err        string
	}{
		{"other profiles", "[default]\naws_access_key_id = AKIA\naws_secret_access_key = x\n\n# operator\n[imds]\naws_access_key_id=IMDSK\naws_secret_access_key = s=e=c\n",
			Credentials{"IMDSK", "s=e=c"}, ""},
		{"no profile", "[default]\naws_access_key_id = AKIA\n", Credentials{}, "no [imds] profile"},
		{"missing secret", "[imds]\naws_access_key_id = IMDSK\n", Credentials{}, "aws_secret_access_key"},
		{"bad header", "[imds\naws_access_key_id = IMDSK\n", Credentials{}, "credentials "},
		{"lone quote", "[imds]\naws_access_key_id = \"\naws_secret_access_key = x\n", Credentials{}, "lone quote"},
		{"line break", "[imds]\naws_access_key_id = IMDSK\n  more\naws_secret_access_key = x\n", Credentials{}, `aws_access_key_id has '\n' at byte 5`},
		{"comment", "[imds]\naws_access_key_id=#IMDSK\naws_secret_access_key = x\n", Credentials{}, `aws_access_key_id begins with "#"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "credentials")
			if err := os.WriteFile(p, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := ReadCredentialsFile(p)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("error %v, want one mentioning %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// FuzzReadCredentialsFile reads arbitrary files as credentials files. A
// refusal wraps ErrNoCredentials and names the file; what is accepted has
// both keys, and WriteCredentialsFile writes it back to a file that reads
// the same.
func FuzzReadCredentialsFile(f *testing.F) {
	for _, s := range []string{
		"[imds]\naws_access_key_id = AKIAOPERATOR\naws_secret_access_key = secret/with+chars\n",
		"[default]\naws_access_key_id = AKIA\naws_secret_access_key = x\n\n# operator\n[imds]\naws_access_key_id=IMDSK\naws_secret_access_key = s=e=c\n",
		"[imds]\naws_access_key_id = IMDSK\n",
		"[imds\naws_access_key_id = IMDSK\n",
		"[ imds ]\r\naws_access_key_id=a ; comment\r\naws_secret_access_key=\"b\"\r\n",
		"[imds]\naws_access_key_id = a\n  continued\naws_secret_access_key = b\n[imds]\naws_secret_access_key = c\n",
		"[profile imds]\naws_access_key_id = a\naws_secret_access_key = b\n",
		"",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "credentials")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := ReadCredentialsFile(path)
		if err != nil {
			if !errors.Is(err, ErrNoCredentials) || !strings.Contains(err.Error(), path) {
				t.Fatalf("%q: error %v does not wrap ErrNoCredentials or name the file", data, err)
			}
			return
		}
		if got.AccessKeyID == "" || got.SecretAccessKey == "" {
			t.Fatalf("%q: accepted %+v", data, got)
		}
		if err := WriteCredentialsFile(path, got); err != nil {
			t.Fatal(err)
		}
		again, err := ReadCredentialsFile(path)
		if err != nil || again != got {
			t.Fatalf("%q: read %+v, written and read again %+v, %v", data, got, again, err)
		}
	})
}
