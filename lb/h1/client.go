package h1

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"syscall"
	"time"
)

// Client sends requests without a body to one plain-HTTP backend over
// keep-alive connections of its own: the request is written and the
// response read on the calling goroutine, and the connection goes back to
// the client's idle list when the answer's body has been read to its end.
// It is safe for concurrent use; its zero value is not usable: create it
// with NewClient.
//
// Why not http.Transport: it hands each request to a writer goroutine and
// the response back from a reader goroutine, and keeps a reader parked on
// every idle connection. Taking those handoffs, their channel operations
// and the extra reads out of the common case cut the proxy's CPU per
// request by a quarter (bench/RESULTS.md has the figures).
type Client struct {
	addr string
	// Dial, when set, replaces net.Dialer: benchmarks plug in an
	// in-memory backend so they measure the balancer, not the network.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	idle idleConns
}

// NewClient returns a client for the backend at addr (host:port).
func NewClient(addr string) *Client { return &Client{addr: addr} }

// Timeouts bound one request: Dial the connection, Response the wait for
// the response head (zero: none).
type Timeouts struct {
	Dial, Response time.Duration
}

const (
	// MaxIdlePerBackend bounds the idle connections kept per backend.
	MaxIdlePerBackend = 256
	// IdleConnTimeout closes connections idle longer than this, before
	// most servers' own keep-alive timeouts would close them under us.
	IdleConnTimeout = 50 * time.Second
)

// Direct reports whether req can be sent by a Client: no body and an
// idempotent method, so that a request lost on a stale connection can be
// sent again, and no upgrade.
func Direct(req *http.Request) bool {
	if req.Body != nil || req.URL.Opaque != "" {
		return false
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodDelete, http.MethodPut, http.MethodTrace:
	default:
		return false
	}
	_, upgrade := req.Header["Upgrade"]
	return !upgrade
}

// RoundTrip sends req, which must satisfy Direct, and returns the response
// whose head it has read. The Response is built in sc, which must stay
// untouched until the caller is done with it.
func (cl *Client) RoundTrip(req *http.Request, t Timeouts, now time.Time, sc *Scratch) (*http.Response, error) {
	// A connection from the idle list may have been closed by the backend
	// while it waited; that shows only when the request fails on it before a
	// single byte of answer. The request is idempotent and has no body (see
	// Direct), so it is sent again on a fresh connection, as http.Transport
	// does.
	fresh := false
	for {
		c, err := cl.conn(req.Context(), t.Dial, fresh, now)
		if err != nil {
			return nil, err
		}
		resp, err := c.roundTrip(req, t.Response, now, sc)
		if err == nil {
			return resp, nil
		}
		if !c.reused || !c.nothingRead || req.Context().Err() != nil {
			return nil, err
		}
		fresh = true
	}
}

// Close closes the idle connections and keeps none from now on: the
// backend has left the configuration. Requests in flight finish, and their
// connections are closed after.
func (cl *Client) Close() { cl.idle.retire() }

// conn returns an idle connection, or dials one.
func (cl *Client) conn(ctx context.Context, timeout time.Duration, fresh bool, now time.Time) (*h1conn, error) {
	if !fresh {
		if c := cl.idle.get(now); c != nil {
			c.reused = true
			return c, nil
		}
	}
	dial := cl.Dial
	if dial == nil {
		d := net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
		dial = d.DialContext
	}
	nc, err := dial(ctx, "tcp", cl.addr)
	if err != nil {
		return nil, err
	}
	c := &h1conn{nc: nc, cl: cl, bw: bufio.NewWriterSize(nc, 4096)}
	c.lim.r = nc
	c.br = bufio.NewReaderSize(&c.lim, 4096)
	c.abort = func() { c.nc.SetDeadline(aLongTimeAgo) }
	return c, nil
}

// aLongTimeAgo is a deadline in the past: setting it interrupts a blocked
// read or write at once.
var aLongTimeAgo = time.Unix(1, 0)

// h1conn is one keep-alive connection to a backend. It is used by one
// request at a time: taken from the backend's idle list (or dialled),
// written, read, and put back when the answer's body has been read to the
// end.
type h1conn struct {
	nc        net.Conn
	cl        *Client
	br        *bufio.Reader
	bw        *bufio.Writer
	abort     func() // unblocks reads and writes when the request is cancelled
	idleSince time.Time

	lim         headLimit // under br: bounds response heads
	reused      bool      // taken from the idle list
	nothingRead bool      // the last request failed before any answer byte
}

// maxHeadBytes bounds a response head, as http.Transport's default
// MaxResponseHeaderBytes does: a backend cannot make the balancer buffer
// more than this before the body starts.
const maxHeadBytes = 10 << 20

// errHeadTooLarge is the error for a response head over maxHeadBytes.
var errHeadTooLarge = errors.New("lb: response head larger than 10 MiB")

// headLimit is the reader under a connection's bufio.Reader: while a
// response head is read it lets through at most n more bytes; n < 0 means
// no limit, for bodies.
type headLimit struct {
	r io.Reader
	n int64
}

