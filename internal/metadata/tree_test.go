package metadata

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

var (
	built  = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	launch = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
)

// sampleInstances covers every optional leaf: a bare instance, one with
// everything, and the edge cases between (a role whose credentials are not
// served, tags exposed but none set).
func sampleInstances() map[string]func() (*Instance, Sources) {
	creds := func(name string) DynamicFunc {
		return func(r Request) ([]byte, bool) { return []byte(fmt.Sprintf("%s v2=%v", name, r.V2)), true }
	}
	sign := func(doc []byte) (p, s, r []byte, err error) {
		h := sha256.Sum256(doc)
		d := hex.EncodeToString(h[:8])
		return []byte("pkcs7 " + d), []byte("signature " + d), []byte("rsa2048 " + d), nil
	}
	return map[string]func() (*Instance, Sources){
		"minimal": func() (*Instance, Sources) {
			return &Instance{ID: "i-0123456789abcdef0", LaunchTime: launch}, Sources{}
		},
		"full": func() (*Instance, Sources) {
			in := &Instance{
				ID: "i-0fedcba9876543210", AccountID: "210987654321", AMILaunchIndex: 3,
				InstanceType: "m7g.large", AvailabilityZone: "eu-west-1b", AvailabilityZoneID: "euw1-az2",
				PublicIPv4: "203.0.113.9", IPv6: "2001:db8::9",
				SecurityGroups: []string{"web", "ssh"},
				PublicKeys:     []KeyValue{{"ops", "ssh-ed25519 AAAA ops"}, {"ci", "ssh-ed25519 BBBB ci"}},
				UserData:       []byte("#cloud-config\n"),
				Tags:           []KeyValue{{"Name", "web-1"}, {"env", "prod"}, {"Team", "infra"}},
				Role:           "app", LaunchTime: launch,
				Spot:            &Spot{Action: "terminate", Time: built.Add(2 * time.Minute)},
				RebalanceNotice: built.Add(time.Minute),
				Events: []Event{
					{Code: "system-reboot", Description: "reboot", NotBefore: built.Add(48 * time.Hour)},
					{Code: "instance-stop", Description: "stop", State: "canceled", NotBefore: built.Add(-48 * time.Hour)},
					{Code: "system-maintenance", Description: "done", State: "completed", NotBefore: built.Add(-96 * time.Hour)},
				},
				TargetLifecycleState: "InService",
				Options:              Options{TagsEnabled: true, TokensRequired: true, HopLimit: 2},
				Addresses:            []netip.Addr{netip.MustParseAddr("172.31.7.8")},
			}
			return in, Sources{
				Credentials: creds("credentials"), ExtendedCredentials: creds("extended"),
				IdentityCredentials: creds("identity"), Sign: sign,
			}
		},
		"role-unserved-tags-none": func() (*Instance, Sources) {
			return &Instance{
				ID: "i-00000000000000001", Role: "missing", LaunchTime: launch, Region: "cn-north-1",
				Spot:    &Spot{Action: "stop", Time: built},
				Options: Options{TagsEnabled: true},
			}, Sources{IdentityCredentials: creds("identity")}
		},
	}
}

// dump walks a tree through its listings, as a client would, and writes
// every path with its kind, content type and body (dynamic leaves once as
// IMDSv1 and once as IMDSv2), then the answers to paths no listing names.
func dump(t *testing.T, tree *Tree) string {
	t.Helper()
	var out strings.Builder
	var walk func(path string)
	walk = func(path string) {
		n, ok := tree.Lookup(path)
		if !ok {
			t.Fatalf("%q is listed but not found", path)
		}
		v1, ok1 := n.Body(Request{})
		v2, ok2 := n.Body(Request{V2: true})
		kind := "leaf"
		if n.IsDir() {
			kind = "dir"
			if n.RedirectWithoutSlash() {
				kind += " redirect"
			}
		}
		fmt.Fprintf(&out, "== /%s [%s %s]\n", path, kind, n.ContentType())
		if bytes.Equal(v1, v2) && ok1 == ok2 {
			fmt.Fprintf(&out, "%s\n", found(v1, ok1))
		} else {
			fmt.Fprintf(&out, "v1: %s\nv2: %s\n", found(v1, ok1), found(v2, ok2))
		}
		if !n.IsDir() {
			return
		}
		for _, name := range strings.Split(string(v1), "\n") {
			if name == "" {
				continue
			}
			name, _, _ = strings.Cut(name, "=") // public-keys: "0=name"
			name = strings.TrimSuffix(name, "/")
			child := path + name
			if c, ok := tree.Lookup(child); ok && c.IsDir() {
				child += "/"
			}
			walk(child)
		}
	}
	walk("")
	for _, p := range []string{
		"meta-data", "meta-data//", "meta-data/instance-id/", "meta-data/nope",
		"meta-data/instance-id/x", "meta-data/iam/security-credentials",
		"meta-data/iam/security-credentials/other", "meta-data/tags/instance/name",
		"meta-data/public-keys/2/openssh-key", "meta-data/public-keys/0",
		"meta-data/network/interfaces/macs/00:00:00:00:00:00/mac", "/meta-data",
	} {
		n, ok := tree.Lookup(p)
		if !ok {
			fmt.Fprintf(&out, "?? /%s: not found\n", p)
			continue
		}
		b, _ := n.Body(Request{V2: true})
		fmt.Fprintf(&out, "?? /%s: dir=%v %q\n", p, n.IsDir(), b)
	}
	return out.String()
}

func found(b []byte, ok bool) string {
	if !ok {
		return "(404)"
	}
	return string(b)
}

