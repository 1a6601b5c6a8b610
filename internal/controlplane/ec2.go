package controlplane

import "net/http"

// ec2Query serves the EC2 Query API. (placeholder)
func (h *Handler) ec2Query(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "not implemented", http.StatusNotImplemented)
}
