// Package controlplane is the operator's API, on its own listener, never on a
// data-plane address: a subset of the EC2 Query API (so the AWS CLI and SDKs
// drive it with --endpoint-url), a JSON admin API under /v1/ for what EC2 has
// no API for, and /metrics, /healthz and /readyz. Every API request is
// authenticated with SigV4 against the operator credentials; health and
// metrics carry no secrets and answer without credentials. The web page
// under /ui/ (package ui) is not signed: it checks its own sessions, which
// start from a login token that POST /v1/ui/login, signed, hands out.
package controlplane

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imds/imds/internal/registry"
)

// Operators looks up the secret of an operator access key.
type Operators interface {
	// Secret returns the secret access key of accessKeyID, false if unknown
	// or if it cannot be found out in time. It must not let one caller's
	// slow lookup delay the others'.
	Secret(ctx context.Context, accessKeyID string) (string, bool)
}

// forgetter is implemented by an Operators that caches: a key revoked
// through this handler is dropped at once, before the store's watch says so.
type forgetter interface{ Forget(accessKeyID string) }

// Readiness reports whether the server can serve current data, and why not.
type Readiness func() (ready bool, reasons []string)

// Options configure the control plane.
type Options struct {
	Registry  *registry.Registry
	Operators Operators
	Ready     Readiness
	// Gatherer serves /metrics; nil serves none.
	Gatherer prometheus.Gatherer
	// Migration serves /v1/migration; nil serves none.
	Migration Migration
	// UI serves the web page at /ui/ and POST /v1/ui/login; nil serves none.
	UI     UI
	Logger *slog.Logger
	Now    func() time.Time
}

// Handler is the control plane.
type Handler struct {
	o   Options
	log *slog.Logger
	mux *http.ServeMux
}

// New returns the control-plane handler.
func New(o Options) *Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	h := &Handler{o: o, log: o.Logger, mux: http.NewServeMux()}
	h.routes()
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }
