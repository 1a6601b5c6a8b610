package fastpath

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// bufferBeforeChunking is how much of a body without a Content-Length is
// held back to compute one, as net/http does.
const bufferBeforeChunking = 2048

// response is the ResponseWriter of one request. It makes the answer
// net/http makes for the same handler calls: the same status line, the
// handler's header fields sorted and cleaned the same way, then the fields
// net/http adds (Date, Content-Length, Content-Type, Connection,
// Transfer-Encoding) under the same conditions and in the same order. What
// it leaves out: 100-continue (such requests go to net/http), request bodies,
// http.ResponseController deadlines and full duplex, CloseNotify.
type response struct {
	c   *conn
	req *http.Request

	hdr          http.Header // the handler's
	calledHeader bool
	wroteHeader  bool // logically: the status is decided
	status       int
	snap         []field  // the header when the status was decided, sorted
	snapVals     []string // backing store of snap's values
	trailers     []string // declared in a Trailer field

	contentLength int64 // -1 when unknown
	written       int64
	handlerDone   bool
	hijacked      bool
	closeAfter    bool

	w  *bufio.Writer // bufferBeforeChunking bytes in front of cw
	cw chunkWriter
}

type field struct {
	key  string
	vals []string
}

func (w *response) reset(c *conn, req *http.Request, wantsClose bool) {
	clear(w.hdr)
	*w = response{
		c: c, req: req, hdr: w.hdr, snap: w.snap[:0], snapVals: w.snapVals[:0],
		trailers: w.trailers[:0], contentLength: -1, closeAfter: wantsClose,
		w: w.w, cw: chunkWriter{res: w},
	}
	w.w.Reset(&w.cw)
}

func (w *response) Header() http.Header {
	w.calledHeader = true
	return w.hdr
}

func (w *response) WriteHeader(code int) {
	if w.hijacked {
		w.c.srv.logf("fastpath: WriteHeader on a hijacked connection")
		return
	}
	if w.wroteHeader {
		w.c.srv.logf("fastpath: superfluous WriteHeader call")
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		bw := w.c.bw
		writeStatusLine(bw, code)
		w.hdr.WriteSubset(bw, excludedNoBody)
		bw.WriteString("\r\n")
		bw.Flush()
		return
	}
	w.wroteHeader = true
	w.status = code
	if w.calledHeader {
		w.snapshot()
	}
	if cl := get(w.hdr, "Content-Length"); cl != "" {
		v, err := strconv.ParseInt(cl, 10, 64)
		if err == nil && v >= 0 {
			w.contentLength = v
		} else {
			w.c.srv.logf("fastpath: invalid Content-Length of %q", cl)
			w.hdr.Del("Content-Length")
		}
	}
}

// snapshot copies the header as it is now, sorted by key, as net/http's
// clone in WriteHeader does, into space reused between requests. A handler
// tends to set the same fields on every answer: when the keys are those of
// the last snapshot, their order is known and nothing is sorted.
func (w *response) snapshot() {
	if len(w.hdr) == len(w.c.lastKeys) && w.snapshotAs(w.c.lastKeys) {
		return
	}
	w.snap, w.snapVals = w.snap[:0], w.snapVals[:0]
	for k, vv := range w.hdr {
		w.add(k, vv)
	}
	slices.SortFunc(w.snap, func(a, b field) int { return strings.Compare(a.key, b.key) })
	w.c.lastKeys = w.c.lastKeys[:0]
	for _, f := range w.snap {
		w.c.lastKeys = append(w.c.lastKeys, f.key)
	}
}

// snapshotAs takes the snapshot in the order of keys, if the header has
// each of them.
func (w *response) snapshotAs(keys []string) bool {
	for _, k := range keys {
		vv, ok := w.hdr[k]
		if !ok {
			return false
		}
		w.add(k, vv)
	}
	return true
}

func (w *response) add(k string, vv []string) {
	n := len(w.snapVals)
	w.snapVals = append(w.snapVals, vv...)
	w.snap = append(w.snap, field{k, w.snapVals[n:len(w.snapVals):len(w.snapVals)]})
}

