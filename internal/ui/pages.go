package ui

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/imds/imds/internal/migration"
)

// pageData is what the templates render.
type pageData struct {
	Title   string
	CSRF    string
	Page    string // "fleet", "instance" or "error"
	API     string // the JSON the page polls
	Poll    int64  // milliseconds
	ID      string // the instance of an instance page
	Message string // the text of an error page
}

func (h *Handler) render(w http.ResponseWriter, status int, name string, d pageData) {
	var buf bytes.Buffer
	if err := h.pages[name].ExecuteTemplate(&buf, "layout", d); err != nil {
		h.log.Error("render page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (h *Handler) errorPage(w http.ResponseWriter, status int, title, msg string) {
	h.render(w, status, "error.html", pageData{Title: title, Page: "error", Message: msg})
}

func (h *Handler) fleet(w http.ResponseWriter, r *http.Request, s *session) {
	h.render(w, http.StatusOK, "fleet.html", pageData{
		Title: "IMDSv2 migration", Page: "fleet", CSRF: s.csrf,
		API: "/ui/api/migration", Poll: h.o.Poll.Milliseconds(),
	})
}

func (h *Handler) instance(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	if _, err := h.o.Migration.View(r.Context(), id); err != nil {
		if errors.Is(err, migration.ErrUnknownInstance) {
			h.errorPage(w, http.StatusNotFound, "Unknown instance", fmt.Sprintf("There is no instance %q in the fleet.", id))
			return
		}
		h.log.Error("read the migration view", "instance", id, "err", err)
		h.errorPage(w, http.StatusInternalServerError, "Internal error", "The migration view could not be read; the server's log says more.")
		return
	}
	h.render(w, http.StatusOK, "instance.html", pageData{
		Title: id, Page: "instance", CSRF: s.csrf, ID: id,
		API: "/ui/api/migration/" + id, Poll: h.o.Poll.Milliseconds(),
	})
}

func (h *Handler) apiView(w http.ResponseWriter, r *http.Request) error {
	v, err := h.o.Migration.View(r.Context(), "")
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (h *Handler) apiInstance(w http.ResponseWriter, r *http.Request) error {
	v, err := h.o.Migration.View(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if len(v.Instances) != 1 {
		return fmt.Errorf("view of %s has %d instances, want 1", r.PathValue("id"), len(v.Instances))
	}
	writeJSON(w, http.StatusOK, struct {
		Window    string    `json:"window"`
		Generated time.Time `json:"generated"`
		migration.Instance
	}{v.Window, v.Generated, v.Instances[0]})
	return nil
}

// enforceRequest is the body of POST /ui/api/enforce.
type enforceRequest struct {
	InstanceID string `json:"instance-id"`
}

// enforceAnswer is its answer: what was done, and the same text as
// `imds migration enforce` prints.
type enforceAnswer struct {
	OK      bool                    `json:"ok"`
	Message string                  `json:"message"`
	Result  migration.EnforceResult `json:"result"`
}

const maxBody = 4 << 10

func (h *Handler) apiEnforce(w http.ResponseWriter, r *http.Request, s *session, _ string) error {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		return &apiError{http.StatusUnsupportedMediaType, "the body must be JSON (Content-Type: application/json): {\"instance-id\": \"i-...\"}"}
	}
	var req enforceRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return &apiError{http.StatusBadRequest, fmt.Sprintf("the body is not {\"instance-id\": \"i-...\"}: %v", err)}
	}
	if req.InstanceID == "" {
		return &apiError{http.StatusBadRequest, "the body names no instance: want {\"instance-id\": \"i-...\"}"}
	}
	res, err := h.o.Migration.Enforce(r.Context(), migration.EnforceRequest{InstanceIDs: []string{req.InstanceID}})
	if err != nil {
		return err
	}
	if len(res.Enforced) > 0 {
		h.log.Info("migration: required tokens", "instances", res.Enforced, "remote", r.RemoteAddr)
	}
	writeJSON(w, http.StatusOK, enforceAnswer{OK: len(res.Refused) == 0, Message: res.Text(), Result: res})
	return nil
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request, _ *session, id string) error {
	h.sessions.logout(id)
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/ui/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	writeJSON(w, http.StatusOK, struct {
		Message string `json:"message"`
	}{"logged out; run `imds ui` to log in again"})
	return nil
}

func validCSRF(s *session, got string) bool {
	got = strings.TrimSpace(got)
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) == 1
}
