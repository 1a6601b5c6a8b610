package credentials

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/metadata"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fakeSource mints numbered credentials valid for life, or fails with err.
type fakeSource struct {
	now   func() time.Time
	life  time.Duration
	calls atomic.Int64

	mu    sync.Mutex
	err   error
	block bool // wait for ctx to end
	seen  []params
}

func (f *fakeSource) fetch(ctx context.Context, p params) (*creds, error) {
	n := f.calls.Add(1)
	f.mu.Lock()
	err, block := f.err, f.block
	f.seen = append(f.seen, p)
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return nil, &fetchError{kind: kindUnavailable, detail: "fake: " + ctx.Err().Error()}
	}
	if err != nil {
		return nil, err
	}
	return &creds{
		AccessKeyID:     fmt.Sprintf("ASIAFAKE%04d", n),
		SecretAccessKey: fmt.Sprintf("secret-%04d", n),
		SessionToken:    fmt.Sprintf("token-%04d", n),
		Expires:         f.now().Add(f.life),
		AccountID:       "210987654321",
	}, nil
}

func (f *fakeSource) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// install serves a role backed by src, as Update does for configured ones.
func (m *Manager) install(name string, src source, perInstance, perDelivery bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.roles[name] = &role{name: name, kind: "fake", src: src, timeout: 30 * time.Second,
		perInstance: perInstance, perDelivery: perDelivery, sem: make(chan struct{}, fetchesPerRole)}
}

