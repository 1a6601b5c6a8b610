package bench

import "net/http"

// BareBody is the baseline's answer: as long as the demo instance id, so that
// both servers send a body of the same size for instance-id.
const BareBody = "i-0123456789abcdef0"

var (
	bareBody        = []byte(BareBody)
	bareContentType = []string{"text/plain; charset=utf-8"}
)

// Bare is the baseline handler: it answers every request with BareBody. It
// sets Content-Type itself so that net/http does not sniff the body, which
// keeps the baseline as cheap as a handler can be.
var Bare http.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
	w.Header()["Content-Type"] = bareContentType
	w.Write(bareBody)
})
