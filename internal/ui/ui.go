// Package ui is the control plane's web page of the IMDSv2 migration view,
// mounted at /ui/: the fleet (each instance's http-tokens, verdict and
// IMDSv1 callers), one instance's callers, and a button that requires
// tokens where no caller would break.
//
// A browser cannot sign requests with SigV4, so the page has its own
// authentication: `imds ui` asks the (signed) admin API for a one-time login
// token that lives 60 seconds; GET /ui/login?token= consumes it, starts a
// session (an HttpOnly, SameSite=Strict cookie holding a random 256-bit id;
// 12 hours) and redirects to the fleet. Sessions are kept in the memory of
// the replica that started them: a restart ends them, and behind a load
// balancer a browser must reach the replica it logged in to.
//
// A state-changing request (POST) needs the session and the session's CSRF
// token, which the page carries in a <meta> tag and sends in the
// X-CSRF-Token header; a cross-site request (Origin or Sec-Fetch-Site) is
// refused as well. Templates and assets are embedded; the page loads nothing
// from elsewhere, and its Content-Security-Policy forbids it to.
package ui

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/imds/imds/internal/migration"
)

// Migration is the migration view the page shows and acts on (package
// migration's Service).
type Migration interface {
	// View is the fleet's view, or one instance's; an unknown instance is
	// an error wrapping migration.ErrUnknownInstance.
	View(ctx context.Context, instanceID string) (migration.View, error)
	// Enforce requires tokens where no caller would break. An unknown
	// instance is an error wrapping migration.ErrUnknownInstance; a wrong
	// request is a *migration.RequestError; nothing is changed then.
	Enforce(ctx context.Context, req migration.EnforceRequest) (migration.EnforceResult, error)
}

// Defaults of Options.
const (
	DefaultLoginTTL   = 60 * time.Second
	DefaultSessionTTL = 12 * time.Hour
	DefaultPoll       = 3 * time.Second
)

// Options configure the page.
type Options struct {
	Migration Migration
	Logger    *slog.Logger
	Now       func() time.Time
	// LoginTTL is how long a login token may wait to be used (60 s);
	// SessionTTL how long a session lasts (12 h).
	LoginTTL, SessionTTL time.Duration
	// Poll is how often the page asks for fresh data (3 s).
	Poll time.Duration
}

// Handler serves /ui/.
type Handler struct {
	o        Options
	log      *slog.Logger
	sessions *sessions
	pages    map[string]*template.Template
	mux      *http.ServeMux
	origin   *http.CrossOriginProtection
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// CookieName is the session cookie.
const CookieName = "imds_ui_session"

// New returns the page's handler.
func New(o Options) *Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.LoginTTL <= 0 {
		o.LoginTTL = DefaultLoginTTL
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = DefaultSessionTTL
	}
	if o.Poll <= 0 {
		o.Poll = DefaultPoll
	}
	h := &Handler{
		o:        o,
		log:      o.Logger.With("component", "ui"),
		sessions: newSessions(o.Now, o.LoginTTL, o.SessionTTL),
		pages:    map[string]*template.Template{},
		mux:      http.NewServeMux(),
		origin:   http.NewCrossOriginProtection(),
	}
	for _, p := range []string{"fleet.html", "instance.html", "error.html"} {
		h.pages[p] = template.Must(template.ParseFS(templateFS, "templates/layout.html", "templates/"+p))
	}
	assets, _ := fs.Sub(assetFS, "assets")
	h.mux.Handle("GET /ui/assets/", http.StripPrefix("/ui/assets/", http.FileServerFS(assets)))
	h.mux.HandleFunc("GET /ui/login", h.login)
	h.mux.Handle("POST /ui/logout", h.state(h.logout))
	h.mux.Handle("GET /ui/{$}", h.page(h.fleet))
	h.mux.Handle("GET /ui/instances/{id}", h.page(h.instance))
	h.mux.Handle("GET /ui/api/migration", h.api(h.apiView))
	h.mux.Handle("GET /ui/api/migration/{id}", h.api(h.apiInstance))
	h.mux.Handle("POST /ui/api/enforce", h.state(h.apiEnforce))
	h.mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		h.errorPage(w, http.StatusNotFound, "Not found", "There is no page "+r.URL.Path+" here.")
	})
	return h
}

