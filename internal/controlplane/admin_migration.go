package controlplane

import (
	"context"
	"net/http"

	"github.com/imds/imds/internal/migration"
)

// Migration is the IMDSv2 migration view (package migration's Service).
type Migration interface {
	// View is the fleet's view, or one instance's; an unknown instance is
	// an error wrapping migration.ErrUnknownInstance.
	View(ctx context.Context, instanceID string) (migration.View, error)
	// Enforce requires tokens where no caller would break.
	Enforce(ctx context.Context, req migration.EnforceRequest) (migration.EnforceResult, error)
}

func (h *Handler) migrationRoutes(mux *http.ServeMux) {
	mux.Handle("GET /v1/migration", h.adminAPI(h.migrationView))
	mux.Handle("GET /v1/migration/{id}", h.adminAPI(h.migrationInstance))
	mux.Handle("POST /v1/migration/enforce", h.adminAPI(h.migrationEnforce))
}

func (h *Handler) migrationView(w http.ResponseWriter, r *http.Request) error {
	v, err := h.o.Migration.View(r.Context(), "")
	if err != nil {
		return err
	}
	writeAdminJSON(w, http.StatusOK, v)
	return nil
}

func (h *Handler) migrationInstance(w http.ResponseWriter, r *http.Request) error {
	v, err := h.o.Migration.View(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeAdminJSON(w, http.StatusOK, v.Instances[0])
	return nil
}

func (h *Handler) migrationEnforce(w http.ResponseWriter, r *http.Request) error {
	var req migration.EnforceRequest
	if err := decodeAdminBody(r, &req); err != nil {
		return err
	}
	res, err := h.o.Migration.Enforce(r.Context(), req)
	if err != nil {
		return err
	}
	if !req.DryRun && len(res.Enforced) > 0 {
		h.adminAudit(r, "migration: required tokens", "instances", res.Enforced, "refused", len(res.Refused))
	}
	writeAdminJSON(w, http.StatusOK, res)
	return nil
}
