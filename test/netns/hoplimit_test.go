package netns

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The configured instances: each is identified by the caller addresses of one
// namespace (see topology).
const (
	vmID   = "i-0a1b2c3d4e5f60711" // the instance namespace, hop limit 1
	ctrAID = "i-0a1b2c3d4e5f60712" // the container's first addresses, hop limit 1, IMDSv1 allowed
	ctrBID = "i-0a1b2c3d4e5f60713" // the container's second addresses, hop limit 2
)

func writeConfig(t *testing.T, top *topology) string {
	t.Helper()
	instance := func(id string, c caller, tokens string, hopLimit int) string {
		return fmt.Sprintf(`  - instance-id: %s
    addresses: [%s, "%s"]
    account-id: "123456789012"
    availability-zone: us-east-1a
    metadata-options:
      http-tokens: %s
      http-put-response-hop-limit: %d
      http-protocol-ipv6: enabled
`, id, c.v4, c.v6, tokens, hopLimit)
	}
	cfg := "instances:\n" +
		instance(vmID, top.vm, "required", 1) +
		instance(ctrAID, top.containerA, "optional", 1) +
		instance(ctrBID, top.containerB, "required", 2)
	path := filepath.Join(t.TempDir(), "imds.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// defaultTTL is the IPv4 TTL and IPv6 hop limit of a namespace's packets
// when no one changes them.
const defaultTTL = 64

// TestPutResponseHopLimit runs imds in the host namespace and checks, from
// the instance and from the container behind it, that a token PUT response
// leaves with the caller's hop limit as its TTL (so it does not survive a
// router hop with hop limit 1), and that GET responses leave with the usual
// TTL.
func TestPutResponseHopLimit(t *testing.T) {
	Require(t, "tcpdump", "curl")
	top := newTopology(t)
	srv := top.host.Start(t, imdsBin, "serve",
		"--listen", hostPort(false, 80), "--listen", hostPort(true, 80),
		"--config", writeConfig(t, top), "--data-dir", t.TempDir())
	srv.WaitStderr(t, "msg=listening", 2, 15*time.Second)
	hostCap := top.host.StartCapture(t, "h0", "tcp src port 80")
	ctrCap := top.container.StartCapture(t, "c0", "tcp src port 80")

	// exchange is one request whose response packets the wire checks read.
	type exchange struct {
		name    string
		from    caller
		cport   int
		wantTTL int  // at the host
		dropped bool // the response must not reach the caller
	}
	var exchanges []exchange
	p := ports{next: 41000}

	tests := []struct {
		name       string
		from       caller
		instanceID string
		hopLimit   int
		wantToken  bool
	}{
		{"instance/hop limit 1", top.vm, vmID, 1, true},
		{"container/hop limit 1", top.containerA, ctrAID, 1, false},
		{"container/hop limit 2", top.containerB, ctrBID, 2, true},
	}
	for _, ipv6 := range []bool{false, true} {
		family := map[bool]string{false: "ipv4", true: "ipv6"}[ipv6]
		base := "http://" + hostPort(ipv6, 80)
		for _, tt := range tests {
			name := family + "/" + tt.name
			t.Run(name, func(t *testing.T) {
				cport := p.take()
				exchanges = append(exchanges, exchange{name + "/PUT token", tt.from, cport, tt.hopLimit, !tt.wantToken})
				put := request(t, tt.from, ipv6, cport, "PUT", base+"/latest/api/token",
					"X-aws-ec2-metadata-token-ttl-seconds: 21600")
				logged := put
				if logged.body != "" {
					logged.body = fmt.Sprintf("<%d-byte token>", len(put.body))
				}
				t.Logf("PUT /latest/api/token: %s", logged)

				get := func(headers ...string) {
					t.Helper()
					cport := p.take()
					exchanges = append(exchanges, exchange{name + "/GET instance-id", tt.from, cport, defaultTTL, false})
					r := request(t, tt.from, ipv6, cport, "GET", base+"/latest/meta-data/instance-id", headers...)
					t.Logf("GET /latest/meta-data/instance-id: %s", r)
					if r.exit != 0 || r.status != 200 || r.body != tt.instanceID {
						t.Errorf("GET instance-id: got %s, want 200 %q", r, tt.instanceID)
					}
				}

				if !tt.wantToken {
					if put.exit != curlTimedOut {
						t.Errorf("PUT token: got %s, want a timeout (curl exit %d)", put, curlTimedOut)
					}
					// Only the PUT response is hop-limited: IMDSv1 still
					// reaches the container.
					get()
					return
				}
				if put.exit != 0 || put.status != 200 || put.body == "" {
					t.Fatalf("PUT token: got %s, want 200 and a token", put)
				}
				get("X-aws-ec2-metadata-token: " + put.body)
			})
		}
	}

	// Wait until the last response is captured (packets on one interface are
	// captured in order), then read both captures.
	last := exchanges[len(exchanges)-1]
	isLast := func(p Packet) bool { return p.Dst.Port() == uint16(last.cport) && p.Payload > 0 }
	hostCap.WaitFor(t, isLast, 5*time.Second)
	if last.from.routed {
		ctrCap.WaitFor(t, isLast, 5*time.Second)
	}
	hostPkts, ctrPkts := hostCap.Stop(t), ctrCap.Stop(t)

	for _, e := range exchanges {
		t.Run("wire/"+e.name, func(t *testing.T) {
			data, other := dataTo(hostPkts, 80, uint16(e.cport))
			if len(data) == 0 {
				t.Fatalf("no response data segments to port %d at the host", e.cport)
			}
			for _, p := range data {
				if p.TTL != e.wantTTL {
					t.Errorf("host sent %v, want ttl %d", p, e.wantTTL)
				}
			}
			t.Logf("host sent %d data segments, ttl %v; segments without data, ttl %v", len(data), ttls(data), other)
			if !e.from.routed {
				return
			}
			arrived, _ := dataTo(ctrPkts, 80, uint16(e.cport))
			if e.dropped {
				if len(arrived) > 0 {
					t.Errorf("container received %v, want nothing", arrived[0])
				}
				t.Logf("container received no data segments")
				return
			}
			if len(arrived) == 0 {
				t.Fatalf("container received no data segments")
			}
			for _, p := range arrived {
				if p.TTL != e.wantTTL-1 {
					t.Errorf("container received %v, want ttl %d", p, e.wantTTL-1)
				}
			}
			t.Logf("container received %d data segments, ttl %v", len(arrived), ttls(arrived))
		})
	}
}

func ttls(pkts []Packet) []int {
	var s []int
	for _, p := range pkts {
		s = append(s, p.TTL)
	}
	return s
}
