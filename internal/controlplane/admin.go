package controlplane

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/imds/imds/internal/adminapi"
	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/events"
	"github.com/imds/imds/internal/registry"
)

// adminRoutes registers the JSON admin API.
func (h *Handler) adminRoutes(mux *http.ServeMux) {
	mux.Handle("GET /v1/instances", h.adminAPI(h.listInstances))
	mux.Handle("PUT /v1/instances", h.adminAPI(h.putInstances))
	mux.Handle("GET /v1/instances/{id}", h.adminAPI(h.getInstance))
	mux.Handle("PUT /v1/instances/{id}", h.adminAPI(h.putInstance))
	mux.Handle("DELETE /v1/instances/{id}", h.adminAPI(h.deleteInstance))
	mux.Handle("POST /v1/instances/{id}/events", h.adminAPI(h.addEvent))
	mux.Handle("DELETE /v1/instances/{id}/events", h.adminAPI(h.clearEvents))
	mux.Handle("POST /v1/instances/{id}/events/{event}/cancel", h.adminAPI(h.endEvent(events.Cancel, "canceled")))
	mux.Handle("POST /v1/instances/{id}/events/{event}/complete", h.adminAPI(h.endEvent(events.Complete, "completed")))
	mux.Handle("POST /v1/instances/{id}/events/{event}/reschedule", h.adminAPI(h.rescheduleEvent))
	mux.Handle("POST /v1/instances/{id}/state", h.adminAPI(h.changeState))
	mux.Handle("POST /v1/events", h.adminAPI(h.addFleetEvent))

	mux.Handle("GET /v1/roles", h.adminAPI(h.listRoles))
	mux.Handle("GET /v1/roles/{name}", h.adminAPI(h.getRole))
	mux.Handle("PUT /v1/roles/{name}", h.adminAPI(h.putRole))
	mux.Handle("DELETE /v1/roles/{name}", h.adminAPI(h.deleteRole))

	mux.Handle("GET /v1/relays", h.adminAPI(h.listRelays))
	mux.Handle("GET /v1/relays/{name}", h.adminAPI(h.getRelay))
	mux.Handle("PUT /v1/relays/{name}", h.adminAPI(h.putRelay))
	mux.Handle("DELETE /v1/relays/{name}", h.adminAPI(h.deleteRelay))

	mux.Handle("POST /v1/keys/token/rotate", h.adminAPI(h.rotateTokenKey))
	if h.o.Migration != nil {
		h.migrationRoutes(mux)
	}
	if h.o.UI != nil {
		h.uiRoutes(mux)
	}
	mux.Handle("GET /v1/keys/operator", h.adminAPI(h.listOperatorKeys))
	mux.Handle("POST /v1/keys/operator", h.adminAPI(h.addOperatorKey))
	mux.Handle("DELETE /v1/keys/operator/{id}", h.adminAPI(h.revokeOperatorKey))

	mux.Handle("/v1/", h.adminAPI(func(w http.ResponseWriter, r *http.Request) error {
		return adminNoRoute(mux, w, r)
	}))
}

// adminNoRoute answers a request no route took: 405 with Allow when the path
// exists under other methods, else 404.
func adminNoRoute(mux *http.ServeMux, w http.ResponseWriter, r *http.Request) error {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete} {
		if _, pattern := mux.Handler(&http.Request{Method: m, URL: r.URL, Host: r.Host}); pattern != "/v1/" && pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) == 0 {
		return &adminError{http.StatusNotFound, adminapi.CodeNotFound, "no such resource: " + r.URL.Path}
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	return &adminError{http.StatusMethodNotAllowed, adminapi.CodeMethodNotAllowed, fmt.Sprintf("%s %s: allowed are %s", r.Method, r.URL.Path, strings.Join(allow, ", "))}
}

// --- instances ---

func instanceRecord(in *registry.Instance) adminapi.InstanceRecord {
	return adminapi.InstanceRecord{
		Spec:       in.Spec,
		Options:    in.Options,
		LaunchTime: in.LaunchTime,
		FromConfig: in.SeedHash != "",
		State:      in.State.Name(),
		Revision:   in.Revision,
	}
}

func (h *Handler) listInstances(w http.ResponseWriter, r *http.Request) error {
	all, err := h.o.Registry.Instances(r.Context())
	if err != nil {
		return err
	}
	out := adminapi.InstanceList{Instances: make([]adminapi.InstanceSummary, 0, len(all))}
	for _, in := range all {
		addrs := in.Spec.Addresses
		if addrs == nil {
			addrs = []string{}
		}
		out.Instances = append(out.Instances, adminapi.InstanceSummary{
			InstanceID: in.Spec.InstanceID,
			Addresses:  addrs,
			Options:    in.Options,
			State:      in.State.Name(),
			Revision:   in.Revision,
		})
	}
	slices.SortFunc(out.Instances, func(a, b adminapi.InstanceSummary) int { return strings.Compare(a.InstanceID, b.InstanceID) })
	writeAdminJSON(w, http.StatusOK, out)
	return nil
}