type fixture struct {
	clock *fakeClock
	m     *Manager
	logs  *bytes.Buffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{clock: &fakeClock{t: t0}, logs: &bytes.Buffer{}}
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: f.logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.m = NewManager(log, f.clock.Now)
	f.m.rand = func() float64 { return 0 }
	return f
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// doc is a parsed credentials document.
type doc struct {
	Code, Message, LastUpdated, Type   string
	AccessKeyID                        string `json:"AccessKeyId"`
	SecretAccessKey, Token, Expiration string
	AccountID                          string `json:"AccountId"`
}

func render(t *testing.T, f metadata.DynamicFunc, v2 bool) doc {
	t.Helper()
	body, ok := f(metadata.Request{V2: v2})
	if !ok {
		t.Fatal("renderer answered 404")
	}
	var d doc
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	return d
}

func ts(t time.Time) string { return t.UTC().Format(metadata.TimeFormat) }

func TestStaticServedWithoutFetching(t *testing.T) {
	f := newFixture(t)
	err := f.m.Update(map[string]*config.Role{"app": {Static: &config.StaticSource{
		AccessKeyID: "AKIAEXAMPLE", SecretAccessKey: "s3cret", SessionToken: "tok"}}})
	if err != nil {
		t.Fatal(err)
	}
	fn := f.m.For(Subject{Role: "app", InstanceID: "i-0123456789abcdef0", V1: true})
	want := string(metadata.CredentialsJSON("AKIAEXAMPLE", "s3cret", "tok", t0, t0.Add(6*time.Hour)))
	for _, v2 := range []bool{true, false} {
		if got, _ := fn(metadata.Request{V2: v2}); string(got) != want {
			t.Errorf("V2=%v: got\n%s\nwant\n%s", v2, got, want)
		}
	}
	if f.m.For(Subject{Role: "nope"}) != nil {
		t.Error("For(unknown role) is not nil")
	}
	if f.m.ForExtended(Subject{Role: "app"}) != nil {
		t.Error("ForExtended of static keys without account-id, for an instance without one, is not nil")
	}
	// The role is in the instance's account.
	body, ok := f.m.ForExtended(Subject{Role: "app", InstanceID: "i-0123456789abcdef0", V1: true, AccountID: "210987654321"})(metadata.Request{V2: true})
	legacy, _ := fn(metadata.Request{V2: true})
	if want := strings.TrimSuffix(string(legacy), "\n}") + ",\n  \"AccountId\" : \"210987654321\"\n}"; !ok || string(body) != want {
		t.Errorf("extended document of static keys without account-id:\n%s\nwant\n%s", body, want)
	}
	if f.m.ForIdentity(Subject{InstanceID: "i-0123456789abcdef0"}) != nil {
		t.Error("ForIdentity without identity credentials is not nil")
	}
}

// TestStaticExpiration: static keys with an expiration are served with it,
// and answer the error form once it has passed, renewed or not.
func TestStaticExpiration(t *testing.T) {
	f := newFixture(t)
	exp := t0.Add(30 * time.Minute)
	err := f.m.Update(map[string]*config.Role{"app": {Static: &config.StaticSource{
		AccessKeyID: "ASIAEXAMPLE", SecretAccessKey: "s3cret", SessionToken: "tok", Expiration: exp.Format(time.RFC3339)}}})
	if err != nil {
		t.Fatal(err)
	}
	fn := f.m.For(Subject{Role: "app", InstanceID: "i-0123456789abcdef0"})
	if d := render(t, fn, true); d.Code != "Success" || d.Expiration != ts(exp) || d.AccessKeyID != "ASIAEXAMPLE" {
		t.Fatalf("before expiry: got %+v, want Success with Expiration %s", d, ts(exp))
	}
	f.clock.Add(31 * time.Minute)
	if d := render(t, fn, true); d.Code == "Success" || d.AccessKeyID != "" {
		t.Errorf("after expiry: got %+v, want the error form", d)
	}
	f.m.RefreshDue(t.Context())
	if d := render(t, fn, true); d.Code == "Success" || !strings.Contains(d.Message, "expired") {
		t.Errorf("after a renewal past expiry: got %+v, want the error form saying the keys expired", d)
	}
}

func TestExtendedAndIdentity(t *testing.T) {
	f := newFixture(t)
	static := &config.Role{Static: &config.StaticSource{AccessKeyID: "AKIAEXAMPLE", SecretAccessKey: "s", AccountID: "123456789012"}}
	ident := &config.Role{Static: &config.StaticSource{AccessKeyID: "AKIAIDENTITY", SecretAccessKey: "i"}}
	if err := f.m.Update(map[string]*config.Role{"app": static}); err != nil {
		t.Fatal(err)
	}
	if err := f.m.UpdateIdentity(ident); err != nil {
		t.Fatal(err)
	}
	sub := Subject{Role: "app", InstanceID: "i-0123456789abcdef0"}
	body, ok := f.m.ForExtended(sub)(metadata.Request{V2: true})
	if !ok {
		t.Fatal("extended: 404")
	}
	legacy, _ := f.m.For(sub)(metadata.Request{V2: true})
	want := strings.TrimSuffix(string(legacy), "\n}") + ",\n  \"AccountId\" : \"123456789012\"\n}"
	if string(body) != want {
		t.Errorf("extended document:\n%s\nwant\n%s", body, want)
	}
	if got := render(t, f.m.ForIdentity(sub), true); got.AccessKeyID != "AKIAIDENTITY" || got.Code != "Success" {
		t.Errorf("identity credentials: %+v", got)
	}
	if err := f.m.WaitFetched(t.Context()); err != nil {
		t.Fatal(err)
	}
	st := f.m.Status()
	if len(st) != 2 || st[0].Role != "app" || !st[1].Identity || st[1].Role != identityRole {
		t.Errorf("status: %+v", st)
	}
}

func TestRotationOutageExpiryRecovery(t *testing.T) {
	f := newFixture(t)
	src := &fakeSource{now: f.clock.Now, life: time.Hour}
	f.m.install("app", src, true, true)
	fn := f.m.For(Subject{Role: "app", InstanceID: "i-0123456789abcdef0"})
	if got := render(t, fn, true); got.Code == "Success" {
		t.Fatalf("before WaitFetched: %+v, want the error form", got)
	}
	if err := f.m.WaitFetched(t.Context()); err != nil {
		t.Fatal(err)
	}
	first := render(t, fn, true)
	if diff := cmp.Diff(doc{Code: "Success", LastUpdated: ts(t0), Type: "AWS-HMAC", AccessKeyID: "ASIAFAKE0001",
		SecretAccessKey: "secret-0001", Token: "token-0001", Expiration: ts(t0.Add(time.Hour))}, first); diff != "" {
		t.Errorf("first set (-want +got):\n%s", diff)
	}

	// Not due before half the lifetime.
	f.clock.Add(29 * time.Minute)
	f.m.RefreshDue(t.Context())
	if n := src.calls.Load(); n != 1 {
		t.Fatalf("%d source calls at 29 minutes, want 1", n)
	}
	f.clock.Add(time.Minute)
	f.m.RefreshDue(t.Context())
	second := render(t, fn, true)
	if second.AccessKeyID != "ASIAFAKE0002" || second.LastUpdated != ts(t0.Add(30*time.Minute)) ||
		second.Expiration != ts(t0.Add(90*time.Minute)) {
		t.Fatalf("at 30 minutes: %+v, want the second set", second)
	}

	// Outage: the last good set is served until it expires.
	src.fail(&fetchError{kind: kindUnavailable, detail: "sts AssumeRole: connection refused"})
	f.clock.Add(30 * time.Minute) // t0+60m
	f.m.RefreshDue(t.Context())
	if got := render(t, fn, true); got.AccessKeyID != "ASIAFAKE0002" {
		t.Fatalf("during the outage: %+v, want the last good set", got)
	}
	st := f.m.Status()[0]
	if st.Serving != 1 || st.Failing != 1 || st.Failures != 1 || st.LastError != t0.Add(time.Hour) || st.LastErrorKind != "unavailable" {
		t.Errorf("status during the outage: %+v", st)
	}
	for range 20 { // retries back off, up to 5 minutes apart
		f.clock.Add(retryMax)
		f.m.RefreshDue(t.Context())
		if !f.clock.Now().Before(t0.Add(90 * time.Minute)) {
			break
		}
	}
	expired := render(t, fn, true)
	if expired.Code != codeUnavailable || expired.AccessKeyID != "" || !strings.Contains(expired.Message, "role app") ||
		expired.LastUpdated != ts(f.clock.Now()) {
		t.Errorf("after expiry: %+v, want the error form", expired)
	}
	if st := f.m.Status()[0]; st.Serving != 0 || st.Expired != 1 || st.Ready() {
		t.Errorf("status after expiry: %+v", st)
	}

	// Recovery.
	src.fail(nil)
	f.clock.Add(retryMax)
	f.m.RefreshDue(t.Context())
	if got := render(t, fn, true); got.Code != "Success" || got.LastUpdated != ts(f.clock.Now()) {
		t.Errorf("after recovery: %+v", got)
	}
	logs := f.logs.String()
	for _, want := range []string{"credential source failed: serving the last credentials", "credentials expired", "credential source recovered", "connection refused"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	for _, secret := range []string{"secret-000", "token-000"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs hold a secret %q:\n%s", secret, logs)
		}
	}
}

func TestDeniedAnswersEC2ErrorForm(t *testing.T) {
	f := newFixture(t)
	src := &fakeSource{now: f.clock.Now, life: time.Hour}
	src.fail(&fetchError{kind: kindDenied, detail: "sts AssumeRole: AccessDenied: not authorized"})
	f.m.install("app", src, true, true)
	fn := f.m.For(Subject{Role: "app", InstanceID: "i-0123456789abcdef0"})
	err := f.m.WaitFetched(t.Context())
	if err == nil || !strings.Contains(err.Error(), "role app: 1 of 1 credential sets have no credentials: sts AssumeRole: AccessDenied") {
		t.Errorf("WaitFetched: %v", err)
	}
	body, _ := fn(metadata.Request{V2: true})
	want := `{
  "Code" : "AssumeRoleUnauthorizedAccess",
  "Message" : "EC2 cannot assume the role app.  Please see documentation at http://docs.amazonwebservices.com/IAM/latest/UserGuide/RolesTroubleshooting.html.",
  "LastUpdated" : "2026-01-02T03:04:05Z"
}`
	if string(body) != want {
		t.Errorf("got\n%s\nwant\n%s", body, want)
	}
}

func TestSetsPerInstanceAndDelivery(t *testing.T) {
	for _, tc := range []struct {
		name                     string
		perInstance, perDelivery bool
		v1                       bool
		wantCalls                int64
		wantSameInstances        bool
		wantSameDeliveries       bool
	}{
		{"per instance, v1 and v2", true, true, true, 4, false, false},
		{"per instance, tokens required", true, true, false, 2, false, true},
		{"shared by instances", false, true, true, 2, true, false},
		{"one set", false, false, true, 1, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			src := &fakeSource{now: f.clock.Now, life: time.Hour}
			f.m.install("app", src, tc.perInstance, tc.perDelivery)
			a := f.m.For(Subject{Role: "app", InstanceID: "i-0000000000000000a", V1: tc.v1})
			b := f.m.For(Subject{Role: "app", InstanceID: "i-0000000000000000b", V1: tc.v1})
			if err := f.m.WaitFetched(t.Context()); err != nil {
				t.Fatal(err)
			}
			if n := src.calls.Load(); n != tc.wantCalls {
				t.Errorf("%d source calls, want %d", n, tc.wantCalls)
			}
			if same := render(t, a, true).AccessKeyID == render(t, b, true).AccessKeyID; same != tc.wantSameInstances {
				t.Errorf("instances share a set: %v, want %v", same, tc.wantSameInstances)
			}
			if same := render(t, a, true).AccessKeyID == render(t, a, false).AccessKeyID; same != tc.wantSameDeliveries {
				t.Errorf("IMDSv1 and IMDSv2 share a set: %v, want %v", same, tc.wantSameDeliveries)
			}
			for _, p := range src.seen {
				if tc.perInstance != (p.InstanceID != "") {
					t.Errorf("source asked for %+v", p)
				}
			}
		})
	}
}

