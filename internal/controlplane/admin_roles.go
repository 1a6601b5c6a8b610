package controlplane

import (
	"errors"
	"net/http"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/imds/imds/internal/adminapi"
	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/registry"
)

// --- roles ---

// roleRecord shows a role in the configuration file's format, without its
// secret keys: the admin API never returns a secret it was given.
func roleRecord(name string, role *config.Role, rev int64) (adminapi.RoleRecord, error) {
	shown := *role
	if s := role.Static; s != nil {
		st := *s
		st.SecretAccessKey, st.SessionToken = "", ""
		shown.Static = &st
	}
	// The role's keys are its YAML tags; going through YAML keeps them.
	data, err := yaml.Marshal(&shown)
	if err != nil {
		return adminapi.RoleRecord{}, err
	}
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		return adminapi.RoleRecord{}, err
	}
	pruneEmpty(m)
	return adminapi.RoleRecord{Name: name, Source: role.SourceName(), Role: m, Revision: rev}, nil
}

// pruneEmpty drops null, empty and zero values, at every depth.
func pruneEmpty(m map[string]any) {
	for k, v := range m {
		switch v := v.(type) {
		case nil:
			delete(m, k)
		case string:
			if v == "" {
				delete(m, k)
			}
		case int:
			if v == 0 {
				delete(m, k)
			}
		case []any:
			if len(v) == 0 {
				delete(m, k)
			}
		case map[string]any:
			pruneEmpty(v)
			if len(v) == 0 {
				delete(m, k)
			}
		}
	}
}

func (h *Handler) listRoles(w http.ResponseWriter, r *http.Request) error {
	roles, err := h.o.Registry.Roles(r.Context())
	if err != nil {
		return err
	}
	out := adminapi.RoleList{Roles: make([]adminapi.RoleRecord, 0, len(roles))}
	for name := range roles {
		// Read again for the revision; a role deleted meanwhile is left out.
		role, rev, err := h.o.Registry.Role(r.Context(), name)
		if isNotFoundErr(err) {
			continue
		}
		if err != nil {
			return err
		}
		rec, err := roleRecord(name, role, rev)
		if err != nil {
			return err
		}
		out.Roles = append(out.Roles, rec)
	}
	slices.SortFunc(out.Roles, func(a, b adminapi.RoleRecord) int { return strings.Compare(a.Name, b.Name) })
	writeAdminJSON(w, http.StatusOK, out)
	return nil
}

func (h *Handler) getRole(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	role, rev, err := h.o.Registry.Role(r.Context(), name)
	if err != nil {
		return err
	}
	rec, err := roleRecord(name, role, rev)
	if err != nil {
		return err
	}
	setAdminETag(w, rev)
	writeAdminJSON(w, http.StatusOK, rec)
	return nil
}

// putRole creates or replaces a role. The body is the role's source as under
// roles.NAME in the configuration file, in YAML or in JSON with the same keys.
func (h *Handler) putRole(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	pre, err := parseAdminPrecondition(r)
	if err != nil {
		return err
	}
	data, _, err := readAdminBody(r)
	if err != nil {
		return err
	}
	// config.Role has YAML keys only; JSON is YAML, so one decoder reads both.
	var role config.Role
	if err := decodeAdminYAML(data, &role); err != nil {
		return err
	}
	ctx := r.Context()
	var (
		rev     int64
		created bool
	)
	err = adminConditionalWrite("role "+name, pre,
		func() (int64, bool, error) {
			_, rev, err := h.o.Registry.Role(ctx, name)
			if isNotFoundErr(err) {
				return 0, false, nil
			}
			return rev, err == nil, err
		},
		func(cur int64, exists bool) (err error) {
			created = !exists
			rev, err = h.o.Registry.PutRole(ctx, name, &role, condRev(cur, exists))
			return err
		})
	if err != nil {
		return err
	}
	h.adminAudit(r, "role put", "role", name, "revision", rev, "created", created)
	rec, err := roleRecord(name, &role, rev)
	if err != nil {
		return err
	}
	setAdminETag(w, rev)
	status := http.StatusOK
	if created {
		w.Header().Set("Location", "/v1/roles/"+name)
		status = http.StatusCreated
	}
	writeAdminJSON(w, status, rec)
	return nil
}

