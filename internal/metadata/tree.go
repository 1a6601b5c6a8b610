package metadata

import (
	"slices"
	"strconv"
	"strings"
)

// Request is what a dynamic leaf may depend on.
type Request struct {
	// V2 is true when the caller presented a valid session token.
	V2 bool
}

// DynamicFunc renders a leaf whose value changes over time (role credentials).
// ok=false answers 404.
type DynamicFunc func(Request) (body []byte, ok bool)

// Node is a directory or a leaf of an instance's metadata tree. A Tree is built
// once and never changed, so any number of requests read it at once.
type Node struct {
	name     string
	children []*Node // sorted by name; nil for a leaf
	dir      bool

	body        []byte      // leaf value, or directory listing
	lenHeader   []string    // Content-Length of body, for a fixed body
	dynamic     DynamicFunc // leaf rendered per request, when set
	contentType string

	// redirectNoSlash makes a request for this directory without its trailing
	// slash answer 301 with the slash added, as EC2 does for
	// iam/security-credentials.
	redirectNoSlash bool
}

// IsDir reports whether n is a directory.
func (n *Node) IsDir() bool { return n.dir }

// ContentType is the leaf's media type.
func (n *Node) ContentType() string { return n.contentType }

// ContentLengthHeader is the Content-Length header value of a fixed body,
// made once when the tree is built; nil for a leaf rendered per request.
func (n *Node) ContentLengthHeader() []string { return n.lenHeader }

// RedirectWithoutSlash reports whether the directory answers 301 when asked for
// without a trailing slash.
func (n *Node) RedirectWithoutSlash() bool { return n.redirectNoSlash }

// Body returns the leaf's value or the directory's listing.
func (n *Node) Body(r Request) ([]byte, bool) {
	if n.dynamic != nil {
		return n.dynamic(r)
	}
	return n.body, true
}

func (n *Node) child(name string) *Node {
	// Directories are small (tens of entries); a binary search over the sorted
	// slice beats a map and allocates nothing.
	i, ok := slices.BinarySearchFunc(n.children, name, func(c *Node, name string) int {
		return strings.Compare(c.name, name)
	})
	if !ok {
		return nil
	}
	return n.children[i]
}

// Lookup finds the node at path, relative to the version root (for example
// "meta-data/iam/info" or "meta-data/"). slash reports whether path ended with
// a slash.
func (n *Node) Lookup(path string) (node *Node, slash bool) {
	slash = strings.HasSuffix(path, "/")
	path = strings.TrimSuffix(path, "/")
	cur := n
	for path != "" {
		if !cur.dir {
			return nil, slash
		}
		seg := path
		if i := strings.IndexByte(path, '/'); i >= 0 {
			seg, path = path[:i], path[i+1:]
			if path == "" { // "a//"
				return nil, slash
			}
		} else {
			path = ""
		}
		cur = cur.child(seg)
		if cur == nil {
			return nil, slash
		}
	}
	return cur, slash
}

// builder assembles a tree from leaves; directory listings are derived from the
// leaves, never written by hand.
type builder struct {
	root *Node
	// listings overrides the derived listing of a directory (public-keys).
	listings map[*Node][]byte
	// bareNames lists children without the trailing slash on directories (the
	// version root: "dynamic", "meta-data", "user-data").
	bareNames map[*Node]bool
}

func newBuilder() *builder {
	return &builder{root: &Node{dir: true}, listings: map[*Node][]byte{}, bareNames: map[*Node]bool{}}
}

// dir returns the directory at path, creating it and its parents.
func (b *builder) dir(path string) *Node {
	cur := b.root
	for _, seg := range strings.Split(strings.Trim(path, "/"), "/") {
		if seg == "" {
			continue
		}
		next := cur.findChild(seg)
		if next == nil {
			next = &Node{name: seg, dir: true}
			cur.children = append(cur.children, next)
		}
		if !next.dir {
			panic("metadata: " + path + " is both a leaf and a directory")
		}
		cur = next
	}
	return cur
}

func (n *Node) findChild(name string) *Node {
	for _, c := range n.children {
		if c.name == name {
			return c
		}
	}
	return nil
}

func (b *builder) add(path string, leaf *Node) {
	i := strings.LastIndexByte(path, '/')
	parent := b.root
	if i >= 0 {
		parent = b.dir(path[:i])
	}
	leaf.name = path[i+1:]
	if parent.findChild(leaf.name) != nil {
		panic("metadata: duplicate leaf " + path)
	}
	if leaf.contentType == "" {
		leaf.contentType = "text/plain"
	}
	parent.children = append(parent.children, leaf)
}

// text adds a leaf with a fixed value.
func (b *builder) text(path, value string) {
	b.add(path, &Node{body: []byte(value)})
}

// lines adds a leaf whose value is one item a line.
func (b *builder) lines(path string, items []string) {
	b.text(path, strings.Join(items, "\n"))
}

func (b *builder) bytes(path string, value []byte, contentType string) {
	b.add(path, &Node{body: value, contentType: contentType})
}

func (b *builder) dynamic(path string, f DynamicFunc) {
	b.add(path, &Node{dynamic: f})
}

// build sorts every directory and derives its listing: names one a line in
// byte order, directories with a trailing slash, no newline after the last.
func (b *builder) build() *Node {
	var walk func(n *Node)
	walk = func(n *Node) {
		slices.SortFunc(n.children, func(a, b *Node) int { return strings.Compare(a.name, b.name) })
		if l, ok := b.listings[n]; ok {
			n.body = l
		} else {
			names := make([]string, len(n.children))
			for i, c := range n.children {
				names[i] = c.name
				if c.dir && !b.bareNames[n] {
					names[i] += "/"
				}
			}
			n.body = []byte(strings.Join(names, "\n"))
		}
		n.contentType = "text/plain"
		n.lenHeader = lengthHeader(len(n.body))
		for _, c := range n.children {
			if c.dir {
				walk(c)
			} else if c.dynamic == nil {
				c.lenHeader = lengthHeader(len(c.body))
			}
		}
	}
	walk(b.root)
	return b.root
}

// lengths shares the Content-Length values of small bodies among every tree,
// so that a fleet does not hold one copy per leaf.
var lengths = func() (t [4096][]string) {
	for i := range t {
		t[i] = []string{strconv.Itoa(i)}
	}
	return t
}()

func lengthHeader(n int) []string {
	if n < len(lengths) {
		return lengths[n]
	}
	return []string{strconv.Itoa(n)}
}
