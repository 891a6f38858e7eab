package h1

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// clientConn is one connection to a backend. It carries one request at a
// time: taken from the idle pool (or dialled), the request written, the
// answer read, and put back only when the answer's body has been read to
// its end and nothing about the exchange was out of the ordinary (see
// respBody.finish).
type clientConn struct {
	nc        net.Conn
	cl        *Client
	br        *bufio.Reader
	bw        *bufio.Writer
	lim       headLimit // under br: bounds response heads
	abort     func()    // unblocks reads and writes when the request is cancelled
	idleSince time.Time // set when put in the idle pool
	peek      *peeker   // made by quiet at the connection's first reuse

	// Per request, owned by the goroutine that called RoundTrip.
	hasWriter   bool // a body writer was started: the fields under mu are in use
	reused      bool // taken from the idle pool
	nothingRead bool // the request failed before any byte of answer
	unsent      bool // the request had a body that was never sent: the backend may wait for it

	// bodyTaken is set when the body's writer starts: from then on the
	// request cannot be sent again. sentAll is set by the writer just
	// before the flush of the body's last bytes: a backend that read them
	// all and then hung up did so after the body, not during it.
	bodyTaken, sentAll atomic.Bool

	// The body writer's state, shared by the writer goroutine and the
	// goroutine reading the answer; mu guards it.
	mu       sync.Mutex
	writing  bool  // a body writer is running
	writeErr error // why the writer stopped early
	headSeen bool  // the final answer's head was read: a writer that fails now leaves the answer be
}

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

// maxInterim bounds the interim (1xx) answers read before a final one, as
// http.Transport does.
const maxInterim = 5

// bodyReadError is a failure to read the request's body, which is the
// client's doing, not the backend's.
type bodyReadError struct{ err error }

func (e *bodyReadError) Error() string { return "reading the request body: " + e.err.Error() }
func (e *bodyReadError) Unwrap() error { return e.err }

// roundTrip writes req, starts its body on its way, and reads the answer's
// head; the body is read by the caller through the returned Response.
func (c *clientConn) roundTrip(req *http.Request, t Timeouts, sc *Scratch) (*http.Response, error) {
	c.nothingRead, c.unsent = false, false
	c.bodyTaken.Store(false)
	c.sentAll.Store(false)
	if c.hasWriter {
		// The last request's writer has returned (the connection was
		// pooled only after it did): nothing else touches these now.
		c.writing, c.writeErr, c.headSeen, c.hasWriter = false, nil, false, false
	}

	ctx := req.Context()
	stop := context.AfterFunc(ctx, c.abort)
	body := req.Body
	if body == http.NoBody {
		body = nil
	}
	_, expectHeader := req.Header["Expect"]
	expect := body != nil && expectHeader && hasToken(req.Header.Get("Expect"), "100-continue")
	c.writeHead(req, body != nil)
	if err := c.bw.Flush(); err != nil {
		stop()
		c.nothingRead = true // a connection the backend closed while it sat idle
		ferr := c.failure(ctx, err, t)
		c.nc.Close()
		return nil, ferr
	}
	if body != nil && !expect {
		c.startWriter(body, req.ContentLength)
	}
	resp, p, err := c.readAnswer(req, body, expect, t, sc)
	if err == nil && c.reused && body == nil && resp.StatusCode == http.StatusRequestTimeout {
		// Some servers write a 408 on a keep-alive connection before they
		// close it for idleness; it answers no request of ours, and
		// http.Transport discards it too. RoundTrip sends the request again.
		err, c.nothingRead = errStaleTimeout, true
	}
	if err != nil {
		stop()
		ferr := c.failure(ctx, err, t) // before Close, whose errors the writer would report next
		c.nc.Close()
		return nil, ferr
	}
	if c.hasWriter {
		c.mu.Lock()
		c.headSeen = true
		c.mu.Unlock()
	}
	if t.BodyIdle <= 0 || resp.StatusCode == http.StatusSwitchingProtocols {
		// Bodies may take their time, and an upgraded connection may idle.
		// Otherwise the response deadline stays until the body's first read
		// that may block sets its own (respBody.armIdle): a body that came
		// with its head costs no timer update.
		c.nc.SetReadDeadline(time.Time{})
		if ctx.Err() != nil {
			c.abort() // cancelled while the deadline was cleared: keep it cancelled
		}
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		stop() // the connection is the caller's now, to relay and close
		resp.Body = &upgradeBody{c}
		return resp, nil
	}
	b := &sc.body
	*b = respBody{c: c, stop: stop, framing: p.framing, left: p.length, resp: resp, reuse: !p.closeConn, idle: t.BodyIdle}
	if p.framing == respChunked {
		b.ch = chunkedReader{br: c.br, trailerLimit: maxResponseHead, trailerTo: &resp.Trailer}
	}
	resp.Body = b
	return resp, nil
}

