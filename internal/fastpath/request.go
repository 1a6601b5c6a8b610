package fastpath

import (
	"bytes"
	"net/http"
	"net/textproto"
	"net/url"

	"golang.org/x/net/http/httpguts"
)

// The requests the fast path serves: GET, HEAD or PUT of an origin-form path
// in HTTP/1.1, with a Host field, header fields of printable ASCII on one
// line each, lines ended by CRLF, and no body (no Content-Length other than
// 0, no Transfer-Encoding, no Expect). The path holds only characters that
// net/url leaves as they are: no query, no percent-encoding. Everything else
// goes to net/http.

type parseResult int

const (
	parseMore parseResult = iota // the header is not complete yet
	parseDone                    // a request the fast path serves
	parseOdd                     // a request for net/http
)

var (
	pathByte  [256]bool // bytes of a path that net/url neither decodes nor escapes
	tokenByte [256]bool // bytes of a field name
)

func init() {
	for b := 0x21; b < 0x7f; b++ {
		s := "/" + string(rune(b))
		pathByte[b] = b != '%' && b != '?' && b != '#' && (&url.URL{Path: s}).EscapedPath() == s
		tokenByte[b] = httpguts.IsTokenRune(rune(b))
	}
}

// commonKeys maps the spellings of the fields IMDS clients send to their
// canonical form, so that reading them allocates nothing.
var commonKeys = func() map[string]seen {
	m := map[string]seen{}
	for _, k := range []string{
		"Host", "User-Agent", "Accept", "Accept-Encoding", "Connection", "Content-Length",
		"Content-Type", "X-Forwarded-For", "X-aws-ec2-metadata-token",
		"X-aws-ec2-metadata-token-ttl-seconds", "Amz-Sdk-Invocation-Id", "Amz-Sdk-Request",
	} {
		c := textproto.CanonicalMIMEHeaderKey(k)
		for _, raw := range []string{k, c, lower(k)} {
			m[raw] = seen{raw: raw, key: c}
		}
	}
	return m
}()

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// seen is a header line of an earlier request on this connection (or on an
// earlier connection served by the same conn value): a request that repeats
// it reuses its strings instead of allocating new ones.
type seen struct {
	raw, key, val string
}

// parseState is the progress through one request's header.
type parseState struct {
	scan       int // offset in buf of the next line to read
	sawLine    bool
	line       int // index of the next header line
	method     string
	path       string
	host       string
	hosts      int
	contentLen bool
}

// parse reads the complete lines of buf[c.r:c.w] from where it stopped. It
// fills c.hdr and c.ps, and says whether the request is complete, not yet
// complete, or one for net/http. It decides as soon as a line shows that the
// request is one for net/http, as net/http answers such a line at once.
func (c *conn) parse() parseResult {
	for {
		b := c.buf[c.ps.scan:c.w]
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return parseMore
		}
		if i == 0 || b[i-1] != '\r' {
			return parseOdd
		}
		line := b[:i-1]
		c.ps.scan += i + 1
		switch {
		case !c.ps.sawLine:
			if !c.requestLine(line) {
				return parseOdd
			}
			c.ps.sawLine = true
		case len(line) == 0:
			return c.finishHeader()
		default:
			if !c.headerLine(line) {
				return parseOdd
			}
		}
	}
}

func (c *conn) requestLine(line []byte) bool {
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return false
	}
	switch string(line[:sp]) {
	case http.MethodGet:
		c.ps.method = http.MethodGet
	case http.MethodHead:
		c.ps.method = http.MethodHead
	case http.MethodPut:
		c.ps.method = http.MethodPut
	default:
		return false
	}
	rest := line[sp+1:]
	sp = bytes.IndexByte(rest, ' ')
	if sp < 1 || string(rest[sp+1:]) != "HTTP/1.1" || rest[0] != '/' {
		return false
	}
	target := rest[:sp]
	for _, b := range target {
		if !pathByte[b] {
			return false
		}
	}
	if c.lastPath != string(target) {
		c.lastPath = string(target)
	}
	c.ps.path = c.lastPath
	return true
}

func (c *conn) headerLine(line []byte) bool {
	colon := bytes.IndexByte(line, ':')
	if colon < 1 {
		return false
	}
	name, v := line[:colon], line[colon+1:]
	for _, b := range name {
		if !tokenByte[b] {
			return false
		}
	}
	for _, b := range v {
		if b < 0x20 && b != '\t' || b >= 0x7f {
			return false
		}
	}
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}

	var key, val string
	n := c.ps.line
	c.ps.line++
	if n < len(c.seen) && c.seen[n].raw == string(name) {
		key = c.seen[n].key
		if c.seen[n].val == string(v) {
			val = c.seen[n].val
		}
	}
	if key == "" {
		s, ok := commonKeys[string(name)]
		if !ok {
			s.raw = string(name)
			s.key = textproto.CanonicalMIMEHeaderKey(s.raw)
		}
		key = s.key
		c.remember(n, s)
	}
	if val == "" && len(v) > 0 {
		val = string(v)
		c.seen[n].val = val
	}

	switch key {
	case "Host":
		c.ps.hosts++
		c.ps.host = val
		return true
	case "Content-Length":
		if c.ps.contentLen || val != "0" {
			return false
		}
		c.ps.contentLen = true
	case "Transfer-Encoding", "Expect":
		return false
	}
	if vv, ok := c.hdr[key]; ok {
		c.hdr[key] = append(vv[:len(vv):len(vv)], val)
		return true
	}
	i := len(c.vals)
	c.vals = append(c.vals, val)
	c.hdr[key] = c.vals[i : i+1 : i+1]
	return true
}

// remember records line n of this request for the next one.
func (c *conn) remember(n int, s seen) {
	if n < len(c.seen) {
		c.seen[n] = s
		c.seen = c.seen[:n+1]
		return
	}
	c.seen = append(c.seen[:n], s)
}

// finishHeader applies what net/http checks and derives once the header is
// complete.
func (c *conn) finishHeader() parseResult {
	if c.ps.hosts != 1 || !httpguts.ValidHostHeader(c.ps.host) {
		return parseOdd
	}
	if p := c.hdr["Pragma"]; len(p) > 0 && p[0] == "no-cache" {
		if _, ok := c.hdr["Cache-Control"]; !ok {
			c.hdr["Cache-Control"] = []string{"no-cache"}
		}
	}
	return parseDone
}
