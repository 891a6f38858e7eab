package h1

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The states of a server connection, for Shutdown: it closes idle ones at
// once and new ones after a while, and waits for the rest.
const (
	stateNew    int32 = iota // accepted; its first request has not begun
	stateIdle                // waiting for a request
	stateActive              // reading or answering a request
	stateClosed              // closed by Shutdown or Close
)

// watchAfter is how long a request runs before its connection is watched
// for the client hanging up. Most answers come sooner, and then nothing
// reads the connection while they are made; net/http starts such a read
// for every request.
const watchAfter = 50 * time.Millisecond

// srvBufSize is the size of a connection's read and write buffers.
const srvBufSize = 4096

// maxKeptHead bounds the scratch a connection keeps for request heads
// between requests (and a backend exchange for answer heads): a rare large
// head does not make every idle connection hold its size.
const maxKeptHead = 16 << 10

// Lingering close: after an answer that ends a connection whose client
// may still be sending (the rest of a body nobody read, a refused head),
// the server stops writing, then reads and drops what comes, until the
// client closes or pauses for lingerIdle (at most lingerTotal and
// lingerMax in all), before it closes. Closing at once with unread bytes makes the kernel
// reset the connection, and a reset can destroy the answer before the
// client reads it. nginx's lingering_close does the same.
const (
	lingerIdle  = 2 * time.Second  // the longest wait for more bytes
	lingerTotal = 10 * time.Second // the longest linger in all
	lingerMax   = 64 << 20         // the most bytes dropped
)

// errClientHungUp is the cause of a request context cancelled because the
// client closed its connection.
var errClientHungUp = errors.New("h1: client closed the connection")

// aLongTimeAgo is a deadline in the past: setting it interrupts a blocked
// read or write at once.
var aLongTimeAgo = time.Unix(1, 0)

// srvConn is one client connection served by Server. Its goroutine reads a
// request, runs the handler and writes the answer, one request at a time.
// Two other goroutines may touch it while a handler runs: the hang-up
// watch (watchHangUp), only while a slow handler runs and the request's
// body has been read, and whoever the handler gives the request body to.
type srvConn struct {
	s      *Server
	rwc    net.Conn
	in     connReader
	br     *bufio.Reader
	bw     *bufio.Writer
	ctx    context.Context
	cancel context.CancelCauseFunc
	remote string
	tls    *tls.ConnectionState // nil for plain TCP
	tmpl   *http.Request        // empty but for ctx: copied into each request

	// Owned by the connection's goroutine.
	head     []byte  // scratch: the request head, field names canonicalised
	fields   []field // scratch: the head's field positions
	body     *srvBody
	hijacked atomic.Bool // the handler took the connection over; read by the writer's methods from any goroutine

	accepted int64        // UnixNano
	state    atomic.Int32 // stateNew...: written here and by Shutdown/Close

	// outMu orders the bytes written to rwc outside the write buffer, a
	// 100 Continue sent by whoever reads the body, with the final answer's
	// head, which the handler's goroutine writes into the buffer. It is
	// taken only while expecting: a request whose client waits for 100
	// Continue, the only one with a second writer.
	outMu        sync.Mutex
	expecting    bool // owned by the connection's goroutine, set before the handler runs
	finalStarted bool // guarded by outMu: a 100 Continue would come too late

	// watch fires watchHangUp when a request runs long; written under wmu
	// (by arm), read by the connection's goroutine and under wmu.
	watch *time.Timer
	wmu   sync.Mutex
	wcond sync.Cond // on wmu: signalled when watching ends
	// Guarded by wmu.
	inHandler bool // a handler is running
	watching  bool // watchHangUp is reading the connection
	gone      bool // the client hung up
}

func newSrvConn(s *Server, nc net.Conn, base context.Context) *srvConn {
	c := &srvConn{s: s, rwc: nc, accepted: time.Now().UnixNano()}
	c.in.c = nc
	c.br = bufio.NewReaderSize(&c.in, srvBufSize)
	c.bw = bufio.NewWriterSize(nc, srvBufSize)
	ctx := context.WithValue(base, http.LocalAddrContextKey, nc.LocalAddr())
	c.ctx, c.cancel = context.WithCancelCause(ctx)
	c.tmpl = new(http.Request).WithContext(c.ctx)
	c.remote = nc.RemoteAddr().String()
	c.wcond.L = &c.wmu
	return c
}