// readAnswer reads heads until the final one: it relays interim answers
// (103 Early Hints) to the request's trace as http.Transport does, and
// starts the body's writer on a 100 Continue, or when none comes within
// t.ExpectContinue.
func (c *clientConn) readAnswer(req *http.Request, body io.Reader, expect bool, t Timeouts, sc *Scratch) (*http.Response, parsedResponse, error) {
	var deadline time.Time
	if t.Response > 0 {
		start := t.Start
		if start.IsZero() {
			start = time.Now()
		}
		deadline = start.Add(t.Response)
	}
	_, upgrade := req.Header["Upgrade"]
	waiting := expect // for a 100 Continue
	for interim := 0; ; interim++ {
		if interim > maxInterim {
			return nil, parsedResponse{}, protocolf("more than 5 interim (1xx) answers")
		}
		c.lim.n = maxResponseHead // for this head; readHead bounds it too
		if waiting {
			wait := t.ExpectContinue
			if wait <= 0 {
				wait = time.Second
			}
			until := time.Now().Add(wait)
			if !deadline.IsZero() && deadline.Before(until) {
				until = deadline
			}
			c.nc.SetReadDeadline(until)
			if _, err := c.br.Peek(1); err != nil {
				c.lim.n = -1
				if !isTimeout(err) || req.Context().Err() != nil || !deadline.IsZero() && !time.Now().Before(deadline) {
					c.nothingRead = interim == 0 && isClosed(err)
					return nil, parsedResponse{}, err
				}
				waiting = false // no answer yet: send the body anyway
				c.startWriter(body, req.ContentLength)
			}
		}
		c.nc.SetReadDeadline(deadline)
		if _, err := c.br.Peek(1); err != nil {
			c.lim.n = -1
			c.nothingRead = interim == 0 && isClosed(err)
			return nil, parsedResponse{}, err
		}
		head, err := readHead(c.br, sc.head, maxResponseHead, false)
		c.lim.n = -1
		switch {
		case err == errBareLF:
			return nil, parsedResponse{}, protocolf("a head line that ends in a bare LF")
		case err == errHeadTooLarge, err == errStartLineTooLarge:
			return nil, parsedResponse{}, protocolf("a response head larger than 64 KiB")
		case err == errEmptyLineFirst:
			return nil, parsedResponse{}, protocolf("an empty line where the status line should be")
		case err != nil:
			return nil, parsedResponse{}, err
		}
		if cap(head) <= maxKeptHead {
			sc.head = head
		} else {
			sc.head = nil // parseResponse copies what it keeps
		}
		p, err := parseResponse(head, req.Method, sc)
		if err != nil {
			return nil, p, err
		}
		resp := &sc.resp
		resp.Request = req
		switch code := resp.StatusCode; {
		case code == http.StatusContinue:
			if waiting {
				waiting = false
				c.startWriter(body, req.ContentLength)
			}
			continue // unasked, it means nothing (RFC 9110 section 15.2)
		case code == http.StatusSwitchingProtocols:
			if !upgrade {
				return nil, p, protocolf("switched protocols though the request asked for no upgrade")
			}
			if !webSocketAccepted(req, resp.Header) {
				return nil, p, protocolf("switched to WebSocket without the Sec-WebSocket-Accept that answers the request's key")
			}
		case code < 200:
			if resp.ProtoMinor == 0 {
				return nil, p, protocolf("an interim (1xx) answer in HTTP/1.0")
			}
			if trace := httptrace.ContextClientTrace(req.Context()); trace != nil && trace.Got1xxResponse != nil {
				if err := trace.Got1xxResponse(code, textproto.MIMEHeader(resp.Header)); err != nil {
					return nil, p, err
				}
			}
			continue
		}
		if waiting {
			c.unsent = true // a final answer before 100 Continue: the body stays with the client
		}
		return resp, p, nil
	}
}

