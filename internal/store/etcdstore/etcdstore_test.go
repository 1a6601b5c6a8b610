package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/imds/imds/internal/store"
	"github.com/imds/imds/internal/store/etcdstore/etcdtest"
	"github.com/imds/imds/internal/store/storetest"
)

func open(t *testing.T, o Options) *Store {
	t.Helper()
	s, err := Open(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestContract(t *testing.T) {
	srv := etcdtest.Start(t)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, Options{
			Endpoints: []string{srv.ClientURL},
			Prefix:    fmt.Sprintf("/imds-test/%d/", n.Add(1)),
		})
	})
}

func TestPrefixesAreSeparate(t *testing.T) {
	srv := etcdtest.Start(t)
	a := open(t, Options{Endpoints: []string{srv.ClientURL}, Prefix: "/a/"})
	b := open(t, Options{Endpoints: []string{srv.ClientURL}, Prefix: "/b/"})
	if _, err := a.Put(t.Context(), "k", []byte("a"), store.Absent); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(t.Context(), "k"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get under another prefix: %v, want ErrNotFound", err)
	}
	// The raw key is the prefix and the key.
	resp, err := a.cli.Get(t.Context(), "/a/k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "a" {
		t.Errorf("raw get /a/k = %v, %v; want the value a", resp, err)
	}
}

func TestWatchCompactedCloses(t *testing.T) {
	srv := etcdtest.Start(t)
	s := open(t, Options{Endpoints: []string{srv.ClientURL}})
	first, err := s.Put(t.Context(), "k", []byte("1"), store.Any)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(t.Context(), "k", []byte("2"), store.Any); err != nil {
		t.Fatal(err)
	}
	last, err := s.Put(t.Context(), "k", []byte("3"), store.Any)
	if err != nil {
		t.Fatal(err)
	}
	// Revisions before last are gone; the watch would start at first+1.
	if _, err := s.cli.Compact(t.Context(), last, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	select {
	case ev, ok := <-s.Watch(ctx, "", first):
		if ok {
			t.Fatalf("watch from a compacted revision sent %+v; want it closed", ev)
		}
	case <-ctx.Done():
		t.Fatal("watch from a compacted revision neither closed nor sent")
	}
}

func TestCloseEndsWatches(t *testing.T) {
	srv := etcdtest.Start(t)
	s, err := Open(t.Context(), Options{Endpoints: []string{srv.ClientURL}})
	if err != nil {
		t.Fatal(err)
	}
	w := s.Watch(t.Context(), "", 0)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case _, ok := <-w:
		if ok {
			t.Fatal("watch sent an event after Close; want it closed")
		}
	case <-time.After(10 * time.Second): // a bound on a hang, not a timing assertion
		t.Fatal("watch still open 10s after Close")
	}
}

func TestOpenUnreachable(t *testing.T) {
	// A port that was free a moment ago: nothing answers there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	start := time.Now()
	_, err = Open(t.Context(), Options{Endpoints: []string{"http://" + addr}, DialTimeout: 500 * time.Millisecond})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Open with no server: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second { // a bound on a hang, not a timing assertion
		t.Errorf("Open with no server took %v; dial timeout 500ms", d)
	}
	if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("error %q does not name the endpoint %s and say why", err, addr)
	}
}

func TestTLS(t *testing.T) {
	certs := etcdtest.NewCerts(t)
	srv := etcdtest.StartTLS(t, certs)
	tlsOpts := TLSOptions{
		CAFile:     certs.CAFile,
		CertFile:   certs.ClientCertFile,
		KeyFile:    certs.ClientKeyFile,
		ServerName: etcdtest.ServerName,
	}
	s := open(t, Options{Endpoints: []string{srv.ClientURL}, TLS: tlsOpts})
	rev, err := s.Put(t.Context(), "k", []byte("v"), store.Absent)
	if err != nil {
		t.Fatal(err)
	}
	if it, err := s.Get(t.Context(), "k"); err != nil || it.Revision != rev || string(it.Value) != "v" {
		t.Errorf("Get over TLS = %+v, %v", it, err)
	}

	// The certificate names 127.0.0.1 too, so the URL's host verifies.
	noName := tlsOpts
	noName.ServerName = ""
	open(t, Options{Endpoints: []string{srv.ClientURL}, TLS: noName})

	// Open fails, and says why in the words of a plain TLS dial.
	for _, tc := range []struct {
		name string
		o    TLSOptions
		want string
	}{
		{"no client certificate", TLSOptions{CAFile: certs.CAFile}, "tls: "},
		{"unknown CA", TLSOptions{CertFile: certs.ClientCertFile, KeyFile: certs.ClientKeyFile}, "unknown authority"},
		{"wrong server name", TLSOptions{CAFile: certs.CAFile, CertFile: certs.ClientCertFile, KeyFile: certs.ClientKeyFile,
			ServerName: "etcd.invalid"}, "not etcd.invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(t.Context(), Options{Endpoints: []string{srv.ClientURL}, TLS: tc.o, DialTimeout: time.Second})
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open: %v, want ErrUnavailable and %q", err, tc.want)
			}
		})
	}
}

