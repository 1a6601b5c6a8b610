package controlplane

import (
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// healthRoutes registers /healthz, /readyz and /metrics. They carry no
// secrets and answer without credentials, for probes and scrapers.
func (h *Handler) healthRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeHealthText(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET /readyz", h.readyz)
	if h.o.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(h.o.Gatherer, promhttp.HandlerOpts{
			ErrorLog: slog.NewLogLogger(h.log.Handler(), slog.LevelError),
		}))
	}
}

// readyz answers 200 when the server serves current data, else 503 with the
// reasons, one a line.
func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	if h.o.Ready == nil {
		writeHealthText(w, http.StatusOK, "ok\n")
		return
	}
	ready, reasons := h.o.Ready()
	if ready {
		writeHealthText(w, http.StatusOK, "ok\n")
		return
	}
	if len(reasons) == 0 {
		reasons = []string{"not ready"}
	}
	writeHealthText(w, http.StatusServiceUnavailable, strings.Join(reasons, "\n")+"\n")
}

func writeHealthText(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write([]byte(body))
}