// failure classifies why an exchange failed before its answer's head.
func (c *clientConn) failure(ctx context.Context, err error, t Timeouts) *Error {
	var werr error
	if c.hasWriter {
		c.mu.Lock()
		werr = c.writeErr
		c.mu.Unlock()
	}
	if errors.Is(werr, net.ErrClosed) {
		werr = nil // the writer met the close that followed the reader's failure: not a cause
	}
	var be *bodyReadError
	var pe *protocolError
	switch {
	case ctx.Err() != nil:
		return &Error{Kind: KindCanceled, Reason: "was waited for when the request was canceled", Err: err}
	case errors.As(werr, &be):
		return &Error{Kind: KindRequestBody, Reason: "was sent a request body that broke off", Err: be.err}
	case errors.As(err, &pe):
		return &Error{Kind: KindProtocol, Reason: "sent an invalid response: " + pe.msg}
	case errors.Is(err, errStaleTimeout):
		return &Error{Kind: KindClosed, Reason: "answered 408 on an idle connection", Err: err}
	case isTimeout(err):
		return &Error{Kind: KindTimeout, Reason: fmt.Sprintf("sent no response head within %v", t.Response), Err: err}
	case werr != nil || c.bodyTaken.Load() && !c.sentAll.Load():
		if werr != nil {
			err = werr
		}
		return &Error{Kind: KindClosed, Reason: closedReason(err, "while receiving the request body"), Err: err}
	}
	return &Error{Kind: KindClosed, Reason: closedReason(err, "before answering"), Err: err}
}

// errStaleTimeout is a 408 found on a reused connection: some servers
// write one before they close a keep-alive connection for idleness. It
// answers no request of ours (http.Transport discards it too).
var errStaleTimeout = errors.New("h1: 408 on an idle connection")

// writeHead writes req's head into the write buffer: origin-form target,
// Host, the header fields, and the body's framing.
func (c *clientConn) writeHead(req *http.Request, hasBody bool) {
	w := c.bw
	w.WriteString(req.Method)
	w.WriteByte(' ')
	if req.URL.Path == "*" && req.Method == http.MethodOptions {
		w.WriteByte('*')
	} else {
		// The path as the client sent it: EscapedPath re-encodes the
		// decoded path when the raw one has a byte it would escape (any
		// byte over 0x7f, which Server accepts), and so turns "..%2f" into
		// "../" and "%3b" into ";", a path the backend was not asked for.
		// CheckRequest has made sure RawPath holds no space or control.
		path := req.URL.RawPath
		if path == "" || !rawPathMatches(path, req.URL.Path) {
			path = req.URL.EscapedPath()
		}
		if path == "" {
			path = "/"
		}
		w.WriteString(path)
		if req.URL.RawQuery != "" || req.URL.ForceQuery {
			w.WriteByte('?')
			w.WriteString(req.URL.RawQuery)
		}
	}
	w.WriteString(" HTTP/1.1\r\nHost: ")
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	writeValue(w, host)
	w.WriteString("\r\n")
	switch {
	case hasBody && req.ContentLength > 0:
		var b [24]byte
		w.WriteString("Content-Length: ")
		w.Write(appendInt(b[:0], req.ContentLength))
		w.WriteString("\r\n")
	case hasBody:
		w.WriteString("Transfer-Encoding: chunked\r\n")
	case req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch:
		// No body still says so; some servers answer 411 Length Required
		// otherwise. http.Request.Write does the same.
		w.WriteString("Content-Length: 0\r\n")
	}
	for k, vv := range req.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		case "Expect":
			if !hasBody {
				continue
			}
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
}

// webSocketGUID is RFC 6455's, which Sec-WebSocket-Accept hashes with the
// request's key.
const webSocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// webSocketAccepted reports whether a 101 to req may be taken: req asks
// for another protocol than WebSocket, or the answer's Sec-WebSocket-Accept
// answers req's Sec-WebSocket-Key (RFC 6455 section 4.2.2). A 101 without
// it comes from something that did not read the key: an endpoint that
// passes on a status code it was given, as in the WebSocket smuggling
// literature. Taken, it would open a raw tunnel to the backend, and every
// request sent through it would pass the rate limiter and the access log
// unseen. A WebSocket client fails such a connection too (section 4.1).
func webSocketAccepted(req *http.Request, h http.Header) bool {
	if !asciiEqualFold(trimOWS(req.Header.Get("Upgrade")), "websocket") {
		return true
	}
	key := req.Header.Get("Sec-Websocket-Key")
	if key == "" {
		return false
	}
	sum := sha1.Sum([]byte(key + webSocketGUID))
	return h.Get("Sec-Websocket-Accept") == base64.StdEncoding.EncodeToString(sum[:])
}