// get, vals and has read the snapshot, as net/http reads its clone.
func (w *response) get(key string) string {
	if vv := w.vals(key); len(vv) > 0 {
		return vv[0]
	}
	return ""
}

func (w *response) vals(key string) []string {
	if i, ok := w.find(key); ok {
		return w.snap[i].vals
	}
	return nil
}

func (w *response) has(key string) bool {
	_, ok := w.find(key)
	return ok
}

func (w *response) find(key string) (int, bool) {
	for i := range w.snap {
		if w.snap[i].key == key {
			return i, true
		}
	}
	return 0, false
}

func get(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (w *response) Write(p []byte) (int, error) { return w.write(len(p), p, "") }

func (w *response) WriteString(s string) (int, error) { return w.write(len(s), nil, s) }

func (w *response) write(n int, p []byte, s string) (int, error) {
	if w.hijacked {
		if n > 0 {
			w.c.srv.logf("fastpath: Write on a hijacked connection")
		}
		return 0, http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if n == 0 {
		return 0, nil
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	w.written += int64(n)
	if w.contentLength != -1 && w.written > w.contentLength {
		return 0, http.ErrContentLength
	}
	if p != nil {
		return w.w.Write(p)
	}
	return w.w.WriteString(s)
}

// Flush sends what the handler has written so far.
func (w *response) Flush() {
	if w.hijacked {
		return
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.w.Flush()
	w.cw.flush()
}

// Hijack hands the connection to the handler, as net/http's does.
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.handlerDone {
		panic("fastpath: Hijack called after ServeHTTP finished")
	}
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	if w.wroteHeader {
		w.cw.flush()
	}
	w.hijacked = true
	return w.c.hijack()
}

// finish completes the answer after the handler returns.
func (w *response) finish() {
	w.handlerDone = true
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.w.Flush()
	w.cw.close()
}

// reusable reports whether the connection can serve another request.
func (w *response) reusable() bool {
	if w.closeAfter {
		return false
	}
	if w.req.Method != http.MethodHead && w.contentLength != -1 && bodyAllowed(w.status) && w.contentLength != w.written {
		return false
	}
	return true
}

func (w *response) declareTrailer(k string) {
	k = http.CanonicalHeaderKey(k)
	if httpguts.ValidTrailerHeader(k) {
		w.trailers = append(w.trailers, k)
	}
}

func (w *response) finalTrailers() http.Header {
	var t http.Header
	for k, vv := range w.hdr {
		if kk, found := strings.CutPrefix(k, http.TrailerPrefix); found {
			if t == nil {
				t = http.Header{}
			}
			t[kk] = vv
		}
	}
	for _, k := range w.trailers {
		if t == nil {
			t = http.Header{}
		}
		for _, v := range w.hdr[k] {
			t.Add(k, v)
		}
	}
	return t
}

// chunkWriter writes the header before the first bytes of the body, and the
// body, chunked when its length is not known.
type chunkWriter struct {
	res         *response
	wroteHeader bool
	chunking    bool
	// exclude are the fields left out, as net/http's delHeader removes
	// them: at most Content-Type, Content-Length, Transfer-Encoding and
	// Connection.
	exclude  [4]string
	nexclude int
}

func (cw *chunkWriter) Write(p []byte) (int, error) {
	if !cw.wroteHeader {
		cw.writeHeader(p)
	}
	if cw.res.req.Method == http.MethodHead {
		return len(p), nil
	}
	bw := cw.res.c.bw
	if cw.chunking {
		bw.WriteString(strconv.FormatInt(int64(len(p)), 16))
		bw.WriteString("\r\n")
	}
	n, err := bw.Write(p)
	if cw.chunking && err == nil {
		_, err = bw.WriteString("\r\n")
	}
	return n, err
}

func (cw *chunkWriter) flush() {
	if !cw.wroteHeader {
		cw.writeHeader(nil)
	}
	cw.res.c.bw.Flush()
}

func (cw *chunkWriter) close() {
	if !cw.wroteHeader {
		cw.writeHeader(nil)
	}
	if cw.chunking {
		bw := cw.res.c.bw
		bw.WriteString("0\r\n")
		if t := cw.res.finalTrailers(); t != nil {
			t.Write(bw)
		}
		bw.WriteString("\r\n")
	}
}

func (cw *chunkWriter) del(key string) {
	if cw.res.has(key) && !cw.excluded(key) {
		cw.exclude[cw.nexclude] = key
		cw.nexclude++
	}
}

func (cw *chunkWriter) excluded(key string) bool {
	if strings.HasPrefix(key, http.TrailerPrefix) {
		return true
	}
	for _, k := range cw.exclude[:cw.nexclude] {
		if k == key {
			return true
		}
	}
	return false
}

// writeHeader decides the fields net/http adds and writes the header; p is
// the first part of the body. It follows net/http's chunkWriter.writeHeader
// for an HTTP/1.1 request without a body.
func (cw *chunkWriter) writeHeader(p []byte) {
	cw.wroteHeader = true
	w := cw.res
	keepAlives := !w.c.srv.shuttingDown()
	isHEAD := w.req.Method == http.MethodHead
	var extra extraHeader

	trailers := false
	for _, f := range w.snap {
		if strings.HasPrefix(f.key, http.TrailerPrefix) {
			trailers = true
		}
	}
	for _, v := range w.vals("Trailer") {
		trailers = true
		foreachHeaderElement(v, w.declareTrailer)
	}

	te := w.get("Transfer-Encoding")
	hasTE := te != ""
	if w.handlerDone && !trailers && !hasTE && bodyAllowed(w.status) && !w.has("Content-Length") && (!isHEAD || len(p) > 0) {
		w.contentLength = int64(len(p))
		extra.contentLength = strconv.AppendInt(w.c.clen[:0], int64(len(p)), 10)
	}
	hasCL := w.contentLength != -1

	if w.get("Connection") == "close" || !keepAlives {
		w.closeAfter = true
	}

	code := w.status
	if bodyAllowed(code) {
		if w.get("Content-Encoding") == "" && !w.has("Content-Type") && !hasTE && len(p) > 0 {
			extra.contentType = http.DetectContentType(p)
		}
	} else {
		if code == http.StatusNotModified {
			cw.del("Content-Type")
		}
		cw.del("Content-Length")
		cw.del("Transfer-Encoding")
	}

	if !w.has("Date") {
		extra.date = appendDate(w.c.date[:0], time.Now())
	}

	if hasCL && hasTE && te != "identity" {
		w.c.srv.logf("fastpath: WriteHeader called with both Transfer-Encoding of %q and a Content-Length of %d", te, w.contentLength)
		cw.del("Content-Length")
		hasCL = false
	}

	switch {
	case isHEAD || !bodyAllowed(code) || code == http.StatusNoContent:
		cw.del("Transfer-Encoding")
	case hasCL:
		cw.del("Transfer-Encoding")
	case hasTE && te == "identity":
		cw.chunking = false
		w.closeAfter = true
		cw.del("Transfer-Encoding")
	default:
		cw.chunking = true
		extra.transferEncoding = "chunked"
		if hasTE && te == "chunked" {
			cw.del("Transfer-Encoding")
		}
	}
	if cw.chunking {
		cw.del("Content-Length")
	}

	if w.closeAfter && (!keepAlives || !hasToken(w.get("Connection"), "close")) && !isProtocolSwitch(code, w) {
		cw.del("Connection")
		extra.connection = "close"
	}

	bw := w.c.bw
	writeStatusLine(bw, code)
	for _, f := range w.snap {
		if cw.excluded(f.key) || !httpguts.ValidHeaderFieldName(f.key) {
			continue
		}
		for _, v := range f.vals {
			v = cleanValue(v)
			bw.WriteString(f.key)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	extra.write(bw)
	bw.WriteString("\r\n")
}

// extraHeader holds the fields added to the handler's, written in
// net/http's order.
type extraHeader struct {
	contentType      string
	connection       string
	transferEncoding string
	date             []byte
	contentLength    []byte
}

func (h *extraHeader) write(bw *bufio.Writer) {
	if h.date != nil {
		bw.WriteString("Date: ")
		bw.Write(h.date)
		bw.WriteString("\r\n")
	}
	if h.contentLength != nil {
		bw.WriteString("Content-Length: ")
		bw.Write(h.contentLength)
		bw.WriteString("\r\n")
	}
	for _, f := range [...]struct{ k, v string }{
		{"Content-Type", h.contentType},
		{"Connection", h.connection},
		{"Transfer-Encoding", h.transferEncoding},
	} {
		if f.v != "" {
			bw.WriteString(f.k)
			bw.WriteString(": ")
			bw.WriteString(f.v)
			bw.WriteString("\r\n")
		}
	}
}

var excludedNoBody = map[string]bool{"Content-Length": true, "Transfer-Encoding": true}

// statusLines are the status lines of the codes net/http has a text for.
var statusLines = func() (lines [600]string) {
	for code := range lines {
		if text := http.StatusText(code); text != "" {
			lines[code] = "HTTP/1.1 " + strconv.Itoa(code) + " " + text + "\r\n"
		}
	}
	return lines
}()

func writeStatusLine(bw *bufio.Writer, code int) {
	if code < len(statusLines) && statusLines[code] != "" {
		bw.WriteString(statusLines[code])
		return
	}
	fmt.Fprintf(bw, "HTTP/1.1 %03d status code %d\r\n", code, code)
}

func bodyAllowed(status int) bool {
	switch {
	case status >= 100 && status <= 199, status == 204, status == 304:
		return false
	}
	return true
}

var newlineToSpace = strings.NewReplacer("\n", " ", "\r", " ")

// cleanValue is a field value as net/http writes it: line breaks made
// spaces, surrounding white space trimmed.
func cleanValue(v string) string {
	if v == "" {
		return v
	}
	if strings.ContainsAny(v, "\r\n") {
		v = newlineToSpace.Replace(v)
	}
	if c, d := v[0], v[len(v)-1]; isSpace(c) || isSpace(d) {
		v = textproto.TrimString(v)
	}
	return v
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' }

// hasToken is net/http's: whether token appears in v, case-insensitively,
// between separators.
func hasToken(v, token string) bool {
	if len(token) > len(v) || token == "" {
		return false
	}
	if v == token {
		return true
	}
	for sp := 0; sp <= len(v)-len(token); sp++ {
		if b := v[sp]; b != token[0] && b|0x20 != token[0] {
			continue
		}
		if sp > 0 && !isTokenBoundary(v[sp-1]) {
			continue
		}
		if end := sp + len(token); end != len(v) && !isTokenBoundary(v[end]) {
			continue
		}
		if strings.EqualFold(v[sp:sp+len(token)], token) {
			return true
		}
	}
	return false
}

func isTokenBoundary(b byte) bool { return b == ' ' || b == ',' || b == '\t' }

func isProtocolSwitch(code int, w *response) bool {
	return code == http.StatusSwitchingProtocols && w.get("Upgrade") != "" &&
		httpguts.HeaderValuesContainsToken(w.vals("Connection"), "Upgrade")
}

func foreachHeaderElement(v string, fn func(string)) {
	v = textproto.TrimString(v)
	if v == "" {
		return
	}
	if !strings.Contains(v, ",") {
		fn(v)
		return
	}
	for f := range strings.SplitSeq(v, ",") {
		if f = textproto.TrimString(f); f != "" {
			fn(f)
		}
	}
}

// dateCache holds the Date value of the current second, formatted once.
var dateCache atomic.Pointer[dateEntry]

type dateEntry struct {
	sec int64
	val []byte
}

// appendDate appends t as an HTTP date, from the cache when it is of the
// same second.
func appendDate(dst []byte, t time.Time) []byte {
	sec := t.Unix()
	if e := dateCache.Load(); e != nil && e.sec == sec {
		return append(dst, e.val...)
	}
	e := &dateEntry{sec: sec, val: t.UTC().AppendFormat(nil, http.TimeFormat)}
	dateCache.Store(e)
	return append(dst, e.val...)
}
