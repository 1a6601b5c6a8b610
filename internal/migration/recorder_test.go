package migration

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imds/imds/internal/dataplane"
	"github.com/imds/imds/internal/identity"
	"github.com/imds/imds/internal/store/boltstore"
)

// clock is a driven clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const inst1 = "i-0123456789abcdef0"

var addr1 = netip.MustParseAddr("10.0.0.5")

// Requests as the data plane reports them.
func put(addr netip.Addr, ua string, status int) dataplane.Outcome {
	return dataplane.Outcome{Instance: inst1, Via: identity.ViaAddress, Source: addr, UserAgent: ua, Method: "PUT", Path: "/latest/api/token", Status: status, HopLimit: 1}
}

func getV2(addr netip.Addr, ua, path string) dataplane.Outcome {
	return dataplane.Outcome{Instance: inst1, Via: identity.ViaAddress, Source: addr, UserAgent: ua, Method: "GET", Path: path, Token: true, TokenValid: true, Status: 200, HopLimit: 1}
}

func getV1(addr netip.Addr, ua, path string) dataplane.Outcome {
	return dataplane.Outcome{Instance: inst1, Via: identity.ViaAddress, Source: addr, UserAgent: ua, Method: "GET", Path: path, Status: 200, HopLimit: 1}
}

func refusedV1(addr netip.Addr, ua string) dataplane.Outcome {
	return dataplane.Outcome{Instance: inst1, Via: identity.ViaAddress, Source: addr, UserAgent: ua, Method: "GET", Path: "/latest/meta-data/", Status: 401, TokensRequired: true, HopLimit: 1}
}

func fleetOf(ids ...string) []InstanceInfo {
	out := make([]InstanceInfo, len(ids))
	for i, id := range ids {
		out[i] = InstanceInfo{ID: id, HTTPTokens: "optional"}
	}
	return out
}

func viewOne(t *testing.T, r *Recorder) Instance {
	t.Helper()
	v, err := r.View(t.Context(), fleetOf(inst1), inst1)
	if err != nil {
		t.Fatal(err)
	}
	return v.Instances[0]
}

func classes(in Instance) map[string]Class {
	out := map[string]Class{}
	for _, c := range in.Callers {
		out[c.Address+" "+c.UserAgent] = c.Class
	}
	return out
}

func TestClasses(t *testing.T) {
	const (
		goSDK = "aws-sdk-go-v2/1.30.0 os/linux lang/go#1.26"
		boto  = "Botocore/1.31.0 Python/3.11"
		curl  = "curl/8.1.2"
	)
	addr2 := netip.MustParseAddr("10.0.0.6")
	tests := []struct {
		name  string
		steps func(r *Recorder, c *clock)
		want  map[string]Class
		ready bool
	}{
		{
			name: "token for every request",
			steps: func(r *Recorder, c *clock) {
				r.Observe(put(addr1, goSDK, 200))
				r.Observe(getV2(addr1, goSDK, "/latest/meta-data/instance-id"))
			},
			want:  map[string]Class{"10.0.0.5 " + goSDK: ClassV2},
			ready: true,
		},
		{
			name: "IMDSv1 without asking for a token",
			steps: func(r *Recorder, c *clock) {
				r.Observe(getV1(addr1, curl, "/latest/meta-data/instance-id"))
			},
			want: map[string]Class{"10.0.0.5 " + curl: ClassV1},
		},
		{
			name: "token answer lost, then IMDSv1 within the window",
			steps: func(r *Recorder, c *clock) {
				r.Observe(put(addr1, boto, 200))
				c.advance(time.Second)
				r.Observe(getV1(addr1, boto, "/latest/meta-data/iam/security-credentials/app"))
			},
			want: map[string]Class{"10.0.0.5 " + boto: ClassV1Fallback},
		},
		{
			name: "IMDSv1 long after a token request is not a fallback",
			steps: func(r *Recorder, c *clock) {
				r.Observe(put(addr1, boto, 200))
				c.advance(time.Minute)
				r.Observe(getV1(addr1, boto, "/latest/meta-data/instance-id"))
			},
			want: map[string]Class{"10.0.0.5 " + boto: ClassV1},
		},
		{
			name: "IMDSv1 after the token was used is not a fallback",
			steps: func(r *Recorder, c *clock) {
				r.Observe(put(addr1, boto, 200))
				r.Observe(getV2(addr1, boto, "/latest/meta-data/instance-id"))
				r.Observe(getV1(addr1, boto, "/latest/meta-data/instance-id"))
			},
			want: map[string]Class{"10.0.0.5 " + boto: ClassV1},
		},
		{
			name: "IMDSv1 refused under required",
			steps: func(r *Recorder, c *clock) {
				r.Observe(refusedV1(addr1, curl))
				r.Observe(put(addr2, goSDK, 200))
				r.Observe(getV2(addr2, goSDK, "/latest/meta-data/instance-id"))
			},
			want: map[string]Class{"10.0.0.5 " + curl: ClassV1Rejected, "10.0.0.6 " + goSDK: ClassV2},
		},
		{
			name: "IMDSv1 older than the window no longer counts",
			steps: func(r *Recorder, c *clock) {
				r.Observe(getV1(addr1, goSDK, "/latest/meta-data/instance-id"))
				c.advance(25 * time.Hour)
				r.Observe(put(addr1, goSDK, 200))
				r.Observe(getV2(addr1, goSDK, "/latest/meta-data/instance-id"))
			},
			want:  map[string]Class{"10.0.0.5 " + goSDK: ClassV2},
			ready: true,
		},
		{
			name:  "no traffic",
			steps: func(r *Recorder, c *clock) {},
			want:  map[string]Class{},
			ready: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			r := NewRecorder(Options{Now: c.now})
			tc.steps(r, c)
			in := viewOne(t, r)
			if diff := cmp.Diff(tc.want, classes(in)); diff != "" {
				t.Errorf("classes (-want +got):\n%s", diff)
			}
			if in.Ready != tc.ready {
				t.Errorf("ready = %v (%s), want %v", in.Ready, in.Verdict, tc.ready)
			}
		})
	}
}

func TestFallbackNamesCause(t *testing.T) {
	c := newClock()
	r := NewRecorder(Options{Now: c.now})
	o := put(addr1, "Botocore/1.31.0", 200)
	o.HopLimit = 1
	r.Observe(o)
	v1 := getV1(addr1, "Botocore/1.31.0", "/latest/meta-data/")
	v1.HopLimit = 1
	r.Observe(v1)
	in := viewOne(t, r)
	got := in.Callers[0].Evidence
	want := "the hop limit (http-put-response-hop-limit 1) is one short"
	if !strings.Contains(got, want) {
		t.Errorf("evidence %q does not name the hop limit (%q)", got, want)
	}

	// A proxy: the token request carried X-Forwarded-For and got 403.
	fwd := put(addr1, "curl-proxy/1", 403)
	fwd.Forwarded = true
	r.Observe(fwd)
	r.Observe(getV1(addr1, "curl-proxy/1", "/latest/meta-data/"))
	for _, cl := range viewOne(t, r).Callers {
		if cl.UserAgent == "curl-proxy/1" && (cl.Class != ClassV1Fallback || !strings.Contains(cl.Evidence, "X-Forwarded-For")) {
			t.Errorf("proxied caller: class %s, evidence %q; want v1-fallback naming X-Forwarded-For", cl.Class, cl.Evidence)
		}
	}
}

func TestCountsAndPaths(t *testing.T) {
	c := newClock()
	r := NewRecorder(Options{Now: c.now})
	ua := "curl/8.1.2"
	r.Observe(getV1(addr1, ua, "/latest/meta-data/iam/security-credentials/app"))
	r.Observe(getV1(addr1, ua, "/latest/user-data"))
	r.Observe(getV1(addr1, ua, "/latest/user-data"))
	r.Observe(getV1(addr1, ua, "/latest/dynamic/instance-identity/document"))
	bad := getV2(addr1, ua, "/latest/meta-data/")
	bad.TokenValid, bad.Status = false, 401
	r.Observe(bad)
	in := viewOne(t, r)
	got := in.Callers[0]
	if diff := cmp.Diff(Counts{V1: 4, InvalidToken: 1}, got.Requests); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"credentials", "user-data", "identity"}, got.PathsV1); diff != "" {
		t.Errorf("paths (-want +got):\n%s", diff)
	}
	if got.SDK != SDKCurl || got.SDKVersion != "8.1.2" {
		t.Errorf("sdk %s %s, want curl 8.1.2", got.SDK, got.SDKVersion)
	}
}

// A flood of forged User-Agents and addresses stays within the caps, and
// its IMDSv1 use still counts against readiness.
func TestCaps(t *testing.T) {
	c := newClock()
	r := NewRecorder(Options{Config: Config{CallersPerInstance: 4, AgentsPerCaller: 2}, Now: c.now})
	for i := range 1000 {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i / 250), byte(i % 250)})
		r.Observe(getV1(a, fmt.Sprintf("forged/%d", i), "/latest/meta-data/"))
		r.Observe(getV1(addr1, fmt.Sprintf("forged/%d", i), "/latest/meta-data/"))
	}
	in := viewOne(t, r)
	if n := len(in.Callers); n > 4*2+1 {
		t.Fatalf("%d callers kept; want at most %d (4 addresses of 2 agents, and the overflow)", n, 4*2+1)
	}
	var over *Caller
	for i := range in.Callers {
		if in.Callers[i].UserAgent == OverflowAgent {
			over = &in.Callers[i]
		}
	}
	if over == nil || over.Class != ClassV1 || over.Requests.V1 == 0 {
		t.Fatalf("overflow record %+v: want the requests past the caps counted as IMDSv1", over)
	}
	var total uint64
	for _, cl := range in.Callers {
		total += cl.Requests.V1
	}
	if total != 2000 {
		t.Errorf("%d IMDSv1 requests counted in all, want 2000 (none lost)", total)
	}
	if in.Ready {
		t.Error("ready despite IMDSv1 callers past the caps")
	}
}

func TestConcurrentObserve(t *testing.T) {
	r := NewRecorder(Options{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				a := netip.AddrFrom4([4]byte{10, 0, 0, byte(i % 8)})
				r.Observe(getV1(a, fmt.Sprintf("ua/%d", g%3), "/latest/meta-data/"))
				r.Observe(put(a, "ua/x", 200))
			}
		})
	}
	go func() {
		for range 20 {
			r.View(context.Background(), fleetOf(inst1), "")
			r.Flush(context.Background())
		}
	}()
	wg.Wait()
	in := viewOne(t, r)
	var v1, puts uint64
	for _, c := range in.Callers {
		v1 += c.Requests.V1
		puts += c.Requests.TokenPuts
	}
	if v1 != 8*500 || puts != 8*500 {
		t.Errorf("counted %d IMDSv1 and %d token requests, want %d each", v1, puts, 8*500)
	}
}

// Records survive a restart, other replicas' records are merged into the
// view, and records unseen for the window expire from memory and store.
func TestStore(t *testing.T) {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "imds.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c := newClock()
	a := NewRecorder(Options{Store: st, Replica: "a", Now: c.now})
	b := NewRecorder(Options{Store: st, Replica: "b", Now: c.now})
	a.Observe(getV1(addr1, "curl/8", "/latest/meta-data/"))
	b.Observe(getV1(addr1, "curl/8", "/latest/user-data"))
	b.Observe(put(addr1, "aws-sdk-go-v2/1.30.0", 200))
	b.Observe(getV2(addr1, "aws-sdk-go-v2/1.30.0", "/latest/meta-data/"))
	if n := b.Flush(t.Context()); n != 1 {
		t.Fatalf("b flushed %d instances, want 1", n)
	}
	// a sees b's records merged with its own.
	in := viewOne(t, a)
	want := map[string]Class{"10.0.0.5 curl/8": ClassV1, "10.0.0.5 aws-sdk-go-v2/1.30.0": ClassV2}
	if diff := cmp.Diff(want, classes(in)); diff != "" {
		t.Errorf("a's view (-want +got):\n%s", diff)
	}
	for _, cl := range in.Callers {
		if cl.UserAgent == "curl/8" && (cl.Requests.V1 != 2 || len(cl.PathsV1) != 2) {
			t.Errorf("merged curl caller: %d IMDSv1 requests on %v, want 2 on two paths", cl.Requests.V1, cl.PathsV1)
		}
	}

	// A restart of a finds its own records.
	if a.Flush(t.Context()) != 1 {
		t.Fatal("a flushed nothing")
	}
	a2 := NewRecorder(Options{Store: st, Replica: "a", Now: c.now})
	if err := a2.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	a2.Observe(getV1(addr1, "curl/8", "/latest/meta-data/"))
	a2.Flush(t.Context())
	for _, cl := range viewOne(t, a2).Callers {
		if cl.UserAgent == "curl/8" && cl.Requests.V1 != 3 {
			t.Errorf("after a restart: %d IMDSv1 requests, want 3 (2 before, 1 after)", cl.Requests.V1)
		}
	}

	// After the window, everything expires.
	c.advance(25 * time.Hour)
	a2.Flush(t.Context())
	b.Flush(t.Context())
	if in := viewOne(t, a2); len(in.Callers) != 0 || !in.Ready {
		t.Errorf("after the window: %d callers, ready %v; want none, ready", len(in.Callers), in.Ready)
	}
}

func TestViewUnknownInstance(t *testing.T) {
	r := NewRecorder(Options{})
	if _, err := r.View(t.Context(), fleetOf(inst1), "i-0000000000000dead"); err == nil {
		t.Fatal("no error for an unknown instance")
	}
}

// Two processes behind one address (the guard's host callers) are two
// callers, each with its own class.
func TestProcessesAreCallers(t *testing.T) {
	c := newClock()
	r := NewRecorder(Options{Now: c.now})
	ua := "curl/8.1.2"
	a := getV1(addr1, ua, "/latest/meta-data/")
	a.Process = "pid 10 legacy.sh"
	b := getV2(addr1, ua, "/latest/meta-data/")
	b.Process = "pid 11 modern.sh"
	r.Observe(a)
	r.Observe(b)
	in := viewOne(t, r)
	if len(in.Callers) != 2 {
		t.Fatalf("callers %+v, want 2", in.Callers)
	}
	got := map[string]Class{}
	for _, c := range in.Callers {
		got[c.Process] = c.Class
	}
	want := map[string]Class{"pid 10 legacy.sh": ClassV1, "pid 11 modern.sh": ClassV2}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("classes by process (-want +got):\n%s", diff)
	}
}
