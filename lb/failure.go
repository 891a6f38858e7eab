package lb

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"syscall"

	"stdlb/lb/h1"
)

// failure is what went wrong in an exchange, in the terms that decide what
// the balancer does next.
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
	// failProtocol: the backend answered something that is not plain
	// HTTP/1.1 (h1 refused its framing).
	failProtocol
	// failClientBody: the client's request body broke (bad framing, cut
	// short): the client's fault, answered 400.
	failClientBody
	// failClientGone: the client went away; nobody is owed an answer.
	failClientGone
	// failClientRequest: the request cannot be sent as plain HTTP/1.1
	// (h1.CheckRequest): the client's fault, answered 400.
	failClientRequest
)

// classify sorts an error of h1.Client, which classifies what happened
// where it happened.
func classify(err error) failure {
	var he *h1.Error
	if !errors.As(err, &he) {
		return failProtocol // not from the client: ReverseProxy refused something
	}
	switch he.Kind {
	case h1.KindDial:
		return failConnect
	case h1.KindTimeout:
		return failTimeout
	case h1.KindClosed:
		return failBroken
	case h1.KindRequestBody:
		var rbe *h1.RequestBodyError
		if !errors.As(err, &rbe) && !isTimeout(err) || errors.Is(err, syscall.ECONNRESET) {
			return failClientGone
		}
		return failClientBody
	case h1.KindCanceled:
		return failClientGone
	case h1.KindRequest:
		return failClientRequest
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
	var he *h1.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused the connection"
	case f == failConnect && isTimeout(err):
		return "did not accept the connection within " + cfg.DialTimeout.String()
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "is unreachable"
	case f == failTimeout:
		return "sent no response headers within " + cfg.ResponseTimeout.String()
	case errors.As(err, &he):
		return he.Reason
	}
	return "failed: " + err.Error()
}

// clientBodyReason says what was wrong with a client's request body.
func clientBodyReason(err error) string {
	var rbe *h1.RequestBodyError
	if errors.As(err, &rbe) {
		return "the request body is invalid: " + rbe.Reason
	}
	return "the request body is invalid: " + err.Error()
}

// retryable reports whether a request that failed with f may be sent to
// another backend: when the backend cannot have acted on it, or when acting
// twice is harmless and there is no body to replay.
func retryable(f failure, req *http.Request) bool {
	switch f {
	case failConnect:
		return true
	case failBroken:
		return (req.Body == nil || req.Body == http.NoBody) && idempotent(req.Method)
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
