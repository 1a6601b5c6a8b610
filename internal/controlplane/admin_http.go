package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/imds/imds/internal/adminapi"
	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/events"

	"github.com/imds/imds/internal/migration"
	"github.com/imds/imds/internal/registry"
	"github.com/imds/imds/internal/store"
)

// maxAdminBody bounds a request body of the admin API.
const maxAdminBody = 1 << 20

// adminError is an answer decided by a handler: its status, code and message.
type adminError struct {
	status  int
	code    string
	message string
}

func (e *adminError) Error() string { return e.message }

func badParam(format string, args ...any) error {
	return &adminError{http.StatusBadRequest, adminapi.CodeInvalidParameter, fmt.Sprintf(format, args...)}
}

// adminFunc is an admin handler; a returned error becomes the answer.
type adminFunc func(w http.ResponseWriter, r *http.Request) error

// adminAPI adapts f: it bounds the body and writes f's error.
func (h *Handler) adminAPI(f adminFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxAdminBody)
		if err := f(w, r); err != nil {
			h.writeError(w, r, err)
		}
	})
}

// writeError is the admin API's one error writer: it decides the status code
// of every error. Internal errors are logged and answered without their text.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var (
		ae  *adminError
		nf  *registry.NotFoundError
		inv *registry.InvalidError
		mb  *http.MaxBytesError
		mr  *migration.RequestError
		re  *registry.RuleError
	)
	d := adminapi.ErrorDetail{Code: adminapi.CodeInternalError, Message: "internal error"}
	status := http.StatusInternalServerError
	var (
		enf *events.EventNotFoundError
		est *events.StateError
		ese *events.EventStartError
	)
	switch {
	case errors.As(err, &ae):
		status, d = ae.status, adminapi.ErrorDetail{Code: ae.code, Message: ae.message}
	case errors.As(err, &re):
		// Every broken rule, each naming its instance.
		status, d = http.StatusBadRequest, adminapi.ErrorDetail{Code: adminapi.CodeInvalidParameter, Message: err.Error()}
		if errors.Is(err, registry.ErrConflict) {
			status, d.Code = http.StatusConflict, adminapi.CodeConflict
		}
	case errors.As(err, &enf):
		status, d = http.StatusNotFound, adminapi.ErrorDetail{Code: adminapi.CodeNotFound, Message: enf.Error()}
	case errors.As(err, &ese):
		status, d = http.StatusBadRequest, adminapi.ErrorDetail{Code: adminapi.CodeInvalidParameter, Message: ese.Error()}
	case errors.Is(err, events.ErrEventNotActive), errors.As(err, &est):
		status, d = http.StatusConflict, adminapi.ErrorDetail{Code: adminapi.CodeConflict, Message: err.Error()}
	case errors.As(err, &nf):
		status, d = http.StatusNotFound, adminapi.ErrorDetail{Code: adminapi.CodeNotFound, Message: nf.Error()}
	case errors.Is(err, migration.ErrUnknownInstance):
		status, d = http.StatusNotFound, adminapi.ErrorDetail{Code: adminapi.CodeNotFound, Message: err.Error()}
	case errors.As(err, &mr):
		status, d = http.StatusBadRequest, adminapi.ErrorDetail{Code: adminapi.CodeInvalidParameter, Message: mr.Error()}
	case errors.As(err, &inv):
		status, d = http.StatusBadRequest, adminapi.ErrorDetail{Code: adminapi.CodeInvalidParameter, Message: inv.Error()}
	case errors.Is(err, registry.ErrConflict):
		status, d = http.StatusConflict, adminapi.ErrorDetail{Code: adminapi.CodeConflict, Message: err.Error()}
	case errors.As(err, &mb):
		status, d = http.StatusRequestEntityTooLarge, adminapi.ErrorDetail{Code: adminapi.CodeRequestTooLarge, Message: fmt.Sprintf("the body is larger than %d bytes", mb.Limit)}
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		status, d = http.StatusServiceUnavailable, adminapi.ErrorDetail{Code: adminapi.CodeServiceUnavailable, Message: "the store did not answer in time; retry"}
		h.log.Warn("admin request failed", "component", "controlplane", "method", r.Method, "path", r.URL.Path, "err", err)
	default:
		h.log.Error("admin request failed", "component", "controlplane", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeAdminJSON(w, status, adminapi.ErrorBody{Error: d})
}

// adminAudit logs a change made through the admin API and the operator key that
// signed it.
func (h *Handler) adminAudit(r *http.Request, msg string, args ...any) {
	h.log.Info(msg, append([]any{"component", "controlplane", "operator", OperatorFrom(r.Context())}, args...)...)
}

func writeAdminJSON(w http.ResponseWriter, status int, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		// Only values of this package are written; they always encode.
		panic("controlplane: encode answer: " + err.Error())
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

func setAdminETag(w http.ResponseWriter, rev int64) {
	w.Header().Set("ETag", strconv.Quote(strconv.FormatInt(rev, 10)))
}

// decodeAdminBody reads the body into v: JSON (the default), or YAML when the
// Content-Type says so. Unknown keys are refused in both, naming the key.
func decodeAdminBody(r *http.Request, v any) error {
	data, isYAML, err := readAdminBody(r)
	if err != nil {
		return err
	}
	if isYAML {
		return decodeAdminYAML(data, v)
	}
	return decodeAdminJSON(data, v)
}

// readAdminBody reads a JSON or YAML body, as its Content-Type says (JSON when
// there is none).
func readAdminBody(r *http.Request) (data []byte, isYAML bool, err error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		switch {
		case err != nil:
			return nil, false, &adminError{http.StatusUnsupportedMediaType, adminapi.CodeUnsupportedMediaType, fmt.Sprintf("Content-Type %q: %v", ct, err)}
		case mt == "application/json":
		case mt == "application/yaml", mt == "application/x-yaml", mt == "text/yaml":
			isYAML = true
		default:
			return nil, false, &adminError{http.StatusUnsupportedMediaType, adminapi.CodeUnsupportedMediaType, fmt.Sprintf("Content-Type %q: send application/json or application/yaml", mt)}
		}
	}
	data, err = io.ReadAll(r.Body)
	if err != nil {
		return nil, false, err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, false, badParam("the body is empty")
	}
	return data, isYAML, nil
}

func decodeAdminJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	var (
		se *json.SyntaxError
		te *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &se):
		return badParam("the body is not valid JSON: %v (at byte %d)", se, se.Offset)
	case errors.As(err, &te) && te.Field != "":
		return badParam("%s: want %s, not a JSON %s", te.Field, jsonKindOf(te.Type), te.Value)
	case errors.As(err, &te):
		return badParam("the body must be a JSON object, not a JSON %s", te.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badParam("the body is not valid JSON: it ends early")
	case err != nil:
		// Unknown fields ("json: unknown field \"x\"") and errors of custom
		// decoders: their messages name the key.
		return badParam("%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return badParam("the body holds more than one JSON value")
	}
	return nil
}

// jsonKindOf names what JSON value a Go type takes.
func jsonKindOf(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return "a base64 string"
		}
		return "a list"
	}
	return "an object"
}