// rawPathMatches reports whether raw decodes to path: whether the URL's
// RawPath is still its Path's spelling (nothing has set Path alone).
func rawPathMatches(raw, path string) bool {
	p, err := url.PathUnescape(raw)
	return err == nil && p == path
}

func appendInt(b []byte, n int64) []byte {
	if n == 0 {
		return append(b, '0')
	}
	var d [20]byte
	i := len(d)
	for n > 0 {
		i--
		d[i] = byte('0' + n%10)
		n /= 10
	}
	return append(b, d[i:]...)
}

// copyBuffers are the body writers' buffers.
var copyBuffers = sync.Pool{New: func() any { return new([32 << 10]byte) }}

// startWriter starts the goroutine that sends the request's body while the
// answer is read. It returns when the body has been sent or failed; a
// failure it causes closes the connection if no answer has come yet (the
// reader then reports it), and half-closes it otherwise, so a backend
// waiting for the rest of the body learns there is none.
//
// The body is marked taken here, before the goroutine exists: from now on
// the request must not be sent again on another connection, since this
// writer may read from the body whenever it runs. (Marked by the goroutine
// itself, a failure seen before it was scheduled let RoundTrip start a
// second writer on the same body, and the first then took its start.)
func (c *clientConn) startWriter(body io.Reader, length int64) {
	c.bodyTaken.Store(true)
	c.hasWriter = true
	c.mu.Lock()
	c.writing = true
	c.mu.Unlock()
	go c.writeBody(body, length)
}

func (c *clientConn) writeBody(body io.Reader, length int64) {
	buf := copyBuffers.Get().(*[32 << 10]byte)
	err := c.copyBody(body, length, buf[:])
	copyBuffers.Put(buf)
	c.mu.Lock()
	c.writing = false
	c.writeErr = err
	closeNow := err != nil && !c.headSeen
	c.mu.Unlock()
	switch {
	case closeNow:
		c.nc.Close() // wakes the reader, which reports the failure
	case err != nil:
		if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}
}

// copyBody writes length bytes of body (chunked when length is not
// positive), flushing what each read of the body gave, so that a streamed
// upload streams on.
func (c *clientConn) copyBody(body io.Reader, length int64, buf []byte) error {
	w := c.bw
	for left := length; length <= 0 || left > 0; {
		p := buf
		if length > 0 && int64(len(p)) > left {
			p = p[:left]
		}
		n, rerr := body.Read(p)
		if n > 0 {
			var werr error
			if length > 0 {
				_, werr = w.Write(p[:n])
				left -= int64(n)
				if left == 0 {
					c.sentAll.Store(true)
				}
			} else {
				werr = writeChunk(w, p[:n])
			}
			if werr == nil {
				werr = w.Flush()
			}
			if werr != nil {
				return werr
			}
		}
		switch {
		case rerr == io.EOF && length > 0 && left > 0:
			return &bodyReadError{io.ErrUnexpectedEOF}
		case rerr == io.EOF:
			if length <= 0 {
				w.WriteString("0\r\n\r\n") // request trailers are not forwarded
				c.sentAll.Store(true)
				return w.Flush()
			}
			return nil
		case rerr != nil:
			return &bodyReadError{rerr}
		}
	}
	return nil
}

