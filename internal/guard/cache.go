package guard

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// maxCached bounds the fail-safe cache: paths come from callers, so a flood
// of distinct paths must not grow it without end.
const maxCached = 4096

// cache keeps the last good answer of each path, served when the upstream
// cannot be reached. A credentials document is kept only until the
// Expiration it states.
type cache struct {
	mu sync.Mutex
	m  map[string]cached
}

type cached struct {
	header  http.Header
	body    []byte
	expires time.Time // zero: never
}

func (c *cache) put(path string, a *answer, credentials bool) {
	var exp time.Time
	if credentials {
		var doc struct{ Expiration time.Time }
		if json.Unmarshal(a.body, &doc) != nil || doc.Expiration.IsZero() {
			return // an error form or a listing: nothing worth keeping
		}
		exp = doc.Expiration
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]cached{}
	}
	if _, ok := c.m[path]; !ok && len(c.m) >= maxCached {
		return
	}
	c.m[path] = cached{header: a.header, body: a.body, expires: exp}
}

func (c *cache) get(path string, now time.Time) (*answer, bool) {
	c.mu.Lock()
	e, ok := c.m[path]
	c.mu.Unlock()
	if !ok || (!e.expires.IsZero() && !now.Before(e.expires)) {
		return nil, false
	}
	return &answer{code: http.StatusOK, header: e.header, body: e.body}, true
}
