package fleet

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imds/imds/internal/adminclient"
	"github.com/imds/imds/internal/config"
)

// crashSpec is the i-th instance of the write stream: its own address and
// user data, so that a reader can tell a whole record from a torn one.
func crashSpec(i int) config.Instance {
	ud := fmt.Sprintf("#!/bin/sh\necho instance %d\n", i)
	return config.Instance{
		InstanceID:   fmt.Sprintf("i-0d%015x", i),
		Addresses:    []string{crashAddr(i)},
		InstanceType: "t3.micro",
		LocalIPv4:    fmt.Sprintf("10.1.%d.%d", i/250, 1+i%250),
		UserData:     &ud,
	}
}

func crashAddr(i int) string { return fmt.Sprintf("127.0.%d.%d", 1+i/250, 1+i%250) }

// specSubset is what a spec sent through the API must read back as.
func specSubset(s config.Instance) config.Instance {
	return config.Instance{InstanceID: s.InstanceID, Addresses: s.Addresses, InstanceType: s.InstanceType, LocalIPv4: s.LocalIPv4, UserData: s.UserData}
}

// TestCrashEmbeddedStore streams registrations through the admin API of a
// server on the embedded store and kills it with SIGKILL halfway through,
// three times over, restarting it on the same data dir each time: every
// acknowledged instance is there with its content, a write cut short is all
// there or absent, and the server starts cleanly and takes the rest.
func TestCrashEmbeddedStore(t *testing.T) {
	needLoopbackRange(t)
	const (
		crashes   = 3
		perStream = 200
		killAfter = 100 // acknowledged writes of a stream
	)
	dir := filepath.Join(t.TempDir(), "data")
	p := startIMDS(t, dir)
	ctx := t.Context()
	var acked, unsure []int
	for crash := range crashes {
		ids := make([]int, perStream)
		for i := range ids {
			ids[i] = crash*perStream + i
		}
		a, u := streamAndKill(t, p, ids, killAfter)
		acked, unsure = append(acked, a...), append(unsure, u...)
		t.Logf("crash %d: SIGKILL after %d acknowledged registrations; %d in flight: %v", crash, len(a), len(u), u)

		p = startIMDS(t, dir)
		eventually(t, 10*time.Second, func() string {
			if status, body, err := healthText(p.AdminURL, "/readyz"); err != nil || status != http.StatusOK {
				return fmt.Sprintf("GET /readyz after the restart: %d %q %v", status, body, err)
			}
			return ""
		})
		c := admin(t, p)
		for _, i := range acked {
			want := crashSpec(i)
			rec, err := c.Instance(ctx, want.InstanceID)
			if err != nil {
				t.Errorf("acknowledged %s after crash %d: %v", want.InstanceID, crash, err)
				continue
			}
			if diff := cmp.Diff(specSubset(want), specSubset(rec.Spec)); diff != "" {
				t.Errorf("acknowledged %s after crash %d (-want +got):\n%s", want.InstanceID, crash, diff)
			}
			if r := from(crashAddr(i)).get(p.URL(), "/latest/user-data"); r.Status != http.StatusOK || r.Body != *want.UserData {
				t.Errorf("user-data of acknowledged %s from %s after crash %d: %v, want 200 %q", want.InstanceID, crashAddr(i), crash, r, *want.UserData)
			}
		}
		for _, i := range u {
			want := crashSpec(i)
			rec, err := c.Instance(ctx, want.InstanceID)
			var ae *adminclient.Error
			switch {
			case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
			case err != nil:
				t.Errorf("%s, in flight at crash %d: %v", want.InstanceID, crash, err)
			default:
				if diff := cmp.Diff(specSubset(want), specSubset(rec.Spec)); diff != "" {
					t.Errorf("%s, in flight at crash %d, torn (-want +got):\n%s", want.InstanceID, crash, diff)
				}
			}
		}
	}

	// The restarted server takes every registration that was not
	// acknowledged, addresses claimed by writes the crashes cut short included.
	c := admin(t, p)
	total := crashes * perStream
	for i := range total {
		if slices.Contains(acked, i) {
			continue
		}
		spec := crashSpec(i)
		if _, _, err := c.PutInstance(ctx, spec, adminclient.Cond{}); err != nil {
			t.Errorf("PUT %s after the crashes: %v", spec.InstanceID, err)
		}
	}
	list, err := c.Instances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, in := range list {
		if strings.HasPrefix(in.InstanceID, "i-0d") {
			n++
		}
	}
	if n != total {
		t.Errorf("after the crashes and the rest of the writes: %d instances, want %d", n, total)
	}
	for line := range strings.SplitSeq(p.Log(), "\n") {
		if strings.Contains(line, "level=ERROR") || strings.Contains(line, "level=WARN") {
			t.Errorf("restarted server logged: %s", line)
		}
	}
	p.Stop(t)
	if code := p.ExitCode(time.Second); code != 0 {
		t.Errorf("restarted server exited %d after SIGTERM, want 0", code)
	}
}

// streamAndKill registers the instances ids through p's admin API from four
// writers at once, and kills p with SIGKILL once killAfter were
// acknowledged. It returns the acknowledged ids and those still in flight.
func streamAndKill(t *testing.T, p *proc, ids []int, killAfter int) (acked, inFlight []int) {
	t.Helper()
	c := admin(t, p)
	var (
		mu       sync.Mutex
		pending  = map[int]bool{}
		killOnce sync.Once
		killed   = make(chan struct{})
	)
	next := make(chan int)
	go func() {
		defer close(next)
		for _, i := range ids {
			select {
			case next <- i:
			case <-killed:
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := range next {
				mu.Lock()
				pending[i] = true
				mu.Unlock()
				ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
				_, created, err := c.PutInstance(ctx, crashSpec(i), adminclient.Cond{Create: true})
				cancel()
				var ue *adminclient.UnreachableError
				switch {
				case errors.As(err, &ue):
					return // p is gone; i stays pending
				case err != nil:
					t.Errorf("PUT %s: %v", crashSpec(i).InstanceID, err)
				case !created:
					t.Errorf("PUT %s: 200, want 201 Created", crashSpec(i).InstanceID)
				}
				mu.Lock()
				delete(pending, i)
				if err == nil {
					acked = append(acked, i)
				}
				n := len(acked)
				mu.Unlock()
				if n >= killAfter {
					killOnce.Do(func() {
						p.Kill()
						close(killed)
					})
				}
			}
		})
	}
	wg.Wait()
	if p.Running() {
		t.Fatalf("the stream ended with %d acknowledged writes and the server still running", len(acked))
	}
	for i := range pending {
		inFlight = append(inFlight, i)
	}
	slices.Sort(acked)
	slices.Sort(inFlight)
	return acked, inFlight
}