func (h *Handler) deleteRole(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	pre, err := parseAdminPrecondition(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	err = adminConditionalWrite("role "+name, pre,
		func() (int64, bool, error) {
			_, rev, err := h.o.Registry.Role(ctx, name)
			if isNotFoundErr(err) {
				return 0, false, nil
			}
			return rev, err == nil, err
		},
		func(rev int64, exists bool) error {
			if !exists {
				return &registry.NotFoundError{Kind: "role", ID: name}
			}
			return h.o.Registry.DeleteRole(ctx, name, rev)
		})
	if err != nil {
		return err
	}
	h.adminAudit(r, "role deleted", "role", name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func isNotFoundErr(err error) bool {
	var nf *registry.NotFoundError
	return errors.As(err, &nf)
}

// --- relays ---

// Relays have no revisions in the registry: their writes are unconditional.
func refuseAdminConditional(r *http.Request) error {
	if r.Header.Get("If-Match") != "" || r.Header.Get("If-None-Match") != "" {
		return badParam("relays are written unconditionally: If-Match and If-None-Match are not supported")
	}
	return nil
}

func relayRecord(rl registry.Relay) adminapi.RelayRecord {
	addrs := rl.Addresses
	if addrs == nil {
		addrs = []string{}
	}
	return adminapi.RelayRecord{Name: rl.Name, Addresses: addrs}
}

func (h *Handler) listRelays(w http.ResponseWriter, r *http.Request) error {
	rls, err := h.o.Registry.Relays(r.Context())
	if err != nil {
		return err
	}
	out := adminapi.RelayList{Relays: make([]adminapi.RelayRecord, 0, len(rls))}
	for _, rl := range rls {
		out.Relays = append(out.Relays, relayRecord(rl))
	}
	slices.SortFunc(out.Relays, func(a, b adminapi.RelayRecord) int { return strings.Compare(a.Name, b.Name) })
	writeAdminJSON(w, http.StatusOK, out)
	return nil
}

func (h *Handler) getRelay(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	rls, err := h.o.Registry.Relays(r.Context())
	if err != nil {
		return err
	}
	i := slices.IndexFunc(rls, func(rl registry.Relay) bool { return rl.Name == name })
	if i < 0 {
		return &registry.NotFoundError{Kind: "relay", ID: name}
	}
	writeAdminJSON(w, http.StatusOK, relayRecord(rls[i]))
	return nil
}

// putRelay creates or replaces a relay. Without a secret in the body the
// server makes one and returns it in this answer only.
func (h *Handler) putRelay(w http.ResponseWriter, r *http.Request) error {
	if err := refuseAdminConditional(r); err != nil {
		return err
	}
	var body adminapi.RelayPut
	if err := decodeAdminBody(r, &body); err != nil {
		return err
	}
	name := r.PathValue("name")
	rl, err := h.o.Registry.PutRelay(r.Context(), registry.Relay{Name: name, Addresses: body.Addresses, Secret: body.Secret})
	if err != nil {
		return err
	}
	h.adminAudit(r, "relay put", "relay", name, "generated-secret", len(body.Secret) == 0)
	out := relayRecord(rl)
	if len(body.Secret) == 0 {
		out.Secret = rl.Secret
	}
	writeAdminJSON(w, http.StatusOK, out)
	return nil
}

func (h *Handler) deleteRelay(w http.ResponseWriter, r *http.Request) error {
	if err := refuseAdminConditional(r); err != nil {
		return err
	}
	name := r.PathValue("name")
	if err := h.o.Registry.DeleteRelay(r.Context(), name); err != nil {
		return err
	}
	h.adminAudit(r, "relay deleted", "relay", name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
