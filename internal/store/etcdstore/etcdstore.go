// Package etcdstore is the store for fleets and high availability: a
// store.Store over an etcd v3 cluster, which several imds replicas share and
// follow through watches.
//
// Every key lives under a prefix (DefaultPrefix unless set), so one cluster
// can hold other data or several fleets. Item revisions are etcd's
// ModRevision, so they increase across the whole cluster. Conditional writes
// are transactions on ModRevision (CreateRevision 0 for store.Absent); reads
// are linearizable. Every call runs under the caller's context and at most
// Options.RequestTimeout; a cluster that does not answer in time, or that has
// no leader, gives errors wrapping store.ErrUnavailable.
package etcdstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/imds/imds/internal/store"
)

// Defaults for the zero values of Options.
const (
	DefaultPrefix         = "/imds/"
	DefaultDialTimeout    = 5 * time.Second
	DefaultRequestTimeout = 5 * time.Second
)

// maxReconnectDelay bounds the wait between attempts to reach a member.
const maxReconnectDelay = 2 * time.Second

// Options says how to reach the cluster.
type Options struct {
	// Endpoints are the members' client URLs (http://host:port or
	// https://host:port). Any one that answers will do.
	Endpoints []string
	// Prefix is put before every key. Default DefaultPrefix.
	Prefix string
	// TLS, when any field is set or an endpoint is https, connects over TLS.
	TLS TLSOptions
	// Username and Password authenticate to a cluster with auth enabled.
	Username string
	Password string
	// DialTimeout bounds Open's first request, and fetching an auth token.
	// Default DefaultDialTimeout.
	DialTimeout time.Duration
	// RequestTimeout bounds every call, on top of the caller's context.
	// Default DefaultRequestTimeout.
	RequestTimeout time.Duration
}

// TLSOptions are the PEM files for TLS to the cluster.
type TLSOptions struct {
	// CAFile verifies the members' certificates; empty uses the system roots.
	CAFile string
	// CertFile and KeyFile are a client certificate, for clusters that
	// require one.
	CertFile string
	KeyFile  string
	// ServerName is the name to verify in the members' certificates, when it
	// is not the host in the endpoint URL.
	ServerName string
}

func (o TLSOptions) enabled() bool { return o != TLSOptions{} }

// Validate checks the options without connecting; errors name the option.
func (o Options) Validate() error {
	if len(o.Endpoints) == 0 {
		return errors.New("etcd endpoints: none given")
	}
	var schemes []string
	for _, ep := range o.Endpoints {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return fmt.Errorf("etcd endpoint %q: want http://host:port or https://host:port", ep)
		}
		schemes = append(schemes, u.Scheme)
	}
	for _, s := range schemes {
		if s != schemes[0] {
			return fmt.Errorf("etcd endpoints %q: mix http and https", o.Endpoints)
		}
	}
	if schemes[0] == "http" && o.TLS.enabled() {
		return fmt.Errorf("etcd endpoints %q: TLS options are set but the endpoints are http", o.Endpoints)
	}
	if (o.TLS.CertFile == "") != (o.TLS.KeyFile == "") {
		return fmt.Errorf("etcd TLS cert file %q and key file %q: give both or neither", o.TLS.CertFile, o.TLS.KeyFile)
	}
	if o.Password != "" && o.Username == "" {
		return errors.New("etcd password: given without a username")
	}
	if o.DialTimeout < 0 {
		return fmt.Errorf("etcd dial timeout %v: must not be negative", o.DialTimeout)
	}
	if o.RequestTimeout < 0 {
		return fmt.Errorf("etcd request timeout %v: must not be negative", o.RequestTimeout)
	}
	return nil
}