// connReader is what a connection's bufio.Reader reads: the connection,
// after the bytes the hang-up watch read. Those come after everything the
// bufio.Reader holds, so the order of the client's bytes is kept.
type connReader struct {
	c       net.Conn
	pending []byte // read by watchHangUp; guarded by srvConn.wmu while a watch may run
}

func (r *connReader) Read(p []byte) (int, error) {
	if len(r.pending) > 0 {
		n := copy(p, r.pending)
		r.pending = r.pending[n:]
		return n, nil
	}
	return r.c.Read(p)
}

// How a connection ends after its last answer.
const (
	closePlain  = iota // close: nothing unread is expected
	closeLinger        // the client may still be sending: linger first
	closeNot           // not ours to close: hijacked or handed to net/http
)

func (c *srvConn) serve() {
	how := closePlain
	defer func() {
		c.cancel(nil)
		if c.watch != nil {
			c.watch.Stop()
		}
		switch how {
		case closeLinger:
			c.lingerClose()
		case closePlain:
			c.rwc.Close()
		}
		c.s.untrack(c)
	}()
	if tc, ok := c.rwc.(*tls.Conn); ok {
		if !c.handshake(tc) {
			how = closeNot
			return
		}
	}
	for first := true; ; first = false {
		if !first {
			c.state.Store(stateIdle)
			if c.s.shutting.Load() {
				return
			}
		}
		p, err := c.readRequest(first)
		if err != nil {
			var re *requestError
			if errors.As(err, &re) {
				c.refuse(re)
				how = closeLinger
			}
			return // else the client left, timed out, or Shutdown closed the connection
		}
		how = c.serveRequest(p)
		if how != keepOpen {
			return
		}
		how = closePlain
	}
}

// keepOpen is serveRequest's answer when the connection takes another
// request.
const keepOpen = closeNot + 1

// handshake completes a TLS connection's handshake within the header
// timeout. A client that negotiated HTTP/2 is handed to the http.Server;
// it reports whether the connection stays here for HTTP/1.1.
func (c *srvConn) handshake(tc *tls.Conn) bool {
	if d := c.s.headTimeout(); d > 0 {
		tc.SetDeadline(time.Now().Add(d))
	}
	if err := tc.HandshakeContext(c.ctx); err != nil {
		tc.Close()
		return false
	}
	tc.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	if st.NegotiatedProtocol == "h2" {
		c.s.handoff.hand(tc)
		return false
	}
	c.tls = &st
	return true
}

// readRequest waits for the next request's head and parses it. It returns
// a *requestError for a request to refuse, another error when the
// connection is done.
func (c *srvConn) readRequest(first bool) (parsedRequest, error) {
	wait := c.s.idleTimeout()
	if first {
		wait = c.s.headTimeout()
	}
	setDeadline := func(d time.Duration) {
		if d > 0 {
			c.rwc.SetReadDeadline(time.Now().Add(d))
		} else {
			c.rwc.SetReadDeadline(time.Time{})
		}
	}
	setDeadline(wait)
	if _, err := c.br.Peek(1); err != nil {
		return parsedRequest{}, err
	}
	if st := c.state.Load(); st == stateClosed || !c.state.CompareAndSwap(st, stateActive) {
		return parsedRequest{}, net.ErrClosed
	}
	if !first {
		setDeadline(c.s.headTimeout()) // the head has begun: the header timeout, not what was left of idle
	}
	head, err := readHead(c.br, c.head, c.s.maxHeaderBytes(), true)
	switch {
	case err == errStartLineTooLarge:
		return parsedRequest{}, refuse(414, "URI too long: the request line alone is over the head limit")
	case err == errHeadTooLarge:
		return parsedRequest{}, refuse(431, "request header fields too large")
	case err == errBareLF:
		return parsedRequest{}, refuse(400, "malformed head: "+err.Error())
	case err != nil:
		return parsedRequest{}, err
	}
	req := new(http.Request)
	*req = *c.tmpl // the connection's context
	p, fields, rerr := parseRequest(head, c.fields, req)
	c.fields = fields
	// The request's strings are a copy of the head: the scratch is kept
	// for the next one, unless one large head made it large.
	if cap(head) <= maxKeptHead {
		c.head = head
	} else {
		c.head = nil
	}
	if rerr != nil {
		return p, rerr
	}
	return p, nil
}

