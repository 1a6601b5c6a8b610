package fleet

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/imds/imds/internal/adminapi"
	"github.com/imds/imds/internal/adminclient"
	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/store/etcdstore/etcdtest"
)

var (
	propagationRounds = flag.Int("propagation-rounds", 50, "changes timed from one replica's API to another replica's data plane")
	outageBound       = flag.Duration("outage-bound", 30*time.Second, "how long replicas may take to report that etcd is gone")
)

// The instances every replica is configured with.
const (
	idX   = "i-0a1b2c3d4e5f60001" // calls from 127.0.0.1
	idY   = "i-0a1b2c3d4e5f60002" // calls from 127.0.0.3
	addrX = "127.0.0.1"
	addrY = "127.0.0.3"
)

const replicaConfig = `instances:
  - instance-id: ` + idX + `
    addresses: [` + addrX + `]
  - instance-id: ` + idY + `
    addresses: [` + addrY + `]
`

// replicaSet is one etcd server and the imds replicas that share it.
type replicaSet struct {
	etcd     *etcdtest.Member
	replicas []*proc
}

// startReplicas starts an etcd server, then n replicas one after the other,
// each with its own data dir and the same configuration file.
func startReplicas(t *testing.T, n int) *replicaSet {
	t.Helper()
	needLoopbackRange(t)
	rs := &replicaSet{etcd: etcdtest.Start(t)}
	cfg := writeFile(t, "fleet.yaml", replicaConfig)
	for i := range n {
		dir := filepath.Join(t.TempDir(), "replica"+strconv.Itoa(i))
		rs.replicas = append(rs.replicas, startIMDS(t, dir,
			"--store", "etcd", "--etcd-endpoints", rs.etcd.ClientURL, "--config", cfg))
	}
	return rs
}

// ec2Client drives p's EC2 Query API with the AWS SDK, signing with the
// operator key in p's data dir.
func ec2Client(t *testing.T, p *proc) *ec2.Client {
	t.Helper()
	creds, err := adminapi.ReadCredentialsFile(filepath.Join(p.DataDir, "credentials"))
	if err != nil {
		t.Fatal(err)
	}
	return ec2.New(ec2.Options{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider(creds.AccessKeyID, creds.SecretAccessKey, ""),
		BaseEndpoint: aws.String(p.AdminURL),
		HTTPClient:   &http.Client{Timeout: 20 * time.Second},
	})
}

func setHTTPTokens(t *testing.T, c *ec2.Client, id string, v types.HttpTokensState) {
	t.Helper()
	out, err := c.ModifyInstanceMetadataOptions(t.Context(), &ec2.ModifyInstanceMetadataOptionsInput{
		InstanceId: aws.String(id),
		HttpTokens: v,
	})
	if err != nil {
		t.Fatalf("ModifyInstanceMetadataOptions %s http-tokens %s: %v", id, v, err)
	}
	if got := out.InstanceMetadataOptions.HttpTokens; got != v {
		t.Fatalf("ModifyInstanceMetadataOptions %s answered http-tokens %s, want %s", id, got, v)
	}
}

// TestReplicasOnEtcd runs three replicas on one etcd server: they share the
// operator key and the token key ring, a change made through one replica is
// enforced by the others, and when etcd goes away they keep serving their
// last snapshot, say so, and catch up when it is back.
func TestReplicasOnEtcd(t *testing.T) {
	rs := startReplicas(t, 3)
	a, b, c := rs.replicas[0], rs.replicas[1], rs.replicas[2]
	x, y := from(addrX), from(addrY)

	t.Run("operator key shared", func(t *testing.T) {
		first, err := adminapi.ReadCredentialsFile(filepath.Join(a.DataDir, "credentials"))
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range rs.replicas[1:] {
			got, err := adminapi.ReadCredentialsFile(filepath.Join(p.DataDir, "credentials"))
			if err != nil {
				t.Fatalf("replica %d: %v", i+1, err)
			}
			if got != first {
				t.Errorf("replica %d wrote operator key %s, the first replica %s", i+1, got.AccessKeyID, first.AccessKeyID)
			}
		}
		for i, p := range rs.replicas {
			if fi, err := os.Stat(filepath.Join(p.DataDir, "credentials")); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("replica %d credentials file: %v, %v; want mode 0600", i, fi.Mode(), err)
			}
		}
		// Each replica's file signs requests to every replica.
		for i, signer := range rs.replicas {
			for j, target := range rs.replicas {
				cl, err := adminclient.New(adminclient.Options{URL: target.AdminURL, Credentials: mustCreds(t, signer)})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := cl.Instance(t.Context(), idX); err != nil {
					t.Errorf("GET /v1/instances/%s on replica %d signed with replica %d's file: %v", idX, j, i, err)
				}
			}
		}
	})

	t.Run("tokens shared", func(t *testing.T) {
		for i, issuer := range rs.replicas {
			tok := x.token(t, issuer.URL())
			for j, p := range rs.replicas {
				if r := x.instanceID(p.URL(), tok); r.Status != http.StatusOK || r.Body != idX {
					t.Errorf("token of %s issued by replica %d, used on replica %d: %v, want 200 %q", idX, i, j, r, idX)
				}
				// The same token is refused for another instance.
				if r := y.instanceID(p.URL(), tok); r.Status != http.StatusUnauthorized {
					t.Errorf("token of %s issued by replica %d, used by %s on replica %d: %v, want 401", idX, i, idY, j, r)
				}
			}
		}
	})

	t.Run("change enforced on another replica", func(t *testing.T) {
		api := ec2Client(t, a)
		var toRequired, toOptional []time.Duration
		stale := 0 // changes for which B answered the old way at least once
		for range *propagationRounds {
			setHTTPTokens(t, api, idX, types.HttpTokensStateRequired)
			d, n := firstAnswer(t, x, b, http.StatusUnauthorized)
			toRequired = append(toRequired, d)
			stale += min(n-1, 1)
			setHTTPTokens(t, api, idX, types.HttpTokensStateOptional)
			d, n = firstAnswer(t, x, b, http.StatusOK)
			toOptional = append(toOptional, d)
			stale += min(n-1, 1)
		}
		t.Logf("from ModifyInstanceMetadataOptions answered by replica A to the first answer of replica B that follows it, %d rounds;"+
			" B's first answer was still the old one for %d of %d changes:", *propagationRounds, stale, 2**propagationRounds)
		t.Logf("  http-tokens required, first 401 on B: %s", summary(toRequired))
		t.Logf("  http-tokens optional, first 200 on B: %s", summary(toOptional))
	})

	t.Run("key rotation", func(t *testing.T) {
		oldX := x.token(t, a.URL())
		oldY := y.token(t, b.URL())
		before := tokenKeyID(t, oldX)

		out, errOut, code := runIMDS(t, "", "keys", "rotate", "--admin-url", a.AdminURL, "--data-dir", a.DataDir)
		if code != 0 {
			t.Fatalf("imds keys rotate: exit %d\n%s%s", code, out, errOut)
		}
		m := regexp.MustCompile(`token signing key (\d+);`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("imds keys rotate printed %q, want the new signing key", out)
		}
		signing, _ := strconv.Atoi(m[1])
		if signing == int(before) {
			t.Fatalf("imds keys rotate: signing key %d, the same as before", signing)
		}
		// Every replica follows the ring through its watch.
		for i, p := range rs.replicas {
			eventually(t, 10*time.Second, func() string {
				if id := tokenKeyID(t, x.token(t, p.URL())); int(id) != signing {
					return fmt.Sprintf("replica %d signs with key %d, want %d", i, id, signing)
				}
				return ""
			})
		}
		newX := x.token(t, a.URL())
		newY := y.token(t, c.URL())
		for j, p := range rs.replicas {
			for _, tc := range []struct {
				name string
				c    *caller
				tok  string
				id   string
			}{
				{"old token of " + idX + " from replica A", x, oldX, idX},
				{"old token of " + idY + " from replica B", y, oldY, idY},
				{"new token of " + idX + " from replica A", x, newX, idX},
				{"new token of " + idY + " from replica C", y, newY, idY},
			} {
				if r := tc.c.instanceID(p.URL(), tc.tok); r.Status != http.StatusOK || r.Body != tc.id {
					t.Errorf("%s on replica %d: %v, want 200 %q", tc.name, j, r, tc.id)
				}
			}
		}
	})

	t.Run("address claimed through two replicas at once", func(t *testing.T) {
		ca, cb := admin(t, a), admin(t, b)
		for round := range 50 {
			addr := fmt.Sprintf("127.0.9.%d", round+1)
			specs := [2]config.Instance{
				{InstanceID: fmt.Sprintf("i-0c%015x", 2*round), Addresses: []string{addr}},
				{InstanceID: fmt.Sprintf("i-0c%015x", 2*round+1), Addresses: []string{addr}},
			}
			errs := putTogether(t, [2]*adminclient.Client{ca, cb}, specs)
			won := checkOneWinner(t, addr, specs, errs, ca, b.URL())
			if won < 0 {
				continue
			}
			eventually(t, 10*time.Second, func() string {
				for j, p := range rs.replicas {
					if msg := wantInstance(from(addr), p.URL(), "", specs[won].InstanceID)(); msg != "" {
						return fmt.Sprintf("replica %d: %s", j, msg)
					}
				}
				return ""
			})
		}
	})

	t.Run("etcd outage", func(t *testing.T) {
		tokX := x.token(t, a.URL())
		if _, err := admin(t, a).Instance(t.Context(), idX); err != nil {
			t.Fatal(err) // the operator key is in replica A's cache from now on
		}
		rs.etcd.Kill()

		// Each replica says that it serves a snapshot the store may have
		// moved past. Not fatal: what it serves matters more.
		killed := time.Now()
		noticed := map[int]bool{}
		msg := poll(*outageBound, func() string {
			var bad []string
			for i, p := range rs.replicas {
				if noticed[i] {
					continue
				}
				status, body, err := healthText(p.AdminURL, "/readyz")
				if err != nil || status != http.StatusServiceUnavailable || !strings.Contains(body, "store") {
					bad = append(bad, fmt.Sprintf("replica %d: GET /readyz: %d %q %v, want 503 naming the store", i, status, body, err))
					continue
				}
				if v, err := metric(p.AdminURL, "imds_store_synced"); v != "0" {
					bad = append(bad, fmt.Sprintf("replica %d: imds_store_synced %q %v, want 0", i, v, err))
					continue
				}
				noticed[i] = true
				t.Logf("replica %d, %v after etcd was killed: /readyz 503 %q", i, time.Since(killed).Round(time.Millisecond), strings.TrimSpace(body))
			}
			return strings.Join(bad, "; ")
		})
		if msg != "" {
			v, _ := metric(a.AdminURL, "imds_store_synced")
			t.Errorf("%v after etcd was killed: %s (replica 0: imds_store_synced %s)", time.Since(killed).Round(time.Second), msg, v)
		}
		// Static stability: the last snapshot is served, tokens included.
		for i, p := range rs.replicas {
			if msg := wantInstance(x, p.URL(), "", idX)(); msg != "" {
				t.Errorf("replica %d without etcd: %s", i, msg)
			}
			if msg := wantInstance(y, p.URL(), y.token(t, p.URL()), idY)(); msg != "" {
				t.Errorf("replica %d without etcd, with a new token: %s", i, msg)
			}
			if msg := wantInstance(x, p.URL(), tokX, idX)(); msg != "" {
				t.Errorf("replica %d without etcd, with a token from before: %s", i, msg)
			}
		}
		// A write cannot be made, and says so within its deadline.
		start := time.Now()
		_, err := admin(t, a).Instance(t.Context(), idX)
		var ae *adminclient.Error
		if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable {
			t.Errorf("GET /v1/instances/%s without etcd: %v, want 503", idX, err)
		}
		if d := time.Since(start); d > 15*time.Second {
			t.Errorf("GET /v1/instances/%s without etcd took %v", idX, d)
		}

		rs.etcd.Restart(t)
		rs.etcd.WaitHealthy(t, 30*time.Second)
		restarted := time.Now()
		for i, p := range rs.replicas {
			eventually(t, 60*time.Second, func() string {
				status, body, err := healthText(p.AdminURL, "/readyz")
				if err != nil || status != http.StatusOK {
					return fmt.Sprintf("replica %d after etcd restarted: GET /readyz: %d %q %v; want 200", i, status, body, err)
				}
				if v, err := metric(p.AdminURL, "imds_store_synced"); v != "1" {
					return fmt.Sprintf("replica %d: imds_store_synced %q %v; want 1", i, v, err)
				}
				return ""
			})
		}
		t.Logf("every replica ready again %v after etcd was healthy", time.Since(restarted).Round(time.Millisecond))

		// A change made after the recovery, through another replica, is
		// enforced everywhere.
		setHTTPTokens(t, ec2Client(t, b), idY, types.HttpTokensStateRequired)
		for i, p := range rs.replicas {
			eventually(t, 10*time.Second, func() string {
				if r := y.instanceID(p.URL(), ""); r.Status != http.StatusUnauthorized {
					return fmt.Sprintf("replica %d: GET without a token from %s after http-tokens required: %v, want 401", i, idY, r)
				}
				return ""
			})
		}
	})
}

func mustCreds(t *testing.T, p *proc) adminapi.Credentials {
	t.Helper()
	c, err := adminapi.ReadCredentialsFile(filepath.Join(p.DataDir, "credentials"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// firstAnswer polls p's data plane from c without a token, as fast as it
// answers, and returns how long after the call it first answered status and
// how many requests that took. It fails the test after 10 s or 100000
// requests.
func firstAnswer(t *testing.T, c *caller, p *proc, status int) (time.Duration, int) {
	t.Helper()
	start := time.Now()
	var last reply
	for n := 1; n <= 100000; n++ {
		last = c.instanceID(p.URL(), "")
		if last.Status == status {
			return time.Since(start), n
		}
		if time.Since(start) > 10*time.Second {
			break
		}
	}
	t.Fatalf("replica at %s still answers %v %v after the change, want %d", p.URL(), last, time.Since(start), status)
	return 0, 0
}

// summary is p50, p99 and max of ds.
func summary(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	q := func(f float64) time.Duration { return s[min(len(s)-1, int(f*float64(len(s))))] }
	r := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
	return fmt.Sprintf("p50 %v, p99 %v, max %v (min %v)", r(q(0.50)), r(q(0.99)), r(s[len(s)-1]), r(s[0]))
}

// tokenKeyID reads the key id of a token (bytes 2 and 3 of its wire form,
// see package token).
func tokenKeyID(t *testing.T, tok string) uint16 {
	t.Helper()
	raw, err := base64.URLEncoding.DecodeString(tok)
	if err != nil || len(raw) < 4 {
		t.Fatalf("token %q: %v", tok, err)
	}
	return binary.BigEndian.Uint16(raw[2:4])
}

// putTogether registers specs[i] through clients[i], both at once.
func putTogether(t *testing.T, clients [2]*adminclient.Client, specs [2]config.Instance) [2]error {
	t.Helper()
	var (
		wg   sync.WaitGroup
		errs [2]error
	)
	ready := make(chan struct{})
	for i := range 2 {
		wg.Go(func() {
			<-ready
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			_, _, errs[i] = clients[i].PutInstance(ctx, specs[i], adminclient.Cond{})
		})
	}
	close(ready)
	wg.Wait()
	return errs
}

// checkOneWinner checks that exactly one of two registrations claiming addr
// succeeded and the other got 409 Conflict naming the address. It returns
// the winner's index, or -1. c and dataPlane describe what the fleet holds
// when both won.
func checkOneWinner(t *testing.T, addr string, specs [2]config.Instance, errs [2]error, c *adminclient.Client, dataPlane string) int {
	t.Helper()
	won := -1
	for i, err := range errs {
		var ae *adminclient.Error
		switch {
		case err == nil:
			if won >= 0 {
				var held []string
				for _, s := range specs {
					rec, err := c.Instance(t.Context(), s.InstanceID)
					if err != nil {
						held = append(held, fmt.Sprintf("%s: %v", s.InstanceID, err))
					} else {
						held = append(held, fmt.Sprintf("%s has addresses %v", s.InstanceID, rec.Spec.Addresses))
					}
				}
				t.Errorf("address %s: both %s and %s were registered with it (201 and 201); now %s; a caller there gets %v",
					addr, specs[0].InstanceID, specs[1].InstanceID, strings.Join(held, ", "), from(addr).instanceID(dataPlane, ""))
				return -1
			}
			won = i
		case errors.As(err, &ae) && ae.Status == http.StatusConflict:
			if !strings.Contains(ae.Message, addr) {
				t.Errorf("PUT %s with address %s: 409 %q, want a message naming the address", specs[i].InstanceID, addr, ae.Message)
			}
		default:
			t.Errorf("PUT %s with address %s: %v, want success or 409", specs[i].InstanceID, addr, err)
		}
	}
	if won < 0 && errs[0] != nil && errs[1] != nil {
		t.Errorf("address %s: neither %s nor %s was registered: %v; %v", addr, specs[0].InstanceID, specs[1].InstanceID, errs[0], errs[1])
	}
	return won
}
