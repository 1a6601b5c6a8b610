package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/imds/imds/internal/adminapi"
)

// adminTestOperators is a fixed set of operator keys.
type adminTestOperators map[string]string

func (o adminTestOperators) Secret(_ context.Context, id string) (string, bool) {
	s, ok := o[id]
	return s, ok
}

// TestAdminRequiresSignature drives the whole handler: the admin API answers
// only requests an operator signed, and refusals are JSON errors.
func TestAdminRequiresSignature(t *testing.T) {
	e := newAdminEnv(t)
	ops := adminTestOperators{"IMDSTESTKEY": "test-secret"}
	srv := httptest.NewServer(New(Options{Registry: e.reg, Operators: ops, Now: func() time.Time { return adminTestNow }}))
	t.Cleanup(srv.Close)

	send := func(method, path string, body []byte, key, secret string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			if err := adminapi.SignRequest(req, body, key, secret, "us-east-1", "imds", adminTestNow); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	for _, tc := range []struct {
		name        string
		method      string
		path        string
		body        string
		key, secret string
		status      int
	}{
		{"unsigned", "GET", "/v1/instances", "", "", "", 401},
		{"unknown key", "GET", "/v1/instances", "", "IMDSOTHER", "test-secret", 401},
		{"wrong secret", "GET", "/v1/instances", "", "IMDSTESTKEY", "guess", 401},
		{"signed list", "GET", "/v1/instances", "", "IMDSTESTKEY", "test-secret", 200},
		{"signed put", "PUT", "/v1/instances/i-0000000000000000a", `{"addresses": ["10.0.0.1"]}`, "IMDSTESTKEY", "test-secret", 201},
		{"signed unknown route", "GET", "/v1/nothing", "", "IMDSTESTKEY", "test-secret", 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			resp, b := send(tc.method, tc.path, body, tc.key, tc.secret)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			if resp.StatusCode >= 400 {
				var eb adminapi.ErrorBody
				if err := json.Unmarshal(b, &eb); err != nil || eb.Error.Code == "" {
					t.Errorf("error body %q is not an admin API error: %v", b, err)
				}
			}
		})
	}
}
