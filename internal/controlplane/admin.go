package controlplane

import "net/http"

// adminRoutes registers the JSON admin API. (placeholder)
func (h *Handler) adminRoutes(mux *http.ServeMux) {}