func decodeAdminYAML(data []byte, v any) error {
	err := config.DecodeYAML(data, v)
	switch {
	case errors.Is(err, io.EOF):
		return badParam("the body is empty")
	case err != nil:
		return badParam("%s", err)
	}
	return nil
}

// adminPrecondition holds the conditional headers of a write.
type adminPrecondition struct {
	ifMatch     []string // entity tags, or "*"
	ifNoneMatch bool     // If-None-Match: *
}

// parseAdminPrecondition reads If-Match and If-None-Match.
func parseAdminPrecondition(r *http.Request) (adminPrecondition, error) {
	var p adminPrecondition
	if v := r.Header.Values("If-Match"); len(v) > 0 {
		for _, tag := range strings.Split(strings.Join(v, ","), ",") {
			tag = strings.TrimSpace(tag)
			if tag != "*" && !(len(tag) >= 2 && tag[0] == '"' && tag[len(tag)-1] == '"') && !strings.HasPrefix(tag, `W/"`) {
				return p, badParam("If-Match %q: want \"*\" or an entity tag in quotes, as the ETag header gives it", tag)
			}
			p.ifMatch = append(p.ifMatch, tag)
		}
	}
	if v := r.Header.Values("If-None-Match"); len(v) > 0 {
		if strings.TrimSpace(strings.Join(v, ",")) != "*" {
			return p, badParam("If-None-Match: only \"*\" (create, do not replace) is supported")
		}
		p.ifNoneMatch = true
	}
	return p, nil
}

// check refuses the write with 412 when the record (what, at revision rev if
// it exists) does not meet the preconditions. If-Match compares strongly: a
// weak tag never matches.
func (p adminPrecondition) check(what string, exists bool, rev int64) error {
	failed := func(format string, args ...any) error {
		return &adminError{http.StatusPreconditionFailed, adminapi.CodePreconditionFailed, fmt.Sprintf(format, args...)}
	}
	if p.ifNoneMatch && exists {
		return failed("%s already exists (If-None-Match: *)", what)
	}
	if len(p.ifMatch) == 0 {
		return nil
	}
	if !exists {
		return failed("%s does not exist (If-Match)", what)
	}
	cur := strconv.Quote(strconv.FormatInt(rev, 10))
	if slices.Contains(p.ifMatch, "*") || slices.Contains(p.ifMatch, cur) {
		return nil
	}
	return failed("%s changed: it is at revision %s, not %s; read it again", what, cur, strings.Join(p.ifMatch, ", "))
}

// adminConditionalWrite writes a record under the request's preconditions. read
// returns the record's current revision; write writes against it (store.Absent
// when it does not exist) and returns registry.ErrConflict if it changed
// meanwhile. Then the write is tried again from the read, so that a
// conditional request fails with 412 and an unconditional one overwrites
// whatever is there; a conflict that does not come from a change of the
// record (an address another instance holds) is returned as it is.
func adminConditionalWrite(what string, p adminPrecondition, read func() (rev int64, exists bool, err error), write func(rev int64, exists bool) error) error {
	const attempts = 5
	for attempt := 1; ; attempt++ {
		rev, exists, err := read()
		if err != nil {
			return err
		}
		if err := p.check(what, exists, rev); err != nil {
			return err
		}
		err = write(rev, exists)
		if err == nil || !errors.Is(err, registry.ErrConflict) || attempt == attempts {
			return err
		}
		now, stillExists, rerr := read()
		if rerr != nil || (now == rev && stillExists == exists) {
			return err
		}
	}
}

// condRev returns the revision condition for a record that exists at rev, or
// store.Absent.
func condRev(rev int64, exists bool) int64 {
	if !exists {
		return store.Absent
	}
	return rev
}