// NewLogin mints a one-time login token and returns the path and query
// that consume it, /ui/login?token=..., and when it expires.
func (h *Handler) NewLogin() (path string, expires time.Time) {
	tok, exp := h.sessions.newLogin()
	return "/ui/login?" + url.Values{"token": {tok}}.Encode(), exp
}

// ServeHTTP sets the security headers of every answer and serves the page.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	h.mux.ServeHTTP(w, r)
}

// login consumes a login token, starts a session and goes to the fleet.
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	tok := r.URL.Query().Get("token")
	if tok == "" {
		h.errorPage(w, http.StatusUnauthorized, "No login token",
			"This address has no login token. Run `imds ui` and open the URL it prints.")
		return
	}
	id, sess, ok := h.sessions.login(tok)
	if !ok {
		h.log.Info("login refused: token unknown, used or expired", "remote", r.RemoteAddr)
		h.errorPage(w, http.StatusUnauthorized, "Login link expired or already used",
			"A login link works once, within "+h.o.LoginTTL.String()+" of `imds ui` printing it. This one has expired or was already used. Run `imds ui` again and open the new URL.")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     CookieName,
		Value:    id,
		Path:     "/ui/",
		Expires:  sess.expires,
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
	h.log.Info("session started", "remote", r.RemoteAddr, "expires", sess.expires.UTC().Format(time.RFC3339))
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}

// session returns the request's live session.
func (h *Handler) session(r *http.Request) (*session, string, bool) {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return nil, "", false
	}
	s, ok := h.sessions.lookup(c.Value)
	return s, c.Value, ok
}

const notLoggedIn = "You are not logged in, or your session has expired. Run `imds ui` and open the URL it prints."

// page serves a page to a session; others get a 401 page.
func (h *Handler) page(f func(w http.ResponseWriter, r *http.Request, s *session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _, ok := h.session(r)
		if !ok {
			h.errorPage(w, http.StatusUnauthorized, "Not logged in", notLoggedIn)
			return
		}
		f(w, r, s)
	})
}

// apiFunc is a JSON endpoint; a returned error becomes the answer.
type apiFunc func(w http.ResponseWriter, r *http.Request) error

// apiError is an answer decided by an endpoint.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

// api serves a JSON endpoint to a session; others get a 401 JSON error.
func (h *Handler) api(f apiFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, _, ok := h.session(r); !ok {
			writeJSON(w, http.StatusUnauthorized, errorBody{notLoggedIn})
			return
		}
		h.serveAPI(w, r, f)
	})
}

// state serves a state-changing request: it needs a session, the session's
// CSRF token in X-CSRF-Token, and no sign of a cross-site origin. Anything
// else is refused with 403 before the endpoint runs.
func (h *Handler) state(f func(w http.ResponseWriter, r *http.Request, s *session, id string) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h.origin.Check(r); err != nil {
			writeJSON(w, http.StatusForbidden, errorBody{"refused: a cross-origin request (its Origin or Sec-Fetch-Site is not this page's); nothing was changed"})
			return
		}
		s, id, ok := h.session(r)
		if !ok {
			writeJSON(w, http.StatusForbidden, errorBody{"refused: no session; nothing was changed. " + notLoggedIn})
			return
		}
		if !validCSRF(s, r.Header.Get("X-CSRF-Token")) {
			writeJSON(w, http.StatusForbidden, errorBody{"refused: the X-CSRF-Token header is missing or not this session's; nothing was changed. Reload the page and try again."})
			return
		}
		h.serveAPI(w, r, func(w http.ResponseWriter, r *http.Request) error { return f(w, r, s, id) })
	})
}

func (h *Handler) serveAPI(w http.ResponseWriter, r *http.Request, f apiFunc) {
	err := f(w, r)
	if err == nil {
		return
	}
	var (
		ae *apiError
		re *migration.RequestError
	)
	switch {
	case errors.As(err, &ae):
		writeJSON(w, ae.status, errorBody{ae.msg})
	case errors.Is(err, migration.ErrUnknownInstance):
		writeJSON(w, http.StatusNotFound, errorBody{err.Error()})
	case errors.As(err, &re):
		writeJSON(w, http.StatusBadRequest, errorBody{re.Error()})
	default:
		h.log.Error("ui request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeJSON(w, http.StatusInternalServerError, errorBody{"internal error; the server's log says more"})
	}
}

type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
