package imdsclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
)

// StatusError is an answer other than 200 OK.
type StatusError struct {
	Method, Path string
	Response     *Response
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Response.StatusCode, http.StatusText(e.Response.StatusCode))
}

// StatusCode is the status of the answer.
func (e *StatusError) StatusCode() int { return e.Response.StatusCode }

// ErrNoTTL is a token answer without the X-Aws-Ec2-Metadata-Token-Ttl-Seconds
// header, or with one that is not a number of seconds. The Go and Rust SDKs
// refuse such a token.
var ErrNoTTL = errors.New("token answer has no valid " + HeaderTTL + " header")

// Failure is how a request failed without an HTTP answer.
type Failure int

// The ways a request fails without an answer.
const (
	// Answered: the error is not a transport failure (or there is none).
	Answered Failure = iota
	// NoRoute: the network has no route to the endpoint.
	NoRoute
	// Refused: the connection was refused; nothing listens there.
	Refused
	// ConnectTimeout: the connection was not established in time; the
	// packets went nowhere or a firewall dropped them.
	ConnectTimeout
	// NoAnswer: connected, but no answer came in time. A token answer
	// dropped on its way for want of hop limit looks like this.
	NoAnswer
	// Closed: connected, and the server closed or reset the connection
	// without answering.
	Closed
	// OtherFailure is any other transport error.
	OtherFailure
)

func (f Failure) String() string {
	switch f {
	case Answered:
		return "answered"
	case NoRoute:
		return "no route"
	case Refused:
		return "connection refused"
	case ConnectTimeout:
		return "connect timeout"
	case NoAnswer:
		return "no answer"
	case Closed:
		return "closed without an answer"
	}
	return "failed"
}

// Classify tells how err, from Do, Token or Get, failed without an answer.
// A *StatusError, or nil, is Answered.
func Classify(err error) Failure {
	if err == nil {
		return Answered
	}
	var se *StatusError
	if errors.As(err, &se) || errors.Is(err, ErrNoTTL) {
		return Answered
	}
	var op *net.OpError
	dial := errors.As(err, &op) && op.Op == "dial"
	var ne net.Error
	timeout := errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
	switch {
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.EADDRNOTAVAIL):
		return NoRoute
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused
	case dial && timeout:
		return ConnectTimeout
	case timeout:
		return NoAnswer
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return Closed
	}
	return OtherFailure
}
