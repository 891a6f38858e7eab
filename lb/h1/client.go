package h1

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"time"
)

// Client sends requests to one backend over HTTP/1.1 connections of its
// own, kept alive between requests in an idle pool. It sends every kind
// of request: without a body, with a body (streamed while the answer is
// read, so a backend may answer early), and protocol upgrades. It is safe
// for concurrent use; create it with NewClient and set its fields before
// the first request.
//
// A connection goes back to the pool only after a plain, fully consumed
// exchange, and is checked for bytes that arrived while it sat idle before
// it is used again: see the package documentation.
//
// Why not http.Transport: it hands each request to a writer goroutine and
// the response back from a reader goroutine, and keeps a reader parked on
// every idle connection; it also reads answers more leniently than a
// proxy may. Writing the request and reading the answer on the calling
// goroutine (a body is written from a goroutine of its own) cut the
// proxy's CPU per request by a quarter (bench/RESULTS.md has the figures).
type Client struct {
	// Dial, when set, replaces net.Dialer: benchmarks plug in an
	// in-memory backend so they measure the balancer, not the network.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLS, when set, makes every connection a TLS client with this
	// configuration: the backend is https.
	TLS *tls.Config
	// OnDiscard, if set, is told when a connection is closed for a reason
	// an operator should hear of: bytes the backend sent that no request
	// asked for. It is called from many goroutines at once.
	OnDiscard func(reason string)

	addr string
	idle idleConns
}

// NewClient returns a client for the backend at addr (host:port).
func NewClient(addr string) *Client { return &Client{addr: addr} }

// Timeouts bound one request: Dial the connection (TLS handshake
// included); Response the wait for the response head, counted from Start
// (zero: when RoundTrip begins; a caller that has just read the clock
// saves a read); ExpectContinue the wait for a 100 Continue before the
// body is sent anyway (default 1s); BodyIdle the longest the backend may
// send nothing in the middle of a response body (at least that, at most
// half as long again: the deadline is moved only every BodyIdle/2, so that
// a read of a flowing body costs no timer update). Zero Dial, Response and
// BodyIdle mean none.
type Timeouts struct {
	Dial, Response, ExpectContinue, BodyIdle time.Duration
	Start                                    time.Time
}

const (
	// MaxIdlePerBackend bounds the idle connections kept per backend.
	MaxIdlePerBackend = 256
	// IdleConnTimeout closes connections idle longer than this, before
	// most servers' own keep-alive timeouts would close them under us.
	IdleConnTimeout = 50 * time.Second
)

// RoundTrip sends req and returns the response whose head it has read;
// the caller reads the body and must close it. req.URL gives the path and
// query, req.Host (else req.URL.Host) the Host field; req.ContentLength
// says how the body is framed (-1: chunked). The Response is built in sc,
// which must stay untouched until the caller is done with it. Errors are
// *Error; a request CheckRequest refuses is never sent.
func (cl *Client) RoundTrip(req *http.Request, t Timeouts, sc *Scratch) (*http.Response, error) {
	if err := CheckRequest(req); err != nil {
		return nil, err
	}
	// A connection from the idle pool may have been closed by the backend
	// just as it was taken; that shows only when the request fails on it
	// before a single byte of answer. A request that may be sent twice
	// (replayable), and of whose body nothing was taken, is sent again on a
	// fresh connection, as http.Transport does.
	fresh := false
	for {
		c, err := cl.conn(req.Context(), t.Dial, fresh)
		if err != nil {
			return nil, err
		}
		resp, err := c.roundTrip(req, t, sc)
		if err == nil {
			return resp, nil
		}
		if fresh || !c.reused || !c.nothingRead || c.bodyTaken.Load() || !replayable(req) || req.Context().Err() != nil {
			return nil, err
		}
		fresh = true
	}
}

// replayable reports whether req may reach the backend twice: its method
// is idempotent (RFC 9110 section 9.2.2), or it carries an idempotency key,
// as http.Transport decides. The backend may have acted on a request whose
// connection closed before an answer.
func replayable(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	_, key := req.Header["Idempotency-Key"]
	_, xkey := req.Header["X-Idempotency-Key"]
	return key || xkey
}

// CloseStale closes the idle connections unused for IdleConnTimeout. The
// pool lets them go only when it is used; a caller with a ticker of its own
// (the balancer's health checks) calls this so that a burst's connections
// do not stay open for as long as the backend keeps quiet.
func (cl *Client) CloseStale(now time.Time) { cl.idle.closeStale(now) }

// Close closes the idle connections and keeps none from now on: the
// backend has left the configuration. Requests in flight finish, and their
// connections are closed after.
func (cl *Client) Close() { cl.idle.retire() }

// conn returns a quiet idle connection, or dials one.
func (cl *Client) conn(ctx context.Context, timeout time.Duration, fresh bool) (*clientConn, error) {
	for !fresh {
		c := cl.idle.get(time.Now())
		if c == nil {
			break
		}
		if c.quiet() {
			c.reused = true
			return c, nil
		}
		c.nc.Close()
	}
	nc, err := cl.dial(ctx, timeout)
	if err != nil {
		if ctx.Err() != nil {
			return nil, &Error{Kind: KindCanceled, Reason: "was being connected to when the request was canceled", Err: err}
		}
		return nil, &Error{Kind: KindDial, Reason: dialReason(err), Err: err}
	}
	c := &clientConn{nc: nc, cl: cl, bw: bufio.NewWriterSize(nc, 4096)}
	c.lim.r, c.lim.n = nc, -1
	c.br = bufio.NewReaderSize(&c.lim, 4096)
	c.abort = func() { c.nc.SetDeadline(aLongTimeAgo) }
	return c, nil
}

func (cl *Client) dial(ctx context.Context, timeout time.Duration) (net.Conn, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var nc net.Conn
	var err error
	if cl.Dial != nil {
		nc, err = cl.Dial(ctx, "tcp", cl.addr)
	} else {
		d := net.Dialer{KeepAlive: 30 * time.Second}
		nc, err = d.DialContext(ctx, "tcp", cl.addr)
	}
	if err != nil || cl.TLS == nil {
		return nc, err
	}
	tc := tls.Client(&recordConn{Conn: nc}, cl.TLS)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, &tlsError{err}
	}
	return tc, nil
}

// tlsError is a TLS handshake that failed.
type tlsError struct{ err error }

func (e *tlsError) Error() string { return "TLS handshake: " + e.err.Error() }
func (e *tlsError) Unwrap() error { return e.err }

// dialReason words a failed dial.
func dialReason(err error) string {
	var te *tlsError
	switch {
	case errors.As(err, &te):
		return "failed the TLS handshake"
	case isTimeout(err):
		return "did not accept the connection in time"
	}
	return "could not be connected to"
}
