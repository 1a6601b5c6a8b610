package metadata

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Request is what a dynamic leaf may depend on.
type Request struct {
	// V2 is true when the caller presented a valid session token.
	V2 bool
}

// DynamicFunc renders a leaf whose value changes over time (role credentials).
// ok=false answers 404.
type DynamicFunc func(Request) (body []byte, ok bool)

// Tree is an instance's metadata below a version prefix: "dynamic",
// "meta-data" and "user-data".
//
// Every instance's tree has the same layout (see layout.go), so a Tree holds
// only its instance and what renders its dynamic leaves. A leaf's body is the
// instance's own string, or rendered when it is asked for; a listing is made
// once for each set of entries an instance can have and shared. A fleet of
// 100,000 instances so holds no per-instance copy of any leaf. A Tree is
// never changed once built, so any number of requests read it at once.
type Tree struct {
	in  *Instance
	src Sources
	// LastModified is when the metadata was generated, for the Last-Modified
	// header and the LastUpdated fields.
	LastModified time.Time

	signing sync.Mutex                // held while the identity document is signed
	signed  atomic.Pointer[signature] // nil until the first request for a signature
}

// signature is the result of signing an instance's identity document.
type signature struct {
	bodies [3][]byte // pkcs7, signature, rsa2048
	ok     bool
}

// Node is a directory or a leaf of a tree, as Lookup finds it.
type Node struct {
	t *Tree
	n *node
	i int // which entry named by the instance the path went through
}

// IsDir reports whether n is a directory.
func (n Node) IsDir() bool { return n.n.dir }

// ContentType is the leaf's media type.
func (n Node) ContentType() string {
	if n.n.octet {
		return "application/octet-stream"
	}
	return "text/plain"
}

// RedirectWithoutSlash reports whether the directory answers 301 when asked for
// without a trailing slash.
func (n Node) RedirectWithoutSlash() bool { return n.n.redirectNoSlash }

// Body returns the leaf's value or the directory's listing. The bytes are
// shared with the tree and other requests: never modify them.
func (n Node) Body(r Request) ([]byte, bool) {
	if n.n.dir {
		return n.n.listing(n.t), true
	}
	return n.n.value(n.t, n.i, r)
}

// Lookup finds the node at path, relative to the version root (for example
// "meta-data/iam/info", "meta-data/" or "" for the root).
func (t *Tree) Lookup(path string) (Node, bool) {
	path = strings.TrimSuffix(path, "/")
	cur, i := layout, 0
	for path != "" {
		if !cur.dir {
			return Node{}, false
		}
		seg := path
		if j := strings.IndexByte(path, '/'); j >= 0 {
			seg, path = path[:j], path[j+1:]
			if path == "" { // "a//"
				return Node{}, false
			}
		} else {
			path = ""
		}
		next := cur.child(seg)
		if next == nil || !next.present(t) {
			var ok bool
			if next, i, ok = cur.named(t, seg); !ok {
				return Node{}, false
			}
		}
		cur = next
	}
	return Node{t: t, n: cur, i: i}, true
}

// sign signs the identity document on the first request for a signature and
// keeps the result: signing is too slow to do for a whole fleet up front.
func (t *Tree) sign(which int) ([]byte, bool) {
	s := t.signed.Load()
	if s == nil {
		t.signing.Lock()
		if s = t.signed.Load(); s == nil {
			p, sig, r, err := t.src.Sign(t.in.IdentityDocument())
			s = &signature{bodies: [3][]byte{p, sig, r}, ok: err == nil}
			t.signed.Store(s)
		}
		t.signing.Unlock()
	}
	return s.bodies[which], s.ok
}

// valueFunc renders a leaf of t; i is the entry named by the instance that
// the leaf's path went through (a tag, a public key).
type valueFunc func(t *Tree, i int, r Request) ([]byte, bool)