// serveRequest runs the handler for p and finishes the answer. It returns
// keepOpen when the connection can take another request, else how to end
// it.
func (c *srvConn) serveRequest(p parsedRequest) int {
	req := p.req
	req.RemoteAddr = c.remote
	req.TLS = c.tls
	c.body = nil
	switch p.body {
	case noBody:
		req.Body = http.NoBody
	case fixedBody:
		c.body = &srvBody{c: c, left: p.length, expect: p.expect}
	case chunkedBody:
		c.body = &srvBody{c: c, chunked: true, expect: p.expect}
		c.body.ch = chunkedReader{br: c.br, trailerLimit: c.s.maxHeaderBytes()}
	}
	c.expecting = false
	if c.body != nil {
		req.Body = c.body
		c.expecting = p.expect
		c.finalStarted = false             // no other goroutine yet: the body has not been handed out
		c.rwc.SetReadDeadline(time.Time{}) // the head's deadline is not the body's: its reader sets its own
	}

	w := newSrvResponse(c, req)
	if d := c.s.hs.WriteTimeout; d > 0 {
		w.SetWriteDeadline(time.Now().Add(d))
	}
	c.arm()
	ok := c.runHandler(w, req)
	gone := c.disarm()
	w.done.Store(true)
	complete := true
	if c.body != nil {
		complete = c.body.finish()
	}
	if c.hijacked.Load() {
		return closeNot
	}
	if !ok {
		// Whatever is buffered is dropped with the connection: a complete
		// looking answer from a handler that failed half-way would lie.
		return closePlain
	}
	if gone && w.status == 0 {
		// The handler wrote nothing for a client that left: no made-up
		// empty 200 (nginx sends nothing either, and logs 499).
		return closePlain
	}
	w.finish()
	switch {
	case !complete:
		return closeLinger // the rest of the body must never be read as a request
	case w.err != nil || gone:
		return closePlain
	case w.closeAfter && c.br.Buffered() > 0:
		return closeLinger // pipelined requests that will not be answered
	case w.closeAfter:
		return closePlain
	}
	return keepOpen
}

func (c *srvConn) runHandler(w *srvResponse, req *http.Request) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				c.s.logf("http: panic serving %v: %v\n%s", c.remote, p, buf)
			}
			ok = false
		}
	}()
	h := c.s.hs.Handler
	if h == nil {
		h = http.DefaultServeMux
	}
	h.ServeHTTP(w, req)
	return true
}

// sendContinue writes "100 Continue" when a body's reader first reads a
// body whose client waits for it, unless the final answer has begun.
func (c *srvConn) sendContinue() error {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	if c.finalStarted {
		return nil
	}
	_, err := io.WriteString(c.rwc, "HTTP/1.1 100 Continue\r\n\r\n")
	return err
}

// refuse answers a request that will not reach the handler, with a JSON
// error as every answer the balancer makes itself.
func (c *srvConn) refuse(re *requestError) {
	if c.s.Refused != nil {
		c.s.Refused(c.remote, re.status, re.msg)
	}
	body, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{http.StatusText(re.status) + ": " + re.msg})
	body = append(body, '\n')
	bw := c.bw
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(strconv.Itoa(re.status))
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(re.status))
	bw.WriteString("\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: ")
	bw.WriteString(strconv.Itoa(len(body)))
	bw.WriteString("\r\nDate: ")
	bw.WriteString(c.s.date.get(time.Now()))
	bw.WriteString("\r\n\r\n")
	bw.Write(body)
	if d := c.s.hs.WriteTimeout; d > 0 {
		c.rwc.SetWriteDeadline(time.Now().Add(d))
	} else {
		c.rwc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	}
	bw.Flush()
}