func TestUpdateKeepsUnchangedRoles(t *testing.T) {
	f := newFixture(t)
	roles := func(key string) map[string]*config.Role {
		return map[string]*config.Role{
			"keep":   {Static: &config.StaticSource{AccessKeyID: "AKIAKEEP", SecretAccessKey: "s"}},
			"change": {Static: &config.StaticSource{AccessKeyID: key, SecretAccessKey: "s"}},
		}
	}
	build := func() (keep, change metadata.DynamicFunc) {
		return f.m.For(Subject{Role: "keep", InstanceID: "i-0000000000000000a"}),
			f.m.For(Subject{Role: "change", InstanceID: "i-0000000000000000b"})
	}
	if err := f.m.Update(roles("AKIAOLD")); err != nil {
		t.Fatal(err)
	}
	keep1, change1 := build()
	f.clock.Add(time.Minute)
	if err := f.m.Update(roles("AKIANEW")); err != nil {
		t.Fatal(err)
	}
	// Until the instance is built again, it serves what it had.
	if got := render(t, change1, true); got.AccessKeyID != "AKIAOLD" {
		t.Errorf("changed role before rebuild: %+v", got)
	}
	keep2, change2 := build()
	if a, b := render(t, keep1, true), render(t, keep2, true); a != b {
		t.Errorf("unchanged role renewed on update: %+v then %+v", a, b)
	}
	if got := render(t, change2, true); got.AccessKeyID != "AKIANEW" || got.LastUpdated != ts(t0.Add(time.Minute)) {
		t.Errorf("changed role: %+v", got)
	}

	// A source that cannot be built keeps the previous one.
	bad := roles("AKIANEW")
	bad["change"] = &config.Role{Process: &config.ProcessSource{Command: []string{"/nonexistent/broker"}}}
	err := f.m.Update(bad)
	if err == nil || !strings.Contains(err.Error(), "role change") || !strings.Contains(err.Error(), "previous source stays") {
		t.Errorf("Update with a bad source: %v", err)
	}
	if _, change3 := build(); render(t, change3, true).AccessKeyID != "AKIANEW" {
		t.Error("bad update replaced the role's source")
	}

	if err := f.m.Update(map[string]*config.Role{}); err != nil {
		t.Fatal(err)
	}
	if st := f.m.Status(); len(st) != 0 {
		t.Errorf("status after removing every role: %+v", st)
	}
	if fn := f.m.For(Subject{Role: "keep", InstanceID: "i-0000000000000000a"}); fn != nil {
		t.Error("For of a removed role is not nil")
	}
}