func (o Options) tlsConfig() (*tls.Config, error) {
	if !o.TLS.enabled() && !strings.HasPrefix(o.Endpoints[0], "https://") {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.TLS.CAFile != "" {
		pem, err := os.ReadFile(o.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("etcd TLS CA file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd TLS CA file %s: no PEM certificate in it", o.TLS.CAFile)
		}
	}
	if o.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.TLS.CertFile, o.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("etcd TLS cert file %s, key file %s: %w", o.TLS.CertFile, o.TLS.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// Store is a store.Store in an etcd cluster.
type Store struct {
	cli     *clientv3.Client
	prefix  string
	timeout time.Duration
}

var _ store.Store = (*Store)(nil)

// Open connects to the cluster and makes one linearizable read, so that a
// cluster that cannot serve (no endpoint answers, no quorum, bad credentials)
// fails here. It fails with an error wrapping store.ErrUnavailable when the
// cluster does not answer within ctx and Options.DialTimeout.
func Open(ctx context.Context, o Options) (*Store, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	tc, err := o.tlsConfig()
	if err != nil {
		return nil, err
	}
	dialOpts := []grpc.DialOption{
		// Reconnect to a member that comes back within seconds, not after
		// gRPC's default backoff of up to two minutes.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: maxReconnectDelay},
			MinConnectTimeout: o.DialTimeout,
		}),
	}
	if o.TLS.ServerName != "" {
		// gRPC verifies the name it dials, not tls.Config.ServerName.
		dialOpts = append(dialOpts, grpc.WithAuthority(o.TLS.ServerName))
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   o.Endpoints,
		TLS:         tc,
		Username:    o.Username,
		Password:    o.Password,
		DialTimeout: o.DialTimeout,
		// Find connections that died without a reset; etcd refuses pings
		// more often than every 5s.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: o.RequestTimeout,
		// The store's errors carry what matters; the client's own retry
		// chatter would be a second log.
		Logger:      zap.NewNop(),
		DialOptions: dialOpts,
	})
	if err != nil {
		return nil, fmt.Errorf("open etcd store %s: %w", strings.Join(o.Endpoints, ","), err)
	}
	s := &Store{cli: cli, prefix: o.Prefix, timeout: o.RequestTimeout}
	pctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
	defer cancel()
	if _, err := cli.Get(pctx, o.Prefix, clientv3.WithCountOnly()); err != nil {
		cli.Close()
		err = mapErr(err)
		if errors.Is(err, store.ErrUnavailable) && !errors.Is(ctx.Err(), context.Canceled) {
			// gRPC only says that time ran out; say why if a plain dial
			// can, even when the caller's deadline is what ran out.
			err = fmt.Errorf("%w%s", err, diagnose(context.WithoutCancel(ctx), o.Endpoints, tc, o.TLS.ServerName))
		}
		return nil, fmt.Errorf("open etcd store %s: %w", strings.Join(o.Endpoints, ","), err)
	}
	return s, nil
}

// diagnose dials each endpoint, with TLS if tc is set, and returns what went
// wrong with them, as "; endpoint: error" for each.
func diagnose(ctx context.Context, endpoints []string, tc *tls.Config, serverName string) string {
	var b strings.Builder
	for _, ep := range endpoints {
		u, err := url.Parse(ep)
		if err != nil {
			continue
		}
		if err := probe(ctx, u.Host, tc, serverName); err != nil {
			fmt.Fprintf(&b, "; %s: %v", ep, err)
		}
	}
	return b.String()
}

// probe dials host within a second, and makes a TLS handshake if tc is set.
func probe(ctx context.Context, host string, tc *tls.Config, serverName string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil || tc == nil {
		if conn != nil {
			conn.Close()
		}
		return err
	}
	defer conn.Close()
	cfg := tc.Clone()
	cfg.NextProtos = []string{"h2"}
	if cfg.ServerName = serverName; serverName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(host)
	}
	tconn := tls.Client(conn, cfg)
	if err := tconn.HandshakeContext(ctx); err != nil {
		return err
	}
	// With TLS 1.3 a refused client certificate shows only in the first read.
	// A healthy server sends its HTTP/2 settings, or nothing.
	tconn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := tconn.Read(make([]byte, 1)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	return nil
}

// Close ends every watch and closes the connections.
func (s *Store) Close() error {
	if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("close etcd store: %w", err)
	}
	return nil
}

// call bounds one request by the request timeout.
func (s *Store) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// mapErr makes an error of a cluster that did not answer in time, or cannot
// serve for now, wrap store.ErrUnavailable.
func mapErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	code := status.Code(err)
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		code = ee.Code()
	}
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded:
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	case codes.Unknown:
		// etcd 3.4 sends the expiry of the request's deadline, which it
		// got from the client, as Unknown; it can arrive before the
		// client's own deadline fires.
		if st, _ := status.FromError(err); st.Message() == context.DeadlineExceeded.Error() {
			return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
		}
	}
	return err
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (store.Item, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.prefix+key)
	if err != nil {
		return store.Item{}, fmt.Errorf("etcd get %s: %w", key, mapErr(err))
	}
	if len(resp.Kvs) == 0 {
		return store.Item{}, fmt.Errorf("etcd get %s: %w", key, store.ErrNotFound)
	}
	kv := resp.Kvs[0]
	return store.Item{Key: key, Value: kv.Value, Revision: kv.ModRevision}, nil
}