// lingerClose stops writing, then drops what the client still sends for a
// while (see lingerIdle) before it closes the connection.
func (c *srvConn) lingerClose() {
	defer c.rwc.Close()
	if cw, ok := c.rwc.(interface{ CloseWrite() error }); !ok || cw.CloseWrite() != nil {
		return
	}
	end := time.Now().Add(lingerTotal)
	buf := make([]byte, 32<<10)
	for dropped := 0; dropped < lingerMax; {
		deadline := time.Now().Add(lingerIdle)
		if deadline.After(end) {
			deadline = end
		}
		c.rwc.SetReadDeadline(deadline)
		n, err := c.rwc.Read(buf)
		dropped += n
		if err != nil {
			return // the client closed, or went quiet, or the time is up
		}
	}
}

// arm starts the timer that begins watching for a hang-up if the request
// runs long.
func (c *srvConn) arm() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.inHandler = true
	// Under wmu: the timer's goroutine reads c.watch to look again later.
	if c.watch == nil {
		c.watch = time.AfterFunc(watchAfter, c.watchHangUp)
	} else {
		c.watch.Reset(watchAfter)
	}
}

// disarm stops the watch: the timer, or the read it began, which it
// interrupts and waits for. It reports whether the client hung up.
func (c *srvConn) disarm() bool {
	c.watch.Stop()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.inHandler = false
	if c.watching {
		c.rwc.SetReadDeadline(aLongTimeAgo)
		for c.watching {
			c.wcond.Wait()
		}
	}
	return c.gone
}

// watchHangUp runs on the timer's goroutine when a request has run for
// watchAfter: it reads the connection until the client sends a byte (kept
// for the next request), hangs up (which cancels the request's context),
// or disarm interrupts it. It reads beneath the bufio.Reader, so bytes of
// pipelined requests already buffered do not hide a hang-up, as with
// net/http's background read. A half-close (shutdown of the client's
// sending side) reads as a hang-up too, as nginx takes it. While the
// request's body is still being read, the body's reader is the one that
// sees a hang-up, and the watch looks again later.
func (c *srvConn) watchHangUp() {
	c.wmu.Lock()
	if !c.inHandler || c.watching {
		c.wmu.Unlock()
		return
	}
	if c.body != nil && !c.body.complete.Load() {
		c.watch.Reset(watchAfter)
		c.wmu.Unlock()
		return
	}
	c.watching = true
	c.rwc.SetReadDeadline(time.Time{}) // the idle deadline must not look like a hang-up
	c.wmu.Unlock()

	var b [1]byte
	n, _ := c.rwc.Read(b[:])

	c.wmu.Lock()
	if n > 0 {
		c.in.pending = append(c.in.pending, b[0]) // a pipelined request's: kept in order
	} else if c.inHandler { // not disarm's interruption
		c.gone = true
		c.cancel(errClientHungUp)
	}
	c.watching = false
	c.wcond.Broadcast()
	c.wmu.Unlock()
}

// hijack gives the connection to the handler: the watch stops for good,
// deadlines are cleared, and what was read and not yet consumed comes
// first from the returned connection's reads.
func (c *srvConn) hijack() net.Conn {
	c.watch.Stop()
	c.wmu.Lock()
	c.inHandler = false // no watch starts from here on
	if c.watching {
		c.rwc.SetReadDeadline(aLongTimeAgo)
		for c.watching {
			c.wcond.Wait()
		}
	}
	c.wmu.Unlock()
	c.hijacked.Store(true)
	c.s.untrack(c) // Shutdown does not wait for it, as http.Server's does not
	c.rwc.SetDeadline(time.Time{})
	buffered, _ := c.br.Peek(c.br.Buffered())
	hc := &hijackedConn{Conn: c.rwc, buf: append(append([]byte(nil), buffered...), c.in.pending...)}
	c.in.pending = nil
	return hc
}

// hijackedConn is a connection the handler took over, with the bytes the
// server had read and not consumed.
type hijackedConn struct {
	net.Conn
	buf []byte
}

func (h *hijackedConn) Read(p []byte) (int, error) {
	if len(h.buf) > 0 {
		n := copy(p, h.buf)
		h.buf = h.buf[n:]
		return n, nil
	}
	return h.Conn.Read(p)
}

// CloseWrite half-closes the connection, as a bare *net.TCPConn can.
func (h *hijackedConn) CloseWrite() error {
	if cw, ok := h.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
