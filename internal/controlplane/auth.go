package controlplane

import "net/http"

// authenticate admits only requests signed with SigV4 by an operator.
// (placeholder: refuses everything until SigV4 verification lands)
func (h *Handler) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not implemented", http.StatusForbidden)
	})
}