func TestRegistrations(t *testing.T) {
	f := newFixture(t)
	app := &fakeSource{now: f.clock.Now, life: time.Hour}
	shared := &fakeSource{now: f.clock.Now, life: time.Hour}
	f.m.install("app", app, true, false)
	f.m.install("shared", shared, false, false)
	sets := func() map[string]int {
		out := map[string]int{}
		for _, st := range f.m.Status() {
			out[st.Role] = st.Sets
		}
		return out
	}
	f.m.For(Subject{Role: "app", InstanceID: "i-0000000000000000a"})
	f.m.ForExtended(Subject{Role: "app", InstanceID: "i-0000000000000000a"})
	f.m.For(Subject{Role: "app", InstanceID: "i-0000000000000000b"})
	f.m.For(Subject{Role: "shared", InstanceID: "i-0000000000000000c"})
	f.m.For(Subject{Role: "shared", InstanceID: "i-0000000000000000d"})
	if got, want := sets(), map[string]int{"app": 2, "shared": 1}; !cmp.Equal(got, want) {
		t.Errorf("sets %v, want %v", got, want)
	}
	// Instance a changes role: its app set goes.
	f.m.For(Subject{Role: "shared", InstanceID: "i-0000000000000000a"})
	// One of the shared set's users goes: the set stays.
	f.m.Forget("i-0000000000000000c")
	if got, want := sets(), map[string]int{"app": 1, "shared": 1}; !cmp.Equal(got, want) {
		t.Errorf("sets %v, want %v", got, want)
	}
	for _, id := range []string{"i-0000000000000000a", "i-0000000000000000b", "i-0000000000000000d"} {
		f.m.Forget(id)
	}
	if got, want := sets(), map[string]int{"app": 0, "shared": 0}; !cmp.Equal(got, want) {
		t.Errorf("sets %v, want %v", got, want)
	}
	if err := f.m.WaitFetched(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := app.calls.Load() + shared.calls.Load(); n != 0 {
		t.Errorf("%d fetches of sets nobody uses", n)
	}
}

// TestRunIsolatesRoles runs the refresh loop in a bubble of fake time: a
// source that hangs delays no other role.
func TestRunIsolatesRoles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := NewManager(nil, nil)
		m.rand = func() float64 { return 0 }
		start := time.Now()
		fast := &fakeSource{now: time.Now, life: time.Hour}
		slow := &fakeSource{now: time.Now, life: time.Hour, block: true}
		m.install("fast", fast, false, false)
		m.install("slow", slow, false, false)
		fastDoc := m.For(Subject{Role: "fast", InstanceID: "i-0000000000000000a"})
		slowDoc := m.For(Subject{Role: "slow", InstanceID: "i-0000000000000000b"})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- m.Run(ctx) }()
		waitCtx, stop := context.WithTimeout(t.Context(), 5*time.Second)
		err := m.WaitFetched(waitCtx)
		stop()
		if err == nil || !strings.Contains(err.Error(), "role slow") || strings.Contains(err.Error(), "role fast") {
			t.Errorf("WaitFetched: %v, want the slow role only", err)
		}
		time.Sleep(3*time.Hour - time.Since(start))
		synctest.Wait()
		// Renewed every 30 minutes: at 0, 30m, ..., 3h.
		if n := fast.calls.Load(); n != 7 {
			t.Errorf("fast role: %d fetches in 3h, want 7", n)
		}
		if got := render(t, fastDoc, true); got.Code != "Success" || got.LastUpdated != ts(start.Add(3*time.Hour)) {
			t.Errorf("fast role: %+v", got)
		}
		if got := render(t, slowDoc, true); got.Code != codeUnavailable {
			t.Errorf("slow role: %+v", got)
		}
		st := m.Status()
		if st[1].Role != "slow" || st[1].Serving != 0 || st[1].Failures == 0 {
			t.Errorf("slow role status: %+v", st[1])
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func TestDocumentDoesNotAllocate(t *testing.T) {
	f := newFixture(t)
	src := &fakeSource{now: f.clock.Now, life: time.Hour}
	f.m.install("app", src, true, true)
	fn := f.m.For(Subject{Role: "app", InstanceID: "i-0123456789abcdef0", V1: true})
	if err := f.m.WaitFetched(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(1000, func() { fn(metadata.Request{V2: true}) }); n != 0 {
		t.Errorf("%v allocations per request, want 0", n)
	}
}

// BenchmarkDocument serves credentials under load: from memory, with no
// source call on the request path.
func BenchmarkDocument(b *testing.B) {
	m := NewManager(nil, nil)
	src := &fakeSource{now: time.Now, life: time.Hour}
	m.install("app", src, true, true)
	fn := m.For(Subject{Role: "app", InstanceID: "i-0123456789abcdef0", V1: true})
	if err := m.WaitFetched(b.Context()); err != nil {
		b.Fatal(err)
	}
	calls := src.calls.Load()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		v2 := false
		for pb.Next() {
			v2 = !v2
			if body, _ := fn(metadata.Request{V2: v2}); len(body) == 0 {
				b.Fatal("empty body")
			}
		}
	})
	if n := src.calls.Load(); n != calls {
		b.Errorf("%d source calls while serving", n-calls)
	}
}
