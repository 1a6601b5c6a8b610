package controlplane

import "net/http"

func (h *Handler) routes() {
	// EC2 Query API: Action=... in a form body (POST) or the query (GET).
	h.mux.Handle("POST /{$}", h.authenticate(http.HandlerFunc(h.ec2Query)))
	h.mux.Handle("GET /{$}", h.authenticate(http.HandlerFunc(h.ec2Query)))
	// JSON admin API.
	admin := http.NewServeMux()
	h.adminRoutes(admin)
	h.mux.Handle("/v1/", h.authenticate(admin))
	// Health and metrics.
	h.healthRoutes(h.mux)
}
