package controlplane

import "net/http"

// healthRoutes registers /healthz, /readyz and /metrics. (placeholder)
func (h *Handler) healthRoutes(mux *http.ServeMux) {}
