package h1

import (
	"errors"
	"io"
	"net"
	"syscall"
)

// Kind says what went wrong in an exchange with a backend, in the terms
// that decide what a proxy does next: retry elsewhere, blame the backend,
// or blame the client.
type Kind uint8

const (
	// KindDial: no connection was made (refused, unreachable, timed out,
	// TLS handshake failed). The backend never saw the request.
	KindDial Kind = iota + 1
	// KindTimeout: no response head within Timeouts.Response. The backend
	// may be acting on the request.
	KindTimeout
	// KindClosed: the backend closed or reset the connection before a
	// response head, or in the middle of a response body.
	KindClosed
	// KindProtocol: the backend's answer broke HTTP/1.1's rules (refused
	// framing, not HTTP at all, a switch of protocols nobody asked for).
	// The connection it came on is closed.
	KindProtocol
	// KindRequestBody: reading the request's body failed; the client's
	// fault, not the backend's (see RequestBodyError).
	KindRequestBody
	// KindCanceled: the request's context ended (the client went away).
	KindCanceled
	// KindRequest: the request cannot be written as plain HTTP/1.1 (see
	// CheckRequest); the client's fault. Nothing was sent.
	KindRequest
)

var kindNames = [...]string{"", "dial", "timeout", "closed", "protocol", "request body", "canceled", "request"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Error is what Client.RoundTrip, and a response body's Read, return when
// an exchange fails. It is classified where it happens, so a caller never
// has to guess from an error's text.
type Error struct {
	Kind Kind
	// Reason says what happened in words for a log line, after "the
	// backend": "reset the connection", "sent both Content-Length and
	// Transfer-Encoding"; for KindRequest, after "the request":
	// "method is not a token".
	Reason string
	// Err is the underlying error, when there is one.
	Err error
}

func (e *Error) Error() string {
	if e.Kind == KindRequest {
		return "h1: request " + e.Reason
	}
	if e.Err != nil {
		return "h1: backend " + e.Reason + ": " + e.Err.Error()
	}
	return "h1: backend " + e.Reason
}

func (e *Error) Unwrap() error { return e.Err }

// Timeout reports whether the exchange failed by a deadline, as
// net.Error's Timeout does.
func (e *Error) Timeout() bool { return e.Kind == KindTimeout || isTimeout(e.Err) }

// Temporary is net.Error's, kept for the interface.
func (e *Error) Temporary() bool { return e.Timeout() }

var _ net.Error = (*Error)(nil)

// RequestBodyError is returned by the Read of a request body that the
// front Server decodes when the client's body is broken: its chunked
// framing is invalid, or the connection ended before the body did. The
// answer to such a request is 400 (unless the client has gone) and the
// connection is closed after it.
type RequestBodyError struct {
	// Reason says what was wrong, in words for a log line.
	Reason string
	Err    error
}

func (e *RequestBodyError) Error() string { return "h1: request body: " + e.Reason }

func (e *RequestBodyError) Unwrap() error { return e.Err }

// ErrBodyAfterHandler is returned by a request body's Read once its
// handler has returned: nothing may read a request's body after the
// exchange is over.
var ErrBodyAfterHandler = errors.New("h1: request body read after its handler returned")

// closedReason words an error of a connection that broke.
func closedReason(err error, during string) string {
	what := "closed the connection"
	if errors.Is(err, syscall.ECONNRESET) {
		what = "reset the connection"
	} else if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, errIncomplete) &&
		!errors.Is(err, syscall.EPIPE) {
		what = "broke the connection"
	}
	return what + " " + during
}

// isClosed reports whether err is the end of a connection: EOF, reset,
// broken pipe.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, errIncomplete) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED)
}