// List implements store.Store. The revision is that of the read, so a Watch
// from it misses nothing.
func (s *Store) List(ctx context.Context, prefix string) ([]store.Item, int64, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.prefix+prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("etcd list %s: %w", prefix, mapErr(err))
	}
	items := make([]store.Item, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		items = append(items, store.Item{
			Key:      strings.TrimPrefix(string(kv.Key), s.prefix),
			Value:    kv.Value,
			Revision: kv.ModRevision,
		})
	}
	return items, resp.Header.Revision, nil
}

// condition is the comparison that makes a write with ifRevision go ahead.
func (s *Store) condition(key string, ifRevision int64) (clientv3.Cmp, error) {
	switch {
	case ifRevision == store.Absent:
		return clientv3.Compare(clientv3.CreateRevision(s.prefix+key), "=", 0), nil
	case ifRevision > 0:
		return clientv3.Compare(clientv3.ModRevision(s.prefix+key), "=", ifRevision), nil
	}
	return clientv3.Cmp{}, fmt.Errorf("revision condition %d: want store.Any, store.Absent or a revision", ifRevision)
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, key string, value []byte, ifRevision int64) (int64, error) {
	if key == "" {
		return 0, errors.New("etcd put: empty key")
	}
	ctx, cancel := s.call(ctx)
	defer cancel()
	if ifRevision == store.Any {
		resp, err := s.cli.Put(ctx, s.prefix+key, string(value))
		if err != nil {
			return 0, fmt.Errorf("etcd put %s: %w", key, mapErr(err))
		}
		return resp.Header.Revision, nil
	}
	cmp, err := s.condition(key, ifRevision)
	if err != nil {
		return 0, fmt.Errorf("etcd put %s: %w", key, err)
	}
	resp, err := s.cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(s.prefix+key, string(value))).Commit()
	if err != nil {
		return 0, fmt.Errorf("etcd put %s: %w", key, mapErr(err))
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("etcd put %s at revision %d: %w", key, ifRevision, store.ErrConflict)
	}
	return resp.Header.Revision, nil
}

// Delete implements store.Store. A missing key is ErrNotFound whatever the
// condition, as in the embedded store.
func (s *Store) Delete(ctx context.Context, key string, ifRevision int64) error {
	if key == "" {
		return errors.New("etcd delete: empty key")
	}
	ctx, cancel := s.call(ctx)
	defer cancel()
	if ifRevision == store.Any {
		resp, err := s.cli.Delete(ctx, s.prefix+key)
		if err != nil {
			return fmt.Errorf("etcd delete %s: %w", key, mapErr(err))
		}
		if resp.Deleted == 0 {
			return fmt.Errorf("etcd delete %s: %w", key, store.ErrNotFound)
		}
		return nil
	}
	cmp, err := s.condition(key, ifRevision)
	if err != nil {
		return fmt.Errorf("etcd delete %s: %w", key, err)
	}
	// For Absent the condition holds only when there is nothing to delete.
	resp, err := s.cli.Txn(ctx).If(cmp).
		Then(clientv3.OpDelete(s.prefix + key)).
		Else(clientv3.OpGet(s.prefix+key, clientv3.WithCountOnly())).
		Commit()
	if err != nil {
		return fmt.Errorf("etcd delete %s: %w", key, mapErr(err))
	}
	switch {
	case resp.Succeeded && resp.Responses[0].GetResponseDeleteRange().GetDeleted() == 0,
		!resp.Succeeded && resp.Responses[0].GetResponseRange().GetCount() == 0:
		return fmt.Errorf("etcd delete %s: %w", key, store.ErrNotFound)
	case !resp.Succeeded:
		return fmt.Errorf("etcd delete %s at revision %d: %w", key, ifRevision, store.ErrConflict)
	}
	return nil
}

// Watch implements store.Store. The channel also closes when etcd cancels
// the watch: the revision was compacted, or the member lost its leader
// (the watch requires one, so that a partitioned member cannot hold it
// silently), or the store was closed.
func (s *Store) Watch(ctx context.Context, prefix string, afterRev int64) <-chan store.Event {
	out := make(chan store.Event)
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	wch := s.cli.Watch(wctx, s.prefix+prefix, clientv3.WithPrefix(), clientv3.WithRev(afterRev+1))
	go func() {
		defer close(out)
		defer cancel()
		for resp := range wch {
			if resp.Canceled || resp.Err() != nil {
				return
			}
			for _, ev := range resp.Events {
				e := store.Event{Item: store.Item{
					Key:      strings.TrimPrefix(string(ev.Kv.Key), s.prefix),
					Revision: ev.Kv.ModRevision,
				}}
				if ev.Type == clientv3.EventTypeDelete {
					e.Deleted = true
				} else {
					e.Value = ev.Kv.Value
				}
				select {
				case out <- e:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}
