package nth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// agent polls IMDS by the rules of aws-node-termination-handler's IMDS
// monitors (pkg/ec2metadata and pkg/monitor/{spotitn,scheduledevent,
// asglifecycle,rebalancerecommendation}). Its Go module cannot be fetched
// here, so these are its rules, written from reading its source, not its
// code:
//
//   - IMDSv2: PUT /latest/api/token with a TTL of 3600 s; the token is
//     reused for every request, and fetched again when the TTL the last
//     answer reported is 15 s or less, or after a 401 (one retry).
//   - spot/instance-action, events/recommendations/rebalance and
//     autoscaling/target-lifecycle-state: 404 means "no event"; another
//     status outside 2xx is an error.
//   - events/maintenance/scheduled: any status outside 2xx is an error; the
//     body is a JSON array whose NotBefore and NotAfter are in the layout
//     "2 Jan 2006 15:04:05 GMT"; an event whose State is canceled or
//     completed is a cancellation, else an interruption.
//   - the spot time is RFC 3339; a Spot event's id is a hash of the action
//     and the time, so the same notice seen twice is one event.
//   - a target lifecycle state of Terminated is an Auto Scaling termination.
//   - events are kept by EventId: one seen again is not added twice.
//
// It also reads events/maintenance/history with the scheduled events'
// rules, to see canceled and completed events where EC2 moves them.
type agent struct {
	base string
	hc   *http.Client

	mu      sync.Mutex
	token   string
	ttl     int
	fetches int                     // tokens fetched
	expired int                     // 401 answers
	events  map[string]interruption // by EventId
}

// interruption is what the monitors put on their channels.
type interruption struct {
	EventID, Kind string
	Cancel        bool
	Start, End    time.Time
}

// newAgent returns an agent that calls IMDS at base from the address src.
func newAgent(base string, src net.IP) *agent {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: src}}
	return &agent{base: base, events: map[string]interruption{}, hc: &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true},
	}}
}

func (a *agent) fetchToken(ctx context.Context) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, a.base+"/latest/api/token", nil)
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "3600")
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("token: status %d", resp.StatusCode)
	}
	ttl, err := strconv.Atoi(resp.Header.Get("X-aws-ec2-metadata-token-ttl-seconds"))
	if err != nil {
		return fmt.Errorf("token: no TTL header")
	}
	a.token, a.ttl = string(body), ttl
	a.fetches++
	return nil
}

// get is ec2metadata.Service.Request: the token rules, then the answer.
func (a *agent) get(ctx context.Context, path string) (int, []byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for range 2 {
		if a.token == "" || a.ttl <= 15 {
			if err := a.fetchToken(ctx); err != nil {
				a.token, a.ttl = "", -1 // IMDSv1 from here
			}
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.base+path, nil)
		if a.token != "" {
			req.Header.Set("X-aws-ec2-metadata-token", a.token)
		}
		resp, err := a.hc.Do(req)
		if err != nil {
			return 0, nil, err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized {
			a.token, a.ttl = "", 0
			a.expired++
			continue
		}
		if ttl, err := strconv.Atoi(resp.Header.Get("X-aws-ec2-metadata-token-ttl-seconds")); err == nil {
			a.ttl = ttl
		}
		return resp.StatusCode, body, nil
	}
	return http.StatusUnauthorized, nil, nil
}

// optional is a 404-as-no-event read.
func (a *agent) optional(ctx context.Context, path string) ([]byte, error) {
	code, body, err := a.get(ctx, path)
	switch {
	case err != nil:
		return nil, err
	case code == http.StatusNotFound:
		return nil, nil
	case code/100 != 2:
		return nil, fmt.Errorf("%s: status %d", path, code)
	}
	return body, nil
}

const maintenanceDate = "2 Jan 2006 15:04:05 GMT"

// poll runs every monitor once and keeps what they report. It returns the
// first error, as a monitor's Monitor() does.
func (a *agent) poll(ctx context.Context) error {
	if body, err := a.optional(ctx, "/latest/meta-data/spot/instance-action"); err != nil {
		return err
	} else if body != nil {
		var ia struct{ Action, Time string }
		if err := json.Unmarshal(body, &ia); err != nil {
			return fmt.Errorf("spot: %w", err)
		}
		t, err := time.Parse(time.RFC3339, ia.Time)
		if err != nil {
			return fmt.Errorf("spot time: %w", err)
		}
		a.add(interruption{EventID: fmt.Sprintf("spot-itn-%x", sha256.Sum256([]byte(ia.Action+"|"+ia.Time))), Kind: "SPOT_ITN", Start: t})
	}
	if body, err := a.optional(ctx, "/latest/meta-data/events/recommendations/rebalance"); err != nil {
		return err
	} else if body != nil {
		var rr struct{ NoticeTime string }
		if err := json.Unmarshal(body, &rr); err != nil {
			return fmt.Errorf("rebalance: %w", err)
		}
		t, err := time.Parse(time.RFC3339, rr.NoticeTime)
		if err != nil {
			return fmt.Errorf("rebalance time: %w", err)
		}
		a.add(interruption{EventID: fmt.Sprintf("rebalance-recommendation-%x", sha256.Sum256([]byte(rr.NoticeTime))), Kind: "REBALANCE_RECOMMENDATION", Start: t})
	}
	if body, err := a.optional(ctx, "/latest/meta-data/autoscaling/target-lifecycle-state"); err != nil {
		return err
	} else if string(body) == "Terminated" {
		a.add(interruption{EventID: "target-lifecycle-state-terminated", Kind: "ASG_LIFECYCLE"})
	}
	for _, path := range []string{"/latest/meta-data/events/maintenance/scheduled", "/latest/meta-data/events/maintenance/history"} {
		code, body, err := a.get(ctx, path)
		if err != nil {
			return err
		}
		if code/100 != 2 {
			return fmt.Errorf("%s: status %d", path, code)
		}
		var evs []struct{ NotBefore, Code, Description, EventId, NotAfter, State string }
		if err := json.Unmarshal(body, &evs); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		for _, e := range evs {
			nb, err := time.Parse(maintenanceDate, e.NotBefore)
			if err != nil {
				return fmt.Errorf("%s: NotBefore %q: %w", path, e.NotBefore, err)
			}
			na := nb
			if e.NotAfter != "" {
				if t, err := time.Parse(maintenanceDate, e.NotAfter); err == nil {
					na = t
				}
			}
			cancel := e.State == "canceled" || e.State == "completed"
			if cancel {
				// A cancellation is kept apart from the interruption it ends.
				a.add(interruption{EventID: e.EventId + "/" + e.State, Kind: "SCHEDULED_EVENT", Cancel: true, Start: nb, End: na})
				continue
			}
			a.add(interruption{EventID: e.EventId, Kind: "SCHEDULED_EVENT", Start: nb, End: na})
		}
	}
	return nil
}

func (a *agent) add(e interruption) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, seen := a.events[e.EventID]; !seen {
		a.events[e.EventID] = e
	}
}

// seen returns the events of a kind it has recorded.
func (a *agent) seen(kind string) []interruption {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []interruption
	for _, e := range a.events {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// tokenCounts are how many tokens the agent fetched and how many 401s it got.
func (a *agent) tokenCounts() (fetches, expired int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.fetches, a.expired
}