func (h *Handler) getInstance(w http.ResponseWriter, r *http.Request) error {
	in, err := h.o.Registry.Instance(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	setAdminETag(w, in.Revision)
	writeAdminJSON(w, http.StatusOK, instanceRecord(in))
	return nil
}

// putInstance registers an instance or replaces its spec. The body is the
// spec as one entry of the configuration file's instances, in JSON or YAML;
// its instance-id may be left out, else it must be the one in the path.
func (h *Handler) putInstance(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var spec config.Instance
	if err := decodeAdminBody(r, &spec); err != nil {
		return err
	}
	switch spec.InstanceID {
	case "":
		spec.InstanceID = id
	case id:
	default:
		return badParam("instance-id %q: the path names %s", spec.InstanceID, id)
	}
	var created bool
	in, err := h.writeInstance(r, id, func(cur *registry.Instance) (config.Instance, error) {
		created = cur == nil
		return spec, nil
	})
	if err != nil {
		return err
	}
	h.adminAudit(r, "instance put", "instance", id, "revision", in.Revision, "created", created)
	setAdminETag(w, in.Revision)
	status := http.StatusOK
	if created {
		w.Header().Set("Location", "/v1/instances/"+id)
		status = http.StatusCreated
	}
	writeAdminJSON(w, status, instanceRecord(in))
	return nil
}

// putInstances registers instances or replaces their specs, all or none:
// every spec is checked against the registry's rules and the current state
// first, and nothing is written if one breaks a rule.
func (h *Handler) putInstances(w http.ResponseWriter, r *http.Request) error {
	if err := refuseAdminConditional(r); err != nil {
		return err
	}
	var body adminapi.InstanceBatch
	if err := decodeAdminBody(r, &body); err != nil {
		return err
	}
	if len(body.Instances) == 0 {
		return badParam("instances: the list is empty")
	}
	res, err := h.o.Registry.PutInstances(r.Context(), body.Instances)
	out := adminapi.InstanceBatchResult{Instances: make([]adminapi.InstanceWritten, len(res))}
	for i, p := range res {
		out.Instances[i] = adminapi.InstanceWritten{InstanceRecord: instanceRecord(p.Instance), Created: p.Created}
		h.adminAudit(r, "instance put", "instance", p.Instance.Spec.InstanceID, "revision", p.Instance.Revision, "created", p.Created)
	}
	if err != nil {
		return err
	}
	writeAdminJSON(w, http.StatusOK, out)
	return nil
}

// writeInstance replaces the spec of instance id with what change returns
// for the current record (nil when the instance does not exist), under the
// request's preconditions. An instance that came from the configuration file
// keeps its mark, so that the change survives a restart.
func (h *Handler) writeInstance(r *http.Request, id string, change func(cur *registry.Instance) (config.Instance, error)) (*registry.Instance, error) {
	pre, err := parseAdminPrecondition(r)
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	var cur, out *registry.Instance
	read := func() (int64, bool, error) {
		in, err := h.o.Registry.Instance(ctx, id)
		var nf *registry.NotFoundError
		switch {
		case errors.As(err, &nf):
			cur = nil
			return 0, false, nil
		case err != nil:
			return 0, false, err
		}
		cur = in
		return in.Revision, true, nil
	}
	write := func(rev int64, exists bool) error {
		spec, err := change(cur)
		if err != nil {
			return err
		}
		if err := config.ValidateInstance(&spec); err != nil {
			return badParam("%v", err)
		}
		var seed string
		if cur != nil {
			seed = cur.SeedHash
		}
		out, err = h.o.Registry.Put(ctx, spec, condRev(rev, exists), seed)
		return err
	}
	if err := adminConditionalWrite("instance "+id, pre, read, write); err != nil {
		return nil, err
	}
	return out, nil
}

func (h *Handler) deleteInstance(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	pre, err := parseAdminPrecondition(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	read := func() (int64, bool, error) {
		in, err := h.o.Registry.Instance(ctx, id)
		var nf *registry.NotFoundError
		if errors.As(err, &nf) {
			return 0, false, nil
		}
		if err != nil {
			return 0, false, err
		}
		return in.Revision, true, nil
	}
	write := func(rev int64, exists bool) error {
		if !exists {
			return &registry.NotFoundError{Kind: "instance", ID: id}
		}
		return h.o.Registry.Delete(ctx, id, rev)
	}
	if err := adminConditionalWrite("instance "+id, pre, read, write); err != nil {
		return err
	}
	h.adminAudit(r, "instance deleted", "instance", id)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// --- events ---

// Defaults of an injected event.
const (
	defaultSpotNotice        = 2 * time.Minute
	defaultMaintenanceWindow = 2 * time.Hour
)

// addEvent serves POST /v1/instances/{id}/events: it sets a Spot interruption
// or a rebalance recommendation, or adds a scheduled maintenance event, in the
// instance's spec, where its metadata serves it from the next request.
func (h *Handler) addEvent(w http.ResponseWriter, r *http.Request) error {
	var ev adminapi.EventRequest
	if err := decodeAdminBody(r, &ev); err != nil {
		return err
	}
	apply, err := h.eventChange(ev, h.o.Now())
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	in, err := h.writeInstance(r, id, func(cur *registry.Instance) (config.Instance, error) {
		if cur == nil {
			return config.Instance{}, &registry.NotFoundError{Kind: "instance", ID: id}
		}
		spec := cur.Spec
		spec.Events = slices.Clone(spec.Events)
		apply(&spec)
		return spec, nil
	})
	if err != nil {
		return err
	}
	h.adminAudit(r, "instance event added", "instance", id, "type", ev.Type, "revision", in.Revision)
	setAdminETag(w, in.Revision)
	writeAdminJSON(w, http.StatusOK, instanceRecord(in))
	return nil
}

// eventChange checks ev and returns the change it makes to a spec.
func (h *Handler) eventChange(ev adminapi.EventRequest, now time.Time) (func(*config.Instance), error) {
	in := time.Duration(0)
	if ev.Type == adminapi.EventSpot {
		in = defaultSpotNotice
	}
	if ev.In != "" {
		d, err := time.ParseDuration(ev.In)
		if err != nil || d < 0 {
			return nil, badParam("in %q: want a duration such as 2m or 90s", ev.In)
		}
		in = d
	}
	at := now.Add(in)
	if ev.Time != "" {
		if ev.In != "" {
			return nil, badParam("time and in: give one of them")
		}
		t, err := time.Parse(time.RFC3339, ev.Time)
		if err != nil {
			return nil, badParam("time %q: not an RFC 3339 time such as 2026-01-02T15:04:05Z", ev.Time)
		}
		at = t
	}
	ts := at.UTC().Truncate(time.Second).Format(time.RFC3339)
	notFor := func(field, value string) error {
		if value != "" {
			return badParam("%s %q: only for another event type", field, value)
		}
		return nil
	}

	if ev.Type != adminapi.EventLifecycle {
		if err := notFor("lifecycle-state", ev.LifecycleState); err != nil {
			return nil, err
		}
	}
	switch ev.Type {
	case adminapi.EventSpot:
		action := ev.Action
		if action == "" {
			action = "terminate"
		}
		if !slices.Contains([]string{"terminate", "stop", "hibernate"}, action) {
			return nil, badParam("action %q: want terminate, stop or hibernate", ev.Action)
		}
		if err := errors.Join(notFor("code", ev.Code), notFor("description", ev.Description), notFor("duration", ev.Duration)); err != nil {
			return nil, err
		}
		return func(s *config.Instance) { s.Spot = &config.SpotAction{Action: action, Time: ts} }, nil

	case adminapi.EventRebalance:
		if err := errors.Join(notFor("action", ev.Action), notFor("code", ev.Code), notFor("description", ev.Description), notFor("duration", ev.Duration)); err != nil {
			return nil, err
		}
		return func(s *config.Instance) { s.Rebalance = ts }, nil

	case adminapi.EventLifecycle:
		if err := errors.Join(notFor("action", ev.Action), notFor("code", ev.Code), notFor("description", ev.Description),
			notFor("duration", ev.Duration), notFor("time", ev.Time), notFor("in", ev.In)); err != nil {
			return nil, err
		}
		if err := config.ValidateLifecycleState(ev.LifecycleState); err != nil {
			return nil, badParam("lifecycle-state %q: %v", ev.LifecycleState, err)
		}
		return func(s *config.Instance) { s.TargetLifecycleState = ev.LifecycleState }, nil

	case adminapi.EventMaintenance:
		if err := notFor("action", ev.Action); err != nil {
			return nil, err
		}
		code := ev.Code
		if code == "" {
			code = "system-reboot"
		}
		window := defaultMaintenanceWindow
		if ev.Duration != "" {
			d, err := time.ParseDuration(ev.Duration)
			if err != nil || d <= 0 {
				return nil, badParam("duration %q: want a positive duration such as 2h", ev.Duration)
			}
			window = d
		}
		desc := ev.Description
		if desc == "" {
			desc = "scheduled " + strings.ReplaceAll(code, "-", " ")
		}
		e := config.MaintenanceEvent{
			Code:        code,
			Description: desc,
			EventID:     newEventID(),
			NotBefore:   ts,
			NotAfter:    at.Add(window).UTC().Truncate(time.Second).Format(time.RFC3339),
			State:       "active",
		}
		// The code is checked with the rest of the spec.
		return func(s *config.Instance) { s.Events = append(s.Events, e) }, nil
	}
	return nil, badParam("type %q: want %s, %s, %s or %s", ev.Type, adminapi.EventSpot, adminapi.EventRebalance, adminapi.EventMaintenance, adminapi.EventLifecycle)
}

// newEventID makes an id in EC2's shape, instance-event-0123456789abcdef0.
func newEventID() string {
	b := make([]byte, 9)
	rand.Read(b)
	return "instance-event-" + hex.EncodeToString(b)[:17]
}

// clearEvents serves DELETE /v1/instances/{id}/events: it removes the Spot
// interruption, the rebalance recommendation and the maintenance events.
func (h *Handler) clearEvents(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	in, err := h.writeInstance(r, id, func(cur *registry.Instance) (config.Instance, error) {
		if cur == nil {
			return config.Instance{}, &registry.NotFoundError{Kind: "instance", ID: id}
		}
		spec := cur.Spec
		spec.Spot, spec.Rebalance, spec.Events = nil, "", nil
		return spec, nil
	})
	if err != nil {
		return err
	}
	h.adminAudit(r, "instance events cleared", "instance", id, "revision", in.Revision)
	setAdminETag(w, in.Revision)
	writeAdminJSON(w, http.StatusOK, instanceRecord(in))
	return nil
}

// --- token keys ---

func (h *Handler) rotateTokenKey(w http.ResponseWriter, r *http.Request) error {
	if _, err := h.o.Registry.EnsureTokenRing(r.Context()); err != nil {
		return err
	}
	tr, err := h.o.Registry.RotateTokenKey(r.Context())
	if err != nil {
		return err
	}
	out := adminapi.TokenKeys{Keys: make([]adminapi.TokenKeyInfo, len(tr.Keys))}
	for i, k := range tr.Keys {
		out.Keys[i] = adminapi.TokenKeyInfo{ID: k.ID, Created: k.Created, Retired: k.Retired}
	}
	if len(tr.Keys) > 0 {
		out.Signing = tr.Keys[0].ID
	}
	h.adminAudit(r, "token key rotated", "signing", out.Signing)
	writeAdminJSON(w, http.StatusOK, out)
	return nil
}

// --- operator keys ---

func (h *Handler) listOperatorKeys(w http.ResponseWriter, r *http.Request) error {
	ops, err := h.o.Registry.Operators(r.Context())
	if err != nil {
		return err
	}
	out := adminapi.OperatorKeyList{Keys: make([]adminapi.OperatorKey, len(ops))}
	for i, op := range ops {
		out.Keys[i] = adminapi.OperatorKey{AccessKeyID: op.AccessKeyID, Created: op.Created}
	}
	writeAdminJSON(w, http.StatusOK, out)
	return nil
}

// addOperatorKey makes a new operator key; its secret is in this answer only.
func (h *Handler) addOperatorKey(w http.ResponseWriter, r *http.Request) error {
	if err := refuseAdminConditional(r); err != nil {
		return err
	}
	op, err := h.o.Registry.AddOperator(r.Context())
	if err != nil {
		return err
	}
	h.adminAudit(r, "operator key added", "access_key_id", op.AccessKeyID)
	writeAdminJSON(w, http.StatusCreated, adminapi.OperatorKey{AccessKeyID: op.AccessKeyID, SecretAccessKey: op.SecretAccessKey, Created: op.Created})
	return nil
}

// revokeOperatorKey removes an operator key. This replica refuses it from the
// answer on; the others when their watch brings the change.
func (h *Handler) revokeOperatorKey(w http.ResponseWriter, r *http.Request) error {
	if err := refuseAdminConditional(r); err != nil {
		return err
	}
	id := r.PathValue("id")
	if err := h.o.Registry.RevokeOperator(r.Context(), id); err != nil {
		return err
	}
	if f, ok := h.o.Operators.(forgetter); ok {
		f.Forget(id)
	}
	h.adminAudit(r, "operator key revoked", "access_key_id", id)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