// TestTreeGolden pins the whole tree of each sample instance: paths,
// listings, content types and bodies. Run with -update to rewrite.
func TestTreeGolden(t *testing.T) {
	for name, sample := range sampleInstances() {
		t.Run(name, func(t *testing.T) {
			in, src := sample()
			in.Derive()
			got := dump(t, Build(in, src, built))
			file := filepath.Join("testdata", "tree", name+".txt")
			if *update {
				if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("tree differs from %s (run with -update after checking the diff):\n%s", file, diff(string(want), got))
			}
		})
	}
}

// diff lists the lines that differ, enough to find a change.
func diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var out []string
	for i := 0; i < max(len(w), len(g)) && len(out) < 40; i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			out = append(out, fmt.Sprintf("line %d:\n- %s\n+ %s", i+1, a, b))
		}
	}
	return strings.Join(out, "\n")
}

func body(t *testing.T, tree *Tree, path string, r Request) string {
	t.Helper()
	n, ok := tree.Lookup(path)
	if !ok {
		t.Fatalf("%s: not found", path)
	}
	b, ok := n.Body(r)
	if !ok {
		t.Fatalf("%s: 404", path)
	}
	return string(b)
}

// The leaves every request asks for cost no allocation: the body is the
// instance's own string and the listing of the role is its name.
func TestHotLeavesAllocateNothing(t *testing.T) {
	in, src := sampleInstances()["full"]()
	in.Derive()
	tree := Build(in, src, built)
	for _, path := range []string{"meta-data/instance-id", "meta-data/iam/security-credentials/", "meta-data/placement/region", "meta-data/"} {
		body(t, tree, path, Request{V2: true}) // make the shared listings
		if n := testing.AllocsPerRun(100, func() {
			n, _ := tree.Lookup(path)
			n.Body(Request{V2: true})
		}); n != 0 {
			t.Errorf("%s: %v allocations per request, want 0", path, n)
		}
	}
}

// Instances with the same set of entries share one listing, whatever the
// fleet's size; a different set gets its own.
func TestListingsAreShared(t *testing.T) {
	listing := func(id string, public string) []byte {
		in := &Instance{ID: id, PublicIPv4: public}
		in.Derive()
		n, _ := Build(in, Sources{}, built).Lookup("meta-data/")
		b, _ := n.Body(Request{})
		return b
	}
	a, b := listing("i-0000000000000000a", ""), listing("i-0000000000000000b", "")
	if &a[0] != &b[0] {
		t.Error("two instances with the same entries have a listing each")
	}
	c := listing("i-0000000000000000c", "203.0.113.1")
	if bytes.Equal(a, c) || !bytes.Contains(c, []byte("\npublic-ipv4\n")) {
		t.Errorf("listing with a public address:\n%s", c)
	}
}

// The identity document is signed once, on the first request for any of its
// signatures, however many arrive at once; a failure answers 404.
func TestSignaturesAreMadeOnce(t *testing.T) {
	var calls atomic.Int32
	in := &Instance{ID: "i-0000000000000000a"}
	in.Derive()
	tree := Build(in, Sources{Sign: func(doc []byte) ([]byte, []byte, []byte, error) {
		calls.Add(1)
		return []byte("p"), []byte("s"), []byte("r"), nil
	}}, built)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for _, leaf := range []string{"pkcs7", "signature", "rsa2048"} {
				body(t, tree, "dynamic/instance-identity/"+leaf, Request{})
			}
		})
	}
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Errorf("signed %d times, want once", n)
	}
	if got := body(t, tree, "dynamic/instance-identity/rsa2048", Request{}); got != "r" {
		t.Errorf("rsa2048 = %q", got)
	}

	failing := Build(in, Sources{Sign: func([]byte) ([]byte, []byte, []byte, error) {
		return nil, nil, nil, errors.New("no key")
	}}, built)
	n, _ := failing.Lookup("dynamic/instance-identity/pkcs7")
	if _, ok := n.Body(Request{}); ok {
		t.Error("a failed signature is served")
	}
}

// Entries named by the instance are found by their names only, and listed in
// byte order.
func TestEntriesNamedByTheInstance(t *testing.T) {
	in := &Instance{
		ID: "i-0000000000000000a", Role: "app",
		Tags:    []KeyValue{{"b", "2"}, {"B", "1"}, {"a", "3"}},
		Options: Options{TagsEnabled: true},
	}
	in.Derive()
	creds := func(Request) ([]byte, bool) { return []byte("creds"), true }
	tree := Build(in, Sources{Credentials: creds}, built)
	if got := body(t, tree, "meta-data/tags/instance/", Request{}); got != "B\na\nb" {
		t.Errorf("tags listing = %q, want B, a, b", got)
	}
	if got := body(t, tree, "meta-data/tags/instance/a", Request{}); got != "3" {
		t.Errorf("tag a = %q", got)
	}
	if got := body(t, tree, "meta-data/iam/security-credentials/app", Request{}); got != "creds" {
		t.Errorf("credentials = %q", got)
	}
	for _, p := range []string{"meta-data/iam/security-credentials/App", "meta-data/tags/instance/c", "meta-data/network/interfaces/macs/" + strings.ToUpper(in.MAC) + "/mac"} {
		if _, ok := tree.Lookup(p); ok {
			t.Errorf("%s found", p)
		}
	}
	// Without exposed tags, the tags are not there at all.
	in.Options.TagsEnabled = false
	if _, ok := Build(in, Sources{}, built).Lookup("meta-data/tags/instance/a"); ok {
		t.Error("tags served with instance-metadata-tags disabled")
	}
}
