package controlplane

import (
	"net/http"
	"time"

	"github.com/imds/imds/internal/adminapi"
)

// UI is the web page under /ui/. A browser cannot sign with SigV4, so the
// page authenticates its own requests with sessions, started by a one-time
// login token that an operator gets from the (signed) admin API.
type UI interface {
	http.Handler
	// NewLogin mints a one-time login token and returns the path, with its
	// query, that consumes it, and when it expires.
	NewLogin() (path string, expires time.Time)
}

func (h *Handler) uiRoutes(admin *http.ServeMux) {
	admin.Handle("POST /v1/ui/login", h.adminAPI(h.uiLogin))
}

func (h *Handler) uiLogin(w http.ResponseWriter, r *http.Request) error {
	path, exp := h.o.UI.NewLogin()
	h.adminAudit(r, "ui: login token issued", "expires", exp.UTC().Format(time.RFC3339))
	writeAdminJSON(w, http.StatusOK, adminapi.UILogin{Path: path, Expires: exp.UTC()})
	return nil
}
