package migration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/imds/imds/internal/store"
)

// Prefix is where the records live in the store: one key per replica and
// instance, Prefix + replica + "/" + instance id.
const Prefix = "migration/"

// schemaVersion is the version of storedInstance; a reader skips records of
// a version it does not know.
const schemaVersion = 1

// storeTimeout bounds every store call.
const storeTimeout = 5 * time.Second

// storedInstance is one replica's records of one instance.
type storedInstance struct {
	Schema          int      `json:"schema"`
	Replica         string   `json:"replica"`
	InstanceID      string   `json:"instance-id"`
	Updated         int64    `json:"updated"`
	NoToken         uint64   `json:"no-token"`
	NoTokenRejected uint64   `json:"no-token-rejected"`
	Callers         []stored `json:"callers"`
}

func (r *Recorder) keyOf(instance string) string { return Prefix + r.replica + "/" + instance }

// Load restores this replica's records from the store, so that a restart
// keeps them. Call it before the data plane serves.
func (r *Recorder) Load(ctx context.Context) error {
	if r.st == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	items, _, err := r.st.List(ctx, Prefix+r.replica+"/")
	if err != nil {
		return fmt.Errorf("load migration records: %w", err)
	}
	since := r.now().Add(-r.cfg.Window).UnixNano()
	for _, it := range items {
		var si storedInstance
		if err := json.Unmarshal(it.Value, &si); err != nil || si.Schema != schemaVersion {
			r.log.Warn("skip unreadable migration record", "key", it.Key, "err", err)
			continue
		}
		in := r.inst(si.InstanceID)
		in.noToken.Store(si.NoToken)
		in.noTokenRejected.Store(si.NoTokenRejected)
		for _, s := range si.Callers {
			if s.Last < since {
				continue
			}
			k, rec := restore(in, s)
			if s.UserAgent == OverflowAgent && !k.addr.IsValid() {
				in.over.Store(rec)
				continue
			}
			in.agents[k.addr]++
			r.put(r.shardOf(&k), k, rec)
		}
	}
	return nil
}

// Run flushes the records to the store every FlushInterval until ctx ends,
// then once more (without a store, Flush only expires records).
// It also keeps the coarse clock that requests read.
func (r *Recorder) Run(ctx context.Context) error {
	r.coarse.Store(r.now().UnixNano())
	defer r.coarse.Store(0)
	tick := time.NewTicker(coarseTick)
	defer tick.Stop()
	flush := time.NewTicker(r.cfg.FlushInterval)
	defer flush.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
			defer cancel()
			r.Flush(fctx)
			return nil
		case <-tick.C:
			r.coarse.Store(r.now().UnixNano())
		case <-flush.C:
			r.Flush(ctx)
		}
	}
}

// Flush expires records unseen for the window and writes the records of at
// most FlushMax changed instances to the store. It returns how many
// instances it wrote; the others stay marked for the next flush.
func (r *Recorder) Flush(ctx context.Context) int {
	byInst := r.collect(true)
	if r.st == nil {
		return 0
	}
	var ids []string
	r.insts.Range(func(k, v any) bool {
		if v.(*inst).dirty.Load() {
			ids = append(ids, k.(string))
		}
		return len(ids) < r.cfg.FlushMax
	})
	written := 0
	for _, id := range ids {
		in := r.inst(id)
		in.dirty.Store(false)
		si := storedInstance{
			Schema: schemaVersion, Replica: r.replica, InstanceID: id, Updated: r.now().UnixNano(),
			NoToken: in.noToken.Load(), NoTokenRejected: in.noTokenRejected.Load(),
			Callers: byInst[id],
		}
		if si.Callers == nil {
			si.Callers = []stored{}
		}
		b, err := json.Marshal(si)
		if err == nil {
			c, cancel := context.WithTimeout(ctx, storeTimeout)
			_, err = r.st.Put(c, r.keyOf(id), b, store.Any)
			cancel()
		}
		if err != nil {
			in.dirty.Store(true)
			r.log.Warn("flush migration records", "instance", id, "err", err)
			return written
		}
		written++
	}
	return written
}