func TestAuth(t *testing.T) {
	srv := etcdtest.Start(t)
	root := open(t, Options{Endpoints: []string{srv.ClientURL}})
	ctx := t.Context()
	for _, step := range []func() error{
		func() error { _, err := root.cli.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := root.cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := root.cli.UserAdd(ctx, "imds", "secret"); return err },
		func() error { _, err := root.cli.RoleAdd(ctx, "imds"); return err },
		func() error {
			_, err := root.cli.RoleGrantPermission(ctx, "imds", "/imds/", clientv3.GetPrefixRangeEnd("/imds/"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := root.cli.UserGrantRole(ctx, "imds", "imds"); return err },
		func() error { _, err := root.cli.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}

	s := open(t, Options{Endpoints: []string{srv.ClientURL}, Username: "imds", Password: "secret"})
	if _, err := s.Put(ctx, "k", []byte("v"), store.Absent); err != nil {
		t.Fatalf("Put as imds: %v", err)
	}
	if _, err := s.Get(ctx, "k"); err != nil {
		t.Fatalf("Get as imds: %v", err)
	}

	for name, o := range map[string]Options{
		"wrong password":     {Username: "imds", Password: "wrong"},
		"outside its prefix": {Username: "imds", Password: "secret", Prefix: "/other/"},
		"no credentials":     {},
	} {
		t.Run(name, func(t *testing.T) {
			o.Endpoints = []string{srv.ClientURL}
			o.DialTimeout = 2 * time.Second
			s, err := Open(t.Context(), o)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if errors.Is(err, store.ErrUnavailable) {
				t.Errorf("Open: %v; a refusal is not unavailability", err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	ok := Options{Endpoints: []string{"http://127.0.0.1:2379"}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate(%+v): %v", ok, err)
	}
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no endpoints", Options{}, "endpoints"},
		{"no scheme", Options{Endpoints: []string{"127.0.0.1:2379"}}, `"127.0.0.1:2379"`},
		{"path", Options{Endpoints: []string{"http://h:1/x"}}, `"http://h:1/x"`},
		{"mixed schemes", Options{Endpoints: []string{"http://a:1", "https://b:1"}}, "mix"},
		{"TLS on http", Options{Endpoints: []string{"http://a:1"}, TLS: TLSOptions{CAFile: "ca.pem"}}, "http"},
		{"cert without key", Options{Endpoints: []string{"https://a:1"}, TLS: TLSOptions{CertFile: "c.pem"}}, "key file"},
		{"password alone", Options{Endpoints: []string{"http://a:1"}, Password: "p"}, "username"},
		{"negative timeout", Options{Endpoints: []string{"http://a:1"}, RequestTimeout: -time.Second}, "request timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want an error naming %s", err, tc.want)
			}
			if _, err := Open(t.Context(), tc.o); err == nil {
				t.Error("Open accepted options that Validate refuses")
			}
		})
	}
}

func TestBadRevisionCondition(t *testing.T) {
	srv := etcdtest.Start(t)
	s := open(t, Options{Endpoints: []string{srv.ClientURL}})
	if _, err := s.Put(t.Context(), "k", nil, -5); err == nil || errors.Is(err, store.ErrConflict) {
		t.Errorf("Put with revision -5: %v, want an error that is not a conflict", err)
	}
	if err := s.Delete(t.Context(), "k", -5); err == nil || errors.Is(err, store.ErrConflict) {
		t.Errorf("Delete with revision -5: %v, want an error that is not a conflict", err)
	}
}

func TestMapErr(t *testing.T) {
	for _, tc := range []struct {
		err         error
		unavailable bool
	}{
		{context.DeadlineExceeded, true},
		{fmt.Errorf("get: %w", context.DeadlineExceeded), true},
		{context.Canceled, false},
		{rpctypes.ErrGRPCNoLeader, true},
		{rpctypes.ErrNoLeader, true},
		{rpctypes.ErrTimeout, true},
		{status.Error(codes.Unavailable, "connection refused"), true},
		{status.Error(codes.DeadlineExceeded, "deadline"), true},
		{status.Error(codes.Unknown, context.DeadlineExceeded.Error()), true},
		{status.Error(codes.Unknown, "raft: something else"), false},
		{rpctypes.ErrPermissionDenied, false},
		{rpctypes.ErrAuthFailed, false},
	} {
		if got := errors.Is(mapErr(tc.err), store.ErrUnavailable); got != tc.unavailable {
			t.Errorf("mapErr(%v) unavailable = %v, want %v", tc.err, got, tc.unavailable)
		}
		if !errors.Is(mapErr(tc.err), tc.err) {
			t.Errorf("mapErr(%v) lost the error", tc.err)
		}
	}
}
