package migration

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imds/imds/internal/dataplane"
)

// AuditLog writes one JSON line per credential set handed out and per IMDSv1
// request refused. Lines are queued on the request path and written by Run;
// when the queue is full a line is dropped and counted, never waited for.
// It never writes a secret access key or a session token.
type AuditLog struct {
	path    string
	log     *slog.Logger
	queue   chan auditItem
	dropped atomic.Uint64

	mu sync.Mutex // guards f
	f  *os.File
}

// AuditEntry is one line of the audit log.
type AuditEntry struct {
	Time         time.Time `json:"time"`
	Event        string    `json:"event"` // "credentials" or "imdsv1-refused"
	InstanceID   string    `json:"instance-id"`
	Caller       string    `json:"caller"`
	Via          string    `json:"via"`
	UserAgent    string    `json:"user-agent"`
	Path         string    `json:"path"`
	Role         string    `json:"role,omitempty"`
	AccessKeyID  string    `json:"access-key-id,omitempty"`
	RoleDelivery string    `json:"role-delivery,omitempty"` // 1.0 (IMDSv1) or 2.0 (IMDSv2)
}

// Audit events.
const (
	AuditCredentials = "credentials"
	AuditRefused     = "imdsv1-refused"
)

type auditItem struct {
	entry AuditEntry
	body  []byte // the credentials document, read for its AccessKeyId
}

// OpenAuditLog opens (creating, appending) the audit log at path.
func OpenAuditLog(path string, log *slog.Logger) (*AuditLog, error) {
	a := &AuditLog{path: path, log: log, queue: make(chan auditItem, 4096)}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if err := a.Reopen(); err != nil {
		return nil, err
	}
	return a, nil
}

// Reopen closes the file and opens its path again: after logrotate moved it.
func (a *AuditLog) Reopen() error {
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	a.mu.Lock()
	old := a.f
	a.f = f
	a.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// Dropped is the number of lines dropped because the queue was full.
func (a *AuditLog) Dropped() uint64 { return a.dropped.Load() }

func (a *AuditLog) enqueue(it auditItem) {
	select {
	case a.queue <- it:
	default:
		a.dropped.Add(1)
	}
}

// Run writes queued lines until ctx ends, then the ones still queued, and
// closes the file.
func (a *AuditLog) Run(ctx context.Context) error {
	for {
		select {
		case it := <-a.queue:
			a.write(it)
		case <-ctx.Done():
			for {
				select {
				case it := <-a.queue:
					a.write(it)
				default:
					a.mu.Lock()
					a.f.Close()
					a.mu.Unlock()
					return nil
				}
			}
		}
	}
}

func (a *AuditLog) write(it auditItem) {
	e := it.entry
	if it.body != nil {
		var doc struct {
			AccessKeyID string `json:"AccessKeyId"`
		}
		if json.Unmarshal(it.body, &doc) != nil || doc.AccessKeyID == "" {
			return // the error form: no set was handed out
		}
		e.AccessKeyID = doc.AccessKeyID
	}
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	b = append(b, '\n')
	a.mu.Lock()
	_, err = a.f.Write(b)
	a.mu.Unlock()
	if err != nil {
		a.log.Error("write audit log", "path", a.path, "err", err)
	}
}

// auditRequest queues the audit line of a request, if it makes one.
func (r *Recorder) auditRequest(o *dataplane.Outcome, ua string) {
	var it auditItem
	switch {
	case o.Status == 401 && !o.Token && o.TokensRequired && o.Method != "PUT":
		it.entry.Event = AuditRefused
	case o.Status == 200 && o.Body != nil:
		role, ok := isCredentials(o.Path)
		if !ok {
			return
		}
		it.entry.Event = AuditCredentials
		it.entry.Role = role
		it.entry.RoleDelivery = "1.0"
		if o.Token && o.TokenValid {
			it.entry.RoleDelivery = "2.0"
		}
		it.body = o.Body
	default:
		return
	}
	it.entry.Time = r.now().UTC()
	it.entry.InstanceID = o.Instance
	it.entry.Caller = o.Source.String()
	it.entry.Via = o.Via.String()
	it.entry.UserAgent = ua
	it.entry.Path = o.Path
	r.audit.enqueue(it)
}
