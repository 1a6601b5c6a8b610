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
	// The web page: not behind SigV4, which a browser cannot sign; it
	// authenticates its requests with sessions started through the admin API.
	if h.o.UI != nil {
		h.mux.Handle("/ui/", h.o.UI)
	}
	// Health and metrics.
	h.healthRoutes(h.mux)
}
