// Package harness runs the loopback comparison behind the imdsbench command:
// server processes (imds and the bare baseline), load processes, and the
// table of results.
package harness

import (
	"fmt"

	"github.com/imds/imds/bench/loadgen"
)

// Scenario is one kind of request, sent unchanged to both servers.
type Scenario struct {
	Name   string // flag value
	Title  string // table label
	Method string
	Path   string
	V2     bool // carries the session token
	TTL    bool // carries the token TTL header (a token PUT)
}

// Scenarios are the requests measured, in table order.
var Scenarios = []Scenario{
	{Name: "v2-get", Title: "IMDSv2 GET instance-id", Method: "GET", Path: "/latest/meta-data/instance-id", V2: true},
	{Name: "token-put", Title: "token PUT", Method: "PUT", Path: "/latest/api/token", TTL: true},
	{Name: "v1-get", Title: "IMDSv1 GET instance-id", Method: "GET", Path: "/latest/meta-data/instance-id"},
}

// Connection modes.
const (
	// ModeClose opens a connection per request, as real IMDS clients do
	// against EC2, which closes every connection after one response.
	ModeClose = "close"
	// ModeKeepAlive reuses connections while the server allows it: the bare
	// server always, imds (--keep-alive) for GETs only.
	ModeKeepAlive = "keepalive"
)

// Modes are the connection modes, in table order.
var Modes = []string{ModeClose, ModeKeepAlive}

// ScenarioByName returns the scenario called name.
func ScenarioByName(name string) (Scenario, error) {
	for _, s := range Scenarios {
		if s.Name == name {
			return s, nil
		}
	}
	return Scenario{}, fmt.Errorf("unknown scenario %q", name)
}

// Request renders the scenario's request for mode. token is sent by IMDSv2
// scenarios; the bare server ignores it.
func (s Scenario) Request(mode, token string) []byte {
	var hs []loadgen.Header
	if s.V2 {
		hs = append(hs, loadgen.Header{Name: "X-aws-ec2-metadata-token", Value: token})
	}
	if s.TTL {
		hs = append(hs, loadgen.Header{Name: "X-aws-ec2-metadata-token-ttl-seconds", Value: "21600"})
	}
	return loadgen.BuildRequest(s.Method, s.Path, mode == ModeClose, hs...)
}
