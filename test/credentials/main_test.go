// Package credentials tests role credential sources against real services:
// STS AssumeRole served by moto's server mode, a credential process, and the
// AWS SDK for Go v2 and botocore reading the documents the way they read
// IMDS.
//
// Time is driven through the manager's clock, offset from the real one, so
// that rotation and expiry are seen in seconds although STS sessions last at
// least 15 minutes. Tests that need python3 with moto or botocore skip when it
// is missing, except under CI=true, where they fail.
package credentials

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/imds/imds/internal/metadata"
	"github.com/imds/imds/internal/testenv"
)

// isolateAWS leaves the SDK no configuration of this machine: only what the
// test sets.
func isolateAWS(t *testing.T) {
	t.Helper()
	testenv.IsolateAWS(t)
}

// clock is the real time plus an offset the test moves forward.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// set sets the offset so that Now is at t.
func (c *clock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset = time.Until(t)
}

// logBuffer collects a manager's log.
type logBuffer struct{ testenv.Buffer }

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// doc is a credentials document.
type doc struct {
	Code, Message, LastUpdated, Type   string
	AccessKeyID                        string `json:"AccessKeyId"`
	SecretAccessKey, Token, Expiration string
	AccountID                          string `json:"AccountId"`
}

func (d doc) expires(t *testing.T) time.Time {
	t.Helper()
	e, err := time.Parse(metadata.TimeFormat, d.Expiration)
	if err != nil {
		t.Fatalf("Expiration %q: %v", d.Expiration, err)
	}
	return e
}

func render(t *testing.T, f metadata.DynamicFunc, v2 bool) doc {
	t.Helper()
	if f == nil {
		t.Fatal("no renderer")
	}
	body, ok := f(metadata.Request{V2: v2})
	if !ok {
		t.Fatal("renderer answered 404")
	}
	var d doc
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	return d
}

// imdsStub serves one role's credentials document at the paths SDKs read,
// with IMDSv2 tokens: enough for the SDKs' IMDS credential providers.
func imdsStub(t *testing.T, role string, fn metadata.DynamicFunc) *httptest.Server {
	t.Helper()
	const tok = "stub-token"
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /latest/api/token", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", r.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds"))
		fmt.Fprint(w, tok)
	})
	mux.HandleFunc("GET /latest/meta-data/iam/security-credentials/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, role)
	})
	mux.HandleFunc("GET /latest/meta-data/iam/security-credentials/"+role, func(w http.ResponseWriter, r *http.Request) {
		body, _ := fn(metadata.Request{V2: r.Header.Get("X-Aws-Ec2-Metadata-Token") == tok})
		w.Write(body)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}
