package credentials

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/imds/imds/internal/metadata"
)

// Codes of the error form. EC2 answers AssumeRoleUnauthorizedAccess when the
// role cannot be assumed; clients treat any Code other than Success as a
// failure.
const (
	codeDenied      = "AssumeRoleUnauthorizedAccess"
	codeUnavailable = "CredentialsUnavailable"
)

// set is one credential set: a role's credentials for one instance and
// delivery, or shared by several (see setKey).
type set struct {
	role   *role
	key    setKey
	params params
	cur    atomic.Pointer[view] // never nil

	// Guarded by Manager.mu.
	fetching      bool
	inflight      chan struct{} // closed when the fetch in flight ends
	attempted     bool          // a fetch has ended
	dropped       bool          // no longer served: results are ignored
	refs          int           // registrations (instances) using it
	due           time.Time     // next fetch; zero: at once
	failures      int           // consecutive
	lastErr       *fetchError
	lastSuccess   time.Time
	lastError     time.Time
	expires       time.Time
	expiredLogged bool
}

// view is what requests read: rendered once per fetch.
type view struct {
	ok       []byte // the credentials document; nil when there is none yet
	extended []byte // the same with AccountId; nil when the account is unknown
	src      *creds // what ok and extended were rendered from
	updated  time.Time
	expires  time.Time
	fail     []byte // the error form, served when ok is nil or expired
}

func newSet(r *role, k setKey, p params, now time.Time) *set {
	s := &set{role: r, key: k, params: p}
	s.cur.Store(&view{fail: metadata.CredentialsErrorJSON(codeUnavailable,
		fmt.Sprintf("The credentials of role %s are being fetched.", r.name), now)})
	return s
}

// message is the error form's Message: generic, never the source's words.
func (s *set) message(k errKind, had bool) string {
	name := s.role.name
	switch {
	case k == kindDenied:
		return fmt.Sprintf("EC2 cannot assume the role %s.  Please see documentation at http://docs.amazonwebservices.com/IAM/latest/UserGuide/RolesTroubleshooting.html.", name)
	case had:
		return fmt.Sprintf("The credentials of role %s expired and could not be renewed; their source is unavailable. Retrying.", name)
	}
	return fmt.Sprintf("The credentials of role %s could not be fetched; their source is unavailable. Retrying.", name)
}

// renderer serves the documents of one subject.
type renderer struct {
	clock  func() time.Time
	v2, v1 *set // v1 is nil when IMDSv1 requests get the v2 set
}

func (r *renderer) view(req metadata.Request) *view {
	if !req.V2 && r.v1 != nil {
		return r.v1.cur.Load()
	}
	return r.v2.cur.Load()
}

// document renders iam/security-credentials/ROLE; a metadata.DynamicFunc.
func (r *renderer) document(req metadata.Request) ([]byte, bool) {
	v := r.view(req)
	if v.ok != nil && r.clock().Before(v.expires) {
		return v.ok, true
	}
	return v.fail, true
}

// extended renders iam/security-credentials-extended/ROLE.
func (r *renderer) extended(req metadata.Request) ([]byte, bool) {
	v := r.view(req)
	if v.ok != nil && r.clock().Before(v.expires) {
		return v.extended, v.extended != nil
	}
	return v.fail, true
}

// extendedAs renders iam/security-credentials-extended/ROLE with account as
// the AccountId of credentials whose source names no account.
func (r *renderer) extendedAs(account string) metadata.DynamicFunc {
	return func(req metadata.Request) ([]byte, bool) {
		v := r.view(req)
		if v.ok == nil || !r.clock().Before(v.expires) {
			return v.fail, true
		}
		if v.extended != nil {
			return v.extended, true
		}
		c := *v.src
		c.AccountID = account
		return extendedJSON(&c, v.updated, v.expires), true
	}
}

// event is what a fetch changed, for the log.
type event struct {
	kind     int
	failures int // consecutive, before a success or including a failure
	err      *fetchError
	expires  time.Time
	retry    time.Duration
}

const (
	evFetched = iota
	evRenewed
	evFailed
	evExpired
)

// log writes one line per change worth an operator's attention: the first
// failure of a streak, an expiry, a recovery. Routine fetches go to debug.
func (e event) log(log *slog.Logger, s *set) {
	attrs := []any{"role", s.role.name, "source", s.role.kind}
	if s.role.identity {
		attrs = append(attrs, "identity", true)
	}
	if s.params.InstanceID != "" {
		attrs = append(attrs, "instance", s.params.InstanceID)
	}
	if s.role.perDelivery {
		attrs = append(attrs, "delivery", s.params.Delivery)
	}
	exp := e.expires.Format(time.RFC3339)
	switch e.kind {
	case evFetched:
		log.Debug("credentials fetched", append(attrs, "expires", exp)...)
	case evRenewed:
		if e.failures > 0 {
			log.Info("credential source recovered", append(attrs, "failures", e.failures, "expires", exp)...)
		} else {
			log.Debug("credentials renewed", append(attrs, "expires", exp)...)
		}
	case evExpired:
		log.Error("credentials expired: serving the error form until the source answers",
			append(attrs, "error", e.err.Error(), "kind", e.err.kind.String(), "failures", e.failures, "retry_in", e.retry.String())...)
	case evFailed:
		lvl := slog.LevelDebug
		if e.failures == 1 {
			lvl = slog.LevelWarn
		}
		msg := "credential source failed: serving the last credentials until they expire"
		if e.expires.IsZero() {
			msg = "credential source failed: no credentials to serve yet"
		} else {
			attrs = append(attrs, "expires", exp)
		}
		log.Log(context.Background(), lvl, msg, append(attrs, "error", e.err.Error(), "kind", e.err.kind.String(), "failures", e.failures, "retry_in", e.retry.String())...)
	}
}