// node is a directory or a leaf of the layout every tree shares.
type node struct {
	name string
	dir  bool
	// children are the entries with fixed names, sorted by name.
	children []*node
	// each is the entry whose names come from the instance (a MAC, a role, a
	// tag key), one for each of count's entries; nil if none.
	each   *node
	count  func(t *Tree) int
	nameOf func(t *Tree, i int) string

	// when reports whether the node exists in t; nil: always.
	when  func(t *Tree) bool
	value valueFunc // a leaf's body
	// list renders a listing that is not the names of the entries
	// (public-keys: "0=name").
	list func(t *Tree) []byte
	// fixed is the listing of a directory whose entries every instance has.
	fixed []byte
	// listings are the listings made so far of a directory whose entries
	// depend on the instance, by the set of entries present (see mask).
	listings atomic.Pointer[map[uint64][]byte]
	adding   sync.Mutex

	bare            bool // lists directories without the trailing slash (the version root)
	octet           bool // application/octet-stream
	redirectNoSlash bool // 301 without the trailing slash, as EC2 does for iam/security-credentials
}

func (n *node) present(t *Tree) bool { return n.when == nil || n.when(t) }

func (n *node) child(name string) *node {
	// Directories are small (tens of entries); a binary search over the sorted
	// slice beats a map and allocates nothing.
	i, ok := slices.BinarySearchFunc(n.children, name, func(c *node, name string) int {
		return strings.Compare(c.name, name)
	})
	if !ok {
		return nil
	}
	return n.children[i]
}

// named finds the entry named by the instance: seg among count's names.
func (n *node) named(t *Tree, seg string) (*node, int, bool) {
	e := n.each
	if e == nil || !e.present(t) {
		return nil, 0, false
	}
	for i := range e.count(t) {
		if e.nameOf(t, i) == seg {
			return e, i, true
		}
	}
	return nil, 0, false
}

// listing is the directory's body: the names of its entries one a line in
// byte order, directories with a trailing slash, no newline after the last.
func (n *node) listing(t *Tree) []byte {
	switch {
	case n.list != nil:
		return n.list(t)
	case n.fixed != nil:
		return n.fixed
	case n.each == nil:
		// The entries vary only by which exist: make each listing once.
		mask := n.mask(t)
		if m := n.listings.Load(); m != nil {
			if b, ok := (*m)[mask]; ok {
				return b
			}
		}
		return n.keep(mask, n.render(t))
	case len(n.children) == 0 && !n.each.dir && n.each.present(t) && n.each.count(t) == 1:
		// A single entry named by the instance: the role under
		// iam/security-credentials/, which every SDK asks for.
		return stringBytes(n.each.nameOf(t, 0))
	}
	return n.render(t)
}

// mask has bit i set when the i-th entry exists in t.
func (n *node) mask(t *Tree) uint64 {
	var m uint64
	for i, c := range n.children {
		if c.present(t) {
			m |= 1 << i
		}
	}
	return m
}

// keep records the listing of one set of entries; there are at most a few
// such sets for each directory, however large the fleet.
func (n *node) keep(mask uint64, b []byte) []byte {
	n.adding.Lock()
	defer n.adding.Unlock()
	m := map[uint64][]byte{mask: b}
	if old := n.listings.Load(); old != nil {
		if kept, ok := (*old)[mask]; ok {
			return kept
		}
		maps.Copy(m, *old)
	}
	n.listings.Store(&m)
	return b
}

func (n *node) render(t *Tree) []byte {
	var names []string
	for _, c := range n.children {
		if c.present(t) {
			names = append(names, n.entry(c.name, c))
		}
	}
	if e := n.each; e != nil && e.present(t) {
		for i := range e.count(t) {
			names = append(names, n.entry(e.nameOf(t, i), e))
		}
		slices.Sort(names)
	}
	return []byte(strings.Join(names, "\n"))
}

func (n *node) entry(name string, c *node) string {
	if c.dir && !n.bare {
		return name + "/"
	}
	return name
}

// stringBytes returns the bytes of s without copying them. Bodies are only
// ever written to connections, never modified (see Node.Body), which is what
// makes sharing a string's bytes safe.
func stringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// ContentLength returns the Content-Length header value of a body of n bytes.
// The values of small bodies are made once and shared by every response.
func ContentLength(n int) []string {
	if n < len(lengths) {
		return lengths[n]
	}
	return []string{strconv.Itoa(n)}
}

var lengths = func() (t [4096][]string) {
	for i := range t {
		t[i] = []string{strconv.Itoa(i)}
	}
	return t
}()