func (l *headLimit) Read(p []byte) (int, error) {
	if l.n < 0 {
		return l.r.Read(p)
	}
	if l.n == 0 {
		return 0, errHeadTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// roundTrip writes req and reads the answer's head; the body is read by the
// caller through the returned Response.
func (c *h1conn) roundTrip(req *http.Request, timeout time.Duration, now time.Time, rs *Scratch) (*http.Response, error) {
	c.nothingRead = false
	stop := context.AfterFunc(req.Context(), c.abort)
	if err := c.writeRequest(req); err != nil {
		stop()
		c.nothingRead = true
		c.nc.Close()
		return nil, err
	}
	if timeout > 0 {
		c.nc.SetReadDeadline(now.Add(timeout))
	}
	// Wait for the first byte apart from parsing, to tell a connection the
	// backend had already closed (nothing read) from a broken answer.
	c.lim.n = maxHeadBytes
	_, err := c.br.Peek(1)
	if err != nil {
		c.nothingRead = err == io.EOF || errors.Is(err, syscall.ECONNRESET)
	}
	var resp *http.Response
	if err == nil {
		resp, err = c.readResponse(req, rs)
	}
	c.lim.n = -1
	if err == nil && c.reused && resp.StatusCode == http.StatusRequestTimeout {
		// Some servers write a 408 on a keep-alive connection before closing
		// it for idleness; it answers no request of ours. http.Transport
		// discards it the same way. The request goes again on a fresh
		// connection (it is idempotent: see direct); this one is closed below.
		resp, err = nil, errStale408
		c.nothingRead = true
	}
	if err != nil {
		stop()
		c.nc.Close()
		if isTimeout(err) && req.Context().Err() == nil {
			err = errResponseTimeout
		}
		return nil, err
	}
	if timeout > 0 {
		c.nc.SetReadDeadline(time.Time{})
	}
	b := &rs.body
	if resp != &rs.resp { // read by http.ReadResponse
		*b = h1body{mode: bodyStd, std: resp.Body}
	}
	b.c, b.stop, b.reuse, b.now = c, stop, !resp.Close, now
	resp.Body = b
	return resp, nil
}

// errStale408 stands for a 408 found waiting on a reused connection.
var errStale408 = errors.New("lb: 408 on an idle connection")

// errResponseTimeout is the error for a backend that sent no response
// headers in time; it is a net.Error whose Timeout is true.
var errResponseTimeout error = &timeoutError{"timeout awaiting response headers"}

type timeoutError struct{ msg string }

func (e *timeoutError) Error() string   { return e.msg }
func (e *timeoutError) Timeout() bool   { return true }
func (e *timeoutError) Temporary() bool { return true }

// readResponse reads the final response head, passing 1xx informational
// answers (103 Early Hints) to ReverseProxy's trace hook as http.Transport
// does.
func (c *h1conn) readResponse(req *http.Request, rs *Scratch) (*http.Response, error) {
	if resp, ok, err := fastHead(c.br, req, rs); ok || err != nil {
		return resp, err
	}
	for range maxInterim + 1 {
		resp, err := http.ReadResponse(c.br, req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			// The direct path never asks for an upgrade (see direct).
			return nil, errors.New("lb: backend switched protocols unasked")
		}
		if resp.StatusCode >= 200 {
			return resp, nil
		}
		if trace := httptrace.ContextClientTrace(req.Context()); trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
				return nil, err
			}
		}
	}
	return nil, errors.New("lb: backend sent more than 5 informational (1xx) answers")
}

// maxInterim bounds the 1xx answers read before a final one, as
// http.Transport does.
const maxInterim = 5

// writeRequest writes req's head as http.Request.Write would for a request
// without a body, without its per-request allocations.
func (c *h1conn) writeRequest(req *http.Request) error {
	w := c.bw
	w.WriteString(req.Method)
	w.WriteByte(' ')
	path := req.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	w.WriteString(path)
	if req.URL.RawQuery != "" || req.URL.ForceQuery {
		w.WriteByte('?')
		w.WriteString(req.URL.RawQuery)
	}
	w.WriteString(" HTTP/1.1\r\nHost: ")
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	writeValue(w, host)
	w.WriteString("\r\n")
	if req.Method == http.MethodPut {
		// A PUT without a body still says so; some servers answer 411
		// Length Required otherwise. http.Request.Write does the same.
		w.WriteString("Content-Length: 0\r\n")
	}
	for k, vv := range req.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		}
		if !validFieldName(k) {
			continue
		}
		for _, v := range vv {
			if v == "" && k == "User-Agent" {
				continue // ReverseProxy's way of asking for no User-Agent
			}
			w.WriteString(k)
			w.WriteString(": ")
			writeValue(w, v)
			w.WriteString("\r\n")
		}
	}
	w.WriteString("\r\n")
	return w.Flush()
}

// h1body is a response body read straight from its connection. At the end
// of the body the connection goes back to the backend's idle list; closed
// early, or broken, the connection is closed, because the next answer on it
// could not be found.
type h1body struct {
	c     *h1conn
	stop  func() bool
	reuse bool
	now   time.Time
	done  bool

	mode      int           // bodyStd, bodyNone, ... (h1resp.go)
	std       io.ReadCloser // bodyStd: net/http's reader
	remaining int64         // bodyFixed: bytes still to come
	chunked   io.Reader     // bodyChunked
	resp      *http.Response
}

func (b *h1body) Read(p []byte) (n int, err error) {
	if b.done {
		return 0, io.EOF
	}
	if b.mode == bodyStd {
		n, err = b.std.Read(p)
	} else {
		n, err = b.readFraming(p)
	}
	if err == io.EOF {
		b.finish(b.mode != bodyUntilClose)
	} else if err != nil {
		b.finish(false)
	}
	return n, err
}

func (b *h1body) Close() error {
	if !b.done {
		b.finish(false)
	}
	return nil
}

// finish releases the connection: back to the idle list when the body was
// read to its end and the backend keeps the connection open, closed
// otherwise.
func (b *h1body) finish(complete bool) {
	b.done = true
	if !b.stop() {
		// The request was cancelled and the abort has run or is running: the
		// connection's deadline is in the past and it cannot be reused.
		complete = false
	}
	c := b.c
	if complete && b.reuse {
		c.idleSince = time.Now()
		c.reused = false
		if c.cl.idle.put(c) {
			return
		}
	}
	c.nc.Close()
}
