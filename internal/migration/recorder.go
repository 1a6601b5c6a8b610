// Package migration answers the questions of a move from IMDSv1 to IMDSv2:
// which callers of each instance still use IMDSv1, whether that is legacy
// code or a fallback after a token answer that never arrived, and what would
// break if the instance required tokens.
//
// The data plane reports every request to a Recorder (dataplane.Observer).
// Records are kept per instance, per caller address and per User-Agent, with
// counters updated atomically: the request path takes no lock once a caller
// is known, and a new caller locks only its own instance. Records are capped
// per instance and per caller (the overflow is counted, never dropped from
// the verdict), flushed to the store at a bounded rate so that every replica
// sees the whole fleet, and expire after the window.
package migration

import (
	"hash/maphash"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imds/imds/internal/dataplane"
	"github.com/imds/imds/internal/identity"
	"github.com/imds/imds/internal/store"
)

// Defaults of Config.
const (
	DefaultWindow          = 24 * time.Hour
	DefaultFallbackWindow  = 10 * time.Second
	DefaultCallersPerInst  = 64
	DefaultAgentsPerCaller = 8
	DefaultFlushInterval   = 10 * time.Second
	DefaultFlushMax        = 500
	// MaxUserAgent is the length a User-Agent is cut to before it is kept.
	MaxUserAgent = 256
	// MaxProcess bounds a process description as kept.
	MaxProcess = 512
)

// Config sets the recorder's window and bounds.
type Config struct {
	// Window: a caller whose last IMDSv1 request is older than this no longer
	// counts against readiness, and records unseen for this long expire.
	Window time.Duration
	// FallbackWindow: an IMDSv1 request this soon after a token request whose
	// token was never used is a fallback.
	FallbackWindow time.Duration
	// CallersPerInstance and AgentsPerCaller cap the records; requests past
	// the caps are counted in the instance's overflow record.
	CallersPerInstance int
	AgentsPerCaller    int
	// FlushInterval and FlushMax bound the writes to the store: at most
	// FlushMax instances' records every FlushInterval.
	FlushInterval time.Duration
	FlushMax      int
}