// writerDone reports whether no writer runs and none failed.
func (c *clientConn) writerDone() bool {
	if !c.hasWriter {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.writing && c.writeErr == nil
}

// respBody is a response body read straight from its connection. At the
// end of the body the connection goes back to the idle pool; closed
// early, or broken, the connection is closed, because the next answer on
// it could not be found.
type respBody struct {
	c       *clientConn
	stop    func() bool
	framing respFraming
	left    int64 // respFixed: bytes still to come
	ch      chunkedReader
	resp    *http.Response
	reuse   bool // the head allows the connection to carry another request
	done    bool
	idle    time.Duration // Timeouts.BodyIdle
	rearm   time.Time     // when the read deadline is next moved
}

func (b *respBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	if b.idle > 0 && (b.framing == respChunked || b.c.br.Buffered() == 0 && b.mayWait()) {
		// This read may wait for the backend (a chunked one may, even with
		// bytes buffered: the rest of a line or a chunk).
		b.armIdle()
	}
	n, err := b.readFraming(p)
	switch {
	case err == io.EOF:
		b.finish(b.framing != respUntilClose)
	case err != nil:
		b.finish(false)
		err = b.bodyError(err)
	}
	return n, err
}

// armIdle makes a backend that sends nothing for b.idle in the middle of
// its body fail the read, as nginx's proxy_read_timeout does: otherwise a
// stalled backend holds the client, the connection and the goroutine for
// as long as the client waits. The deadline is set one and a half idle
// periods ahead and moved only once half a period has passed, so a wait
// that begins before the next move still has a whole period.
func (b *respBody) armIdle() {
	now := time.Now()
	if now.Before(b.rearm) {
		return
	}
	b.rearm = now.Add(b.idle / 2)
	b.c.nc.SetReadDeadline(now.Add(b.idle + b.idle/2))
	if req := b.resp.Request; req != nil && req.Context().Err() != nil {
		b.c.abort() // cancelled just before the deadline moved: keep it cancelled
	}
}

// mayWait reports whether the body has bytes still to come: not an answer
// without a body (HEAD, 204, 304) or a fixed one read to its end.
func (b *respBody) mayWait() bool {
	return b.framing == respUntilClose || b.framing == respFixed && b.left > 0
}

// readFraming reads the next part of the body as its framing says.
func (b *respBody) readFraming(p []byte) (int, error) {
	br := b.c.br
	switch b.framing {
	case respFixed:
		if b.left == 0 {
			return 0, io.EOF
		}
		if int64(len(p)) > b.left {
			p = p[:b.left]
		}
		n, err := br.Read(p)
		b.left -= int64(n)
		if err == nil && b.left == 0 {
			err = io.EOF
		} else if err == io.EOF {
			err = errIncomplete
		}
		return n, err
	case respChunked:
		return b.ch.Read(p)
	case respUntilClose:
		return br.Read(p)
	}
	return 0, io.EOF
}

// bodyError classifies a failure in the middle of a response body.
func (b *respBody) bodyError(err error) error {
	var fe *framingError
	switch {
	case errors.As(err, &fe):
		return &Error{Kind: KindProtocol, Reason: "sent a body with " + fe.Error(), Err: err}
	case b.resp.Request != nil && b.resp.Request.Context().Err() != nil:
		return &Error{Kind: KindCanceled, Reason: "was sending a body when the request was canceled", Err: err}
	case b.idle > 0 && isTimeout(err):
		return &Error{Kind: KindTimeout, Reason: "sent nothing for " + b.idle.String() + " in the middle of the body", Err: err}
	}
	return &Error{Kind: KindClosed, Reason: closedReason(err, "in the middle of the body"), Err: err}
}

func (b *respBody) Close() error {
	if !b.done {
		b.finish(false)
	}
	return nil
}

// finish releases the connection: back to the idle pool when the body was
// read to its end, the backend keeps the connection open, the request's
// body was sent whole, and nothing follows the answer; closed otherwise.
func (b *respBody) finish(complete bool) {
	b.done = true
	if !b.stop() {
		// The request was cancelled and the abort has run or is running: the
		// connection's deadline is in the past and it cannot be reused.
		complete = false
	}
	if req := b.resp.Request; req != nil && req.Context().Err() != nil {
		// The request was cancelled, and its abort may yet set the
		// connection's deadlines in the past (a context's error is set
		// before its AfterFunc runs, so stop may have returned true): the
		// next request would fail on it at once. The peek before reuse does
		// not look at deadlines.
		complete = false
	}
	c := b.c
	if complete && b.reuse && !c.unsent && c.writerDone() {
		if n := c.br.Buffered(); n > 0 {
			c.discard(fmt.Sprintf("sent %d bytes after the end of an answer", n), c.br)
		} else {
			c.idleSince = time.Now()
			c.reused = false
			if c.cl.idle.put(c) {
				return
			}
		}
	}
	c.nc.Close()
}

// discard tells the client's OnDiscard why the connection is dropped, with
// the first bytes of what it found.
func (c *clientConn) discard(why string, br *bufio.Reader) {
	if c.cl.OnDiscard == nil {
		return
	}
	sample, _ := br.Peek(min(br.Buffered(), 32))
	c.cl.OnDiscard(fmt.Sprintf("%s (%q); closed the connection", why, sample))
}

// upgradeBody is the connection after a 101 Switching Protocols: what the
// backend sends, and what the caller writes to it. ReverseProxy relays it
// to the client and closes it.
type upgradeBody struct{ c *clientConn }

func (u *upgradeBody) Read(p []byte) (int, error) { return u.c.br.Read(p) }

func (u *upgradeBody) Write(p []byte) (int, error) { return u.c.nc.Write(p) }

func (u *upgradeBody) Close() error { return u.c.nc.Close() }