// collect returns this replica's records by instance. With expire, records
// unseen for the window are removed first.
func (r *Recorder) collect(expire bool) map[string][]stored {
	since := r.now().Add(-r.cfg.Window).UnixNano()
	out := map[string][]stored{}
	for i := range r.shards {
		sh := &r.shards[i]
		var old []key
		for k, rec := range *sh.m.Load() {
			if expire && rec.last.Load() < since {
				old = append(old, k)
				continue
			}
			out[k.instance] = append(out[k.instance], rec.stored())
		}
		if len(old) > 0 {
			r.remove(sh, old, since)
		}
	}
	r.insts.Range(func(k, v any) bool {
		in := v.(*inst)
		if o := in.over.Load(); o != nil {
			if expire && o.last.Load() < since {
				in.mu.Lock()
				in.over.Store(nil)
				in.mu.Unlock()
				in.dirty.Store(true)
			} else {
				out[in.id] = append(out[in.id], o.stored())
			}
		}
		return true
	})
	return out
}

// remove drops the records of keys that are still unseen since since (a
// request may have come in after they were picked).
func (r *Recorder) remove(sh *shard, keys []key, since int64) {
	sh.mu.Lock()
	m := maps.Clone(*sh.m.Load())
	var gone []key
	for _, k := range keys {
		if rec := m[k]; rec != nil && rec.last.Load() < since {
			delete(m, k)
			gone = append(gone, k)
		}
	}
	sh.m.Store(&m)
	sh.mu.Unlock()
	for _, k := range gone {
		in := r.inst(k.instance)
		in.mu.Lock()
		if in.agents[k.addr]--; in.agents[k.addr] <= 0 {
			delete(in.agents, k.addr)
		}
		in.mu.Unlock()
		in.dirty.Store(true)
	}
}

// InstanceInfo is what the view needs of an instance from the registry.
type InstanceInfo struct {
	ID         string
	HTTPTokens string
}

// ErrUnknownInstance: the view was asked for an instance the fleet does not
// have.
var ErrUnknownInstance = errors.New("migration: no such instance")

// View merges this replica's live records with those the other replicas
// flushed to the store, for the instances given (the fleet), or for the one
// named by only.
func (r *Recorder) View(ctx context.Context, fleet []InstanceInfo, only string) (View, error) {
	if only != "" {
		i := slices.IndexFunc(fleet, func(in InstanceInfo) bool { return in.ID == only })
		if i < 0 {
			return View{}, fmt.Errorf("instance %s: %w", only, ErrUnknownInstance)
		}
		fleet = fleet[i : i+1]
	}
	merged := map[string]map[[3]string]*stored{}
	add := func(id string, s stored) {
		m := merged[id]
		if m == nil {
			m = map[[3]string]*stored{}
			merged[id] = m
		}
		k := [3]string{s.Address, s.UserAgent, s.Process}
		if cur := m[k]; cur != nil {
			cur.merge(s)
		} else {
			m[k] = &s
		}
	}
	for id, recs := range r.collect(false) {
		for _, s := range recs {
			add(id, s)
		}
	}
	if r.st != nil {
		c, cancel := context.WithTimeout(ctx, storeTimeout)
		items, _, err := r.st.List(c, Prefix)
		cancel()
		if err != nil {
			return View{}, fmt.Errorf("read other replicas' records: %w", err)
		}
		own := Prefix + r.replica + "/"
		for _, it := range items {
			if strings.HasPrefix(it.Key, own) {
				continue
			}
			if only != "" && !strings.HasSuffix(it.Key, "/"+only) {
				continue
			}
			var si storedInstance
			if err := json.Unmarshal(it.Value, &si); err != nil || si.Schema != schemaVersion {
				continue
			}
			for _, s := range si.Callers {
				add(si.InstanceID, s)
			}
		}
	}
	now := r.now()
	since := now.Add(-r.cfg.Window).UnixNano()
	v := View{Window: r.cfg.Window.String(), Generated: now.UTC(), Instances: make([]Instance, 0, len(fleet))}
	for _, fi := range fleet {
		var recs []stored
		for _, s := range merged[fi.ID] {
			if s.Last >= since {
				recs = append(recs, *s)
			}
		}
		v.Instances = append(v.Instances, instanceView(fi.ID, fi.HTTPTokens, recs, now, r.cfg.Window))
	}
	slices.SortFunc(v.Instances, func(a, b Instance) int { return strings.Compare(a.InstanceID, b.InstanceID) })
	return v, nil
}
