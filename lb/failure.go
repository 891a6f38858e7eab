package lb

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
)

// failure is what went wrong talking to a backend, in the terms that decide
// what the balancer does next.
type failure uint8

const (
	failNone failure = iota
	// failConnect: no connection was made (refused, unreachable, dial
	// timeout). The backend never saw the request, so any request may be
	// retried elsewhere, and the backend is marked down at once.
	failConnect
	// failTimeout: connected, but no response headers within ResponseTimeout.
	// The backend may be acting on the request: answer 504, do not retry.
	failTimeout
	// failBroken: the connection broke before a response (reset, closed).
	// The backend may have seen the request, so only an idempotent request
	// without a body is retried.
	failBroken
	// failProtocol: the backend answered something that is not HTTP.
	failProtocol
)

// classify sorts a transport error.
func classify(err error) failure {
	var op *net.OpError
	switch {
	case errors.As(err, &op) && op.Op == "dial":
		return failConnect
	case isTimeout(err):
		return failTimeout
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		// http.Transport's error for a pooled connection the backend closed
		// before the request went out; it wraps nothing to test for.
		strings.Contains(err.Error(), "server closed idle connection"):
		return failBroken
	}
	return failProtocol
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)
}

// describe says what a backend did, in words for the log:
// "backend X <describe>".
func describe(err error, f failure, cfg *Config) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused the connection"
	case f == failConnect && isTimeout(err):
		return "did not accept the connection within " + cfg.DialTimeout.String()
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "is unreachable"
	case f == failTimeout:
		return "sent no response headers within " + cfg.ResponseTimeout.String()
	case errors.Is(err, syscall.ECONNRESET):
		return "reset the connection before answering"
	case f == failBroken:
		return "closed the connection before answering"
	case f == failConnect:
		return "could not be connected to (" + err.Error() + ")"
	}
	return "failed: " + err.Error()
}

// retryable reports whether a request that failed with f may be sent to
// another backend: when the backend cannot have acted on it, or when acting
// twice is harmless and there is no body to replay.
func retryable(f failure, req *http.Request) bool {
	switch f {
	case failConnect:
		return true
	case failBroken:
		return req.Body == nil && idempotent(req.Method)
	}
	return false
}

// idempotent reports whether RFC 9110 section 9.2.2 calls method idempotent.
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace,
		http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// StatusClientClosed is logged, never sent, when the client went away
// before its answer was complete, as nginx's 499 is.
const StatusClientClosed = 499

// WriteError answers with status and a small JSON body {"error": msg}.
// Every error the balancer itself answers goes through here, so clients can
// always parse an error body.
func WriteError(w http.ResponseWriter, status int, msg string) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // a JSON body, not HTML: keep "<token>" readable
	enc.Encode(struct {
		Error string `json:"error"`
	}{msg})
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	h["Cache-Control"] = []string{"no-store"}
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}