func (c *Config) defaults() {
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	if c.FallbackWindow <= 0 {
		c.FallbackWindow = DefaultFallbackWindow
	}
	if c.CallersPerInstance <= 0 {
		c.CallersPerInstance = DefaultCallersPerInst
	}
	if c.AgentsPerCaller <= 0 {
		c.AgentsPerCaller = DefaultAgentsPerCaller
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.FlushMax <= 0 {
		c.FlushMax = DefaultFlushMax
	}
}

// Request kinds counted per record.
const (
	kindTokenPut = iota
	kindV2
	kindV1
	kindV1Rejected
	kindInvalidToken
	kindFallback
	numKinds
)

// Path groups of IMDSv1 reads, as bits.
const (
	pathCredentials uint32 = 1 << iota
	pathUserData
	pathIdentity
	pathOther
)

var pathNames = []struct {
	bit  uint32
	name string
}{{pathCredentials, "credentials"}, {pathUserData, "user-data"}, {pathIdentity, "identity"}, {pathOther, "other"}}

func pathGroup(p string) uint32 {
	switch {
	case strings.Contains(p, "/meta-data/iam/security-credentials"), strings.Contains(p, "/meta-data/identity-credentials/"):
		return pathCredentials
	case strings.Contains(p, "/user-data"):
		return pathUserData
	case strings.Contains(p, "/dynamic/instance-identity"):
		return pathIdentity
	}
	return pathOther
}

// isCredentials reports whether p is a role's credentials document.
func isCredentials(p string) (role string, ok bool) {
	const leaf = "/meta-data/iam/security-credentials/"
	i := strings.Index(p, leaf)
	if i < 0 {
		return "", false
	}
	role = p[i+len(leaf):]
	return role, role != "" && !strings.Contains(role, "/")
}

type key struct {
	instance string
	addr     netip.Addr
	// ua is the User-Agent, followed by a NUL and the calling process where
	// it is known (imds guard), so that two processes behind one address
	// are two callers; a request without a process pays nothing for it.
	ua string
}

// agentKey is key.ua: ua, and the process when there is one.
func agentKey(ua, process string) string {
	if process == "" {
		return ua
	}
	return ua + "\x00" + process
}

// record is one caller (address and User-Agent) of one instance. Every field
// after the constant ones is updated atomically.
type record struct {
	in    *inst // its instance
	addr  netip.Addr
	via   identity.Via
	ua    string
	first int64 // unix nanoseconds

	last         atomic.Int64
	n            [numKinds]atomic.Uint64
	pathsV1      atomic.Uint32
	lastV1       atomic.Int64
	lastRejected atomic.Int64
	lastFallback atomic.Int64
	lastPut      atomic.Int64
	putStatus    atomic.Int32 // the last token request's answer
	putForwarded atomic.Bool  // ... and whether it carried X-Forwarded-For
	tokenUsed    atomic.Bool  // a valid token was used since the last token request
	hopLimit     atomic.Int32 // the instance's hop limit at the last fallback

	// process is constant like the fields above; kept here so that the
	// counters keep their place in memory.
	process string
}

// observe counts one request.
func (rec *record) observe(o *dataplane.Outcome, now int64, fallbackWindow int64) {
	rec.last.Store(now)
	switch {
	case o.Method == "PUT":
		rec.n[kindTokenPut].Add(1)
		rec.lastPut.Store(now)
		rec.putStatus.Store(int32(o.Status))
		rec.putForwarded.Store(o.Forwarded)
		rec.tokenUsed.Store(false)
	case o.Token && o.TokenValid:
		rec.n[kindV2].Add(1)
		rec.tokenUsed.Store(true)
	case o.Token && o.Status != 200:
		rec.n[kindInvalidToken].Add(1)
	case o.Status == 401 && o.TokensRequired:
		rec.n[kindV1Rejected].Add(1)
		rec.lastRejected.Store(now)
	default:
		// IMDSv1: no token, or an invalid one served as IMDSv1.
		if o.Token {
			rec.n[kindInvalidToken].Add(1)
		}
		rec.n[kindV1].Add(1)
		rec.lastV1.Store(now)
		if g := pathGroup(o.Path); rec.pathsV1.Load()&g == 0 {
			rec.pathsV1.Or(g)
		}
		if put := rec.lastPut.Load(); put != 0 && now-put <= fallbackWindow && !rec.tokenUsed.Load() {
			rec.n[kindFallback].Add(1)
			rec.lastFallback.Store(now)
			rec.hopLimit.Store(int32(o.HopLimit))
		}
	}
}

// inst is what the recorder keeps of one instance beyond its records.
type inst struct {
	id string

	mu     sync.Mutex         // guards agents and overflow's creation
	agents map[netip.Addr]int // records per address
	over   atomic.Pointer[record]

	// noToken and noTokenRejected are the instance's totals since start
	// (EC2's MetadataNoToken and MetadataNoTokenRejected); they do not expire.
	noToken, noTokenRejected atomic.Uint64
	dirty                    atomic.Bool
}

const numShards = 256

// shard is a copy-on-write map: lookups load a pointer and read without a
// lock; inserts and removals copy the map under the shard's mutex.
type shard struct {
	mu sync.Mutex
	m  atomic.Pointer[map[key]*record]
}

// Recorder keeps the records. It implements dataplane.Observer.
type Recorder struct {
	cfg     Config
	now     func() time.Time
	log     *slog.Logger
	seed    maphash.Seed
	shards  [numShards]shard
	insts   sync.Map // instance id -> *inst
	audit   *AuditLog
	coarse  atomic.Int64 // unix nanoseconds, kept by Run; 0 when not running
	st      store.Store
	replica string
	dropped atomic.Uint64 // requests past the caps, for metrics
}

// Options configure a Recorder.
type Options struct {
	Config
	// Store keeps the records of every replica; nil keeps them in memory
	// only.
	Store store.Store
	// Replica names this server's records in the store; it must differ
	// between replicas that share a store and stay the same across restarts.
	Replica string
	// Audit, when set, is given a line per credential set handed out and per
	// IMDSv1 request refused.
	Audit  *AuditLog
	Logger *slog.Logger
	Now    func() time.Time
}

// NewRecorder returns an empty recorder; Load fills it from the store.
func NewRecorder(o Options) *Recorder {
	cfg := o.Config
	cfg.defaults()
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Replica == "" {
		o.Replica = "local"
	}
	r := &Recorder{cfg: cfg, now: o.Now, log: o.Logger, seed: maphash.MakeSeed(), audit: o.Audit, st: o.Store, replica: o.Replica}
	for i := range r.shards {
		m := map[key]*record{}
		r.shards[i].m.Store(&m)
	}
	return r
}

// shardOf picks a key's shard from its instance and address only: the
// User-Agent is long, and the callers of one address are few (capped).
func (r *Recorder) shardOf(k *key) *shard {
	h := maphash.String(r.seed, k.instance)
	b := k.addr.As16()
	for _, c := range b {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return &r.shards[h%numShards]
}

// coarseTick is how often Run refreshes the clock that requests read: the
// records' times need no finer grain, and reading the system clock on every
// request costs more than the rest of recording.
const coarseTick = 100 * time.Millisecond

// nowNano is the recorder's time: the coarse clock while Run keeps it,
// else the clock itself.
func (r *Recorder) nowNano() int64 {
	if t := r.coarse.Load(); t != 0 {
		return t
	}
	return r.now().UnixNano()
}

// Observe counts one request. It takes no lock unless the caller is new.
func (r *Recorder) Observe(o dataplane.Outcome) {
	ua := o.UserAgent
	if len(ua) > MaxUserAgent {
		ua = ua[:MaxUserAgent]
	}
	k := key{o.Instance, o.Source, ua}
	if o.Process != "" {
		proc := o.Process
		if len(proc) > MaxProcess {
			proc = proc[:MaxProcess]
		}
		k.ua = agentKey(ua, proc)
	}
	sh := r.shardOf(&k)
	rec := (*sh.m.Load())[k]
	if rec == nil {
		rec = r.insert(sh, k, r.inst(o.Instance), o.Via)
	}
	in := rec.in
	now := r.nowNano()
	rec.observe(&o, now, int64(r.cfg.FallbackWindow))
	if !o.Token && o.Method != "PUT" {
		switch {
		case o.Status == 401 && o.TokensRequired:
			in.noTokenRejected.Add(1)
		case o.Status == 200:
			in.noToken.Add(1)
		}
	}
	if !in.dirty.Load() {
		in.dirty.Store(true)
	}
	if r.audit != nil {
		r.auditRequest(&o, ua)
	}
}

func (r *Recorder) inst(id string) *inst {
	if v, ok := r.insts.Load(id); ok {
		return v.(*inst)
	}
	v, _ := r.insts.LoadOrStore(id, &inst{id: id, agents: map[netip.Addr]int{}})
	return v.(*inst)
}

// insert adds the record of a new caller, or returns the instance's overflow
// record when a cap is reached.
func (r *Recorder) insert(sh *shard, k key, in *inst, via identity.Via) *record {
	in.mu.Lock()
	defer in.mu.Unlock()
	if rec := (*sh.m.Load())[k]; rec != nil {
		return rec // another request added it meanwhile
	}
	n, known := in.agents[k.addr]
	if (!known && len(in.agents) >= r.cfg.CallersPerInstance) || n >= r.cfg.AgentsPerCaller {
		r.dropped.Add(1)
		return r.overflow(in)
	}
	ua, proc, _ := strings.Cut(k.ua, "\x00")
	rec := &record{in: in, addr: k.addr, via: via, ua: ua, process: proc, first: r.now().UnixNano()}
	// Seen now, before any request can find it: a flush that runs before
	// the first count must not take it for a record unseen for the window.
	rec.last.Store(rec.first)
	in.agents[k.addr] = n + 1
	r.put(sh, k, rec)
	return rec
}

// overflow returns the instance's overflow record; in.mu is held.
func (r *Recorder) overflow(in *inst) *record {
	if o := in.over.Load(); o != nil {
		return o
	}
	o := &record{in: in, ua: OverflowAgent, first: r.now().UnixNano()}
	o.last.Store(o.first)
	in.over.Store(o)
	return o
}

// OverflowAgent is the User-Agent shown for the requests of callers past the
// caps.
const OverflowAgent = "(callers past the cap)"

func (r *Recorder) put(sh *shard, k key, rec *record) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	old := *sh.m.Load()
	m := make(map[key]*record, len(old)+1)
	for kk, v := range old {
		m[kk] = v
	}
	m[k] = rec
	sh.m.Store(&m)
}
