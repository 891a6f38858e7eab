package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"runtime"
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

// srvBufSize is the size of a connection's read and write buffers, and so
// the largest request head the fast path reads.
const srvBufSize = 4096

// errClientHungUp is the cause of a request context cancelled because the
// client closed its connection.
var errClientHungUp = errors.New("lb: client closed the connection")

// srvConn is one client connection served by Server. Its goroutine reads a
// request, runs the handler and writes the answer, one request at a time;
// the hang-up watch (watchHangUp) is the only other goroutine that touches
// it, and only while a slow handler runs.
type srvConn struct {
	s      *Server
	rwc    net.Conn
	in     connReader
	br     *bufio.Reader
	bw     *bufio.Writer
	ctx    context.Context
	cancel context.CancelCauseFunc
	tmpl   *http.Request // empty but for ctx: copied into each request
	remote string
	head   []byte // scratch: the request head, field names canonicalised

	// headDeadline is when the head being read must have arrived. A
	// connection handed to net/http keeps it as the bound of net/http's
	// own header timeout, so a slow client does not get the time twice.
	headDeadline time.Time

	accepted int64        // UnixNano
	state    atomic.Int32 // stateNew...: written here and by Shutdown/Close

	watch *time.Timer // fires watchHangUp when a request runs long
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

// handedConn is a connection given to the http.Server. It holds a copy of
// the bytes the fast path had read, and no reference to the srvConn and
// its buffers, which a long-lived (upgraded) connection would keep.
type handedConn struct {
	net.Conn
	buf []byte
	// limit bounds the first read deadline net/http sets, its header
	// timeout, by what was left of the fast path's own: a slow client
	// does not get the time twice.
	limit time.Time
}

func (h *handedConn) Read(p []byte) (int, error) {
	if len(h.buf) > 0 {
		n := copy(p, h.buf)
		h.buf = h.buf[n:]
		return n, nil
	}
	return h.Conn.Read(p)
}

func (h *handedConn) SetReadDeadline(t time.Time) error {
	if !h.limit.IsZero() {
		if t.IsZero() || t.After(h.limit) {
			t = h.limit
		}
		h.limit = time.Time{}
	}
	return h.Conn.SetReadDeadline(t)
}

// CloseWrite lets net/http half-close the connection before closing it
// after an error answer, as it does for a bare *net.TCPConn.
func (h *handedConn) CloseWrite() error {
	if cw, ok := h.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// handOff gives the connection, and what was read of it, to the
// http.Server.
func (c *srvConn) handOff() {
	// What the bufio.Reader holds, then what the hang-up watch read after
	// it during the previous request: all of it is net/http's now.
	buffered, _ := c.br.Peek(c.br.Buffered())
	buf := append(bytes.Clone(buffered), c.in.pending...)
	c.in.pending = nil
	hc := &handedConn{Conn: c.rwc, buf: buf, limit: c.headDeadline}
	c.rwc.SetReadDeadline(time.Time{})
	c.br, c.bw, c.head = nil, nil, nil
	c.s.handoff.hand(hc)
}

func (c *srvConn) serve() {
	handed := false
	defer func() {
		c.cancel(nil)
		if c.watch != nil {
			c.watch.Stop()
		}
		if !handed {
			c.rwc.Close()
		}
		c.s.untrack(c)
	}()
	for first := true; ; first = false {
		if !first {
			c.state.Store(stateIdle)
			if c.s.shutting.Load() {
				return
			}
		}
		req, err := c.readRequest(first)
		if err != nil {
			return // the client left, timed out, or Shutdown closed the connection
		}
		if req == nil {
			handed = true
			c.handOff()
			return
		}
		if !c.serveRequest(req) {
			return
		}
	}
}

// readRequest waits for the next request's head. It returns the request
// when it is plain, nil and no error when the connection goes to net/http,
// and an error when the connection is done.
func (c *srvConn) readRequest(first bool) (*http.Request, error) {
	// The timeouts as net/http reads them: ReadTimeout stands in for the
	// header and idle timeouts left at zero.
	hs := c.s.hs
	headTimeout, idle := hs.ReadHeaderTimeout, hs.IdleTimeout
	if headTimeout == 0 {
		headTimeout = hs.ReadTimeout
	}
	if idle == 0 {
		idle = hs.ReadTimeout
	}
	wait := idle
	if first {
		wait = headTimeout
	}
	c.headDeadline = time.Time{}
	if wait > 0 {
		c.headDeadline = time.Now().Add(wait)
	}
	c.rwc.SetReadDeadline(c.headDeadline)
	if _, err := c.br.Peek(1); err != nil {
		return nil, err
	}
	if st := c.state.Load(); st == stateClosed || !c.state.CompareAndSwap(st, stateActive) {
		return nil, net.ErrClosed
	}
	extended := first
	for scanned := 0; ; {
		// Only the bytes new since the last look are searched (and the three
		// before them), so a head trickling in byte by byte costs linear time.
		buf, _ := c.br.Peek(c.br.Buffered())
		from := max(scanned-3, 0)
		if i := bytes.Index(buf[from:], []byte("\r\n\r\n")); i >= 0 {
			end := from + i + 4
			req := c.parse(buf[:end])
			if req != nil {
				c.br.Discard(end)
			}
			return req, nil
		}
		// bareLF counts a '\n' at the start of its slice as bare: start the
		// new bytes' check at the byte before them, unless that is a '\n'
		// (judged last time), which makes a '\n' after it bare indeed.
		lf := max(scanned-1, 0)
		if lf > 0 && buf[lf] == '\n' {
			lf++
		}
		if len(buf) == c.br.Size() || bareLF(buf[lf:]) {
			return nil, nil // too long a head, or bare LF line ends: net/http judges
		}
		scanned = len(buf)
		if !extended {
			// The head has begun: it now has the header timeout to arrive,
			// not what was left of the idle timeout.
			c.headDeadline = time.Time{}
			if headTimeout > 0 {
				c.headDeadline = time.Now().Add(headTimeout)
			}
			c.rwc.SetReadDeadline(c.headDeadline)
			extended = true
		}
		if _, err := c.br.Peek(len(buf) + 1); err != nil {
			return nil, err
		}
	}
}

// parse returns the request whose head is raw (up to and including the
// blank line) when it is one the fast path serves, or nil. Every string of
// the request is a piece of one copy of the head.
func (c *srvConn) parse(raw []byte) *http.Request {
	c.head = append(c.head[:0], raw...)
	h := c.head
	eol := bytes.IndexByte(h, '\n')
	if eol < 1 || h[eol-1] != '\r' {
		return nil
	}
	// Request line: "GET /path?q HTTP/1.1".
	line := h[:eol-1]
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 || line[0] == '\r' {
		return nil
	}
	for _, b := range line[:sp1] {
		if !isTokenByte(b) {
			return nil
		}
	}
	sp2 := sp1 + 1 + bytes.IndexByte(line[sp1+1:], ' ')
	if sp2 <= sp1+1 || string(line[sp2+1:]) != "HTTP/1.1" || line[sp1+1] != '/' {
		return nil // absolute-form, "*", other versions: net/http's
	}
	for _, b := range line[sp1+1 : sp2] {
		if b <= ' ' || b >= 0x7f {
			return nil
		}
	}

	type field struct{ k0, k1, v0, v1 int }
	var fields [64]field
	nf, host, closeConn, seenCL := 0, -1, false, false
	for pos := eol + 1; pos < len(h)-2; {
		end := pos + bytes.IndexByte(h[pos:], '\n')
		if end <= pos || h[end-1] != '\r' {
			return nil // a bare LF line end
		}
		l := h[pos : end-1]
		if len(l) == 0 || l[0] == ' ' || l[0] == '\t' || bytes.IndexByte(l, '\r') >= 0 || nf == len(fields) {
			return nil // a stray CR, a folded line, or very many fields
		}
		colon := bytes.IndexByte(l, ':')
		if colon <= 0 || !canonicalize(l[:colon]) {
			return nil
		}
		v0, v1 := pos+colon+1, end-1
		for _, b := range h[v0:v1] {
			if (b < ' ' && b != '\t') || b == 0x7f {
				return nil
			}
		}
		for v0 < v1 && (h[v0] == ' ' || h[v0] == '\t') {
			v0++
		}
		for v1 > v0 && (h[v1-1] == ' ' || h[v1-1] == '\t') {
			v1--
		}
		k, v := h[pos:pos+colon], h[v0:v1]
		switch string(k) {
		case "Host":
			if host >= 0 || !plainHost(v) {
				return nil
			}
			host = nf
		case "Content-Length":
			if string(v) != "0" || seenCL {
				return nil // a body (net/http streams it), or a repeated length
			}
			seenCL = true
		case "Transfer-Encoding", "Expect", "Upgrade", "Pragma", "Http2-Settings":
			return nil
		case "Connection":
			if hasToken(string(v), "upgrade") {
				return nil
			}
			closeConn = closeConn || hasToken(string(v), "close")
		}
		fields[nf] = field{pos, pos + colon, v0, v1}
		nf++
		pos = end + 1
	}
	if host < 0 {
		return nil // HTTP/1.1 requires one: net/http answers 400
	}

	s := string(h)
	target := s[sp1+1 : sp2]
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil
	}
	hdr := make(http.Header, nf)
	vals := make([]string, nf)
	for i, f := range fields[:nf] {
		if i == host {
			continue // net/http moves it to Request.Host
		}
		k := s[f.k0:f.k1]
		vals[i] = s[f.v0:f.v1]
		if prev, dup := hdr[k]; dup {
			hdr[k] = append(prev, vals[i])
		} else {
			hdr[k] = vals[i : i+1 : i+1]
		}
	}
	req := new(http.Request)
	*req = *c.tmpl // the connection's context
	req.Method = s[:sp1]
	req.URL = u
	req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/1.1", 1, 1
	req.Header = hdr
	req.Body = http.NoBody
	req.Host = s[fields[host].v0:fields[host].v1]
	req.RemoteAddr = c.remote
	req.RequestURI = target
	req.Close = closeConn
	return req
}

// plainHost reports whether v is a non-empty Host value of the bytes
// net/http accepts in one.
func plainHost(v []byte) bool {
	if len(v) == 0 {
		return false
	}
	for _, b := range v {
		switch {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		case bytes.IndexByte([]byte("!$%&'()*+,-.:;=[]_~"), b) >= 0:
		default:
			return false
		}
	}
	return true
}

// serveRequest runs the handler for req and finishes the answer. It
// reports whether the connection can take another request.
func (c *srvConn) serveRequest(req *http.Request) bool {
	w := newSrvResponse(c, req)
	if d := c.s.hs.WriteTimeout; d > 0 {
		w.SetWriteDeadline(time.Now().Add(d))
	}
	c.arm()
	ok := c.runHandler(w, req)
	gone := c.disarm()
	if !ok {
		// Whatever is buffered is dropped with the connection: a complete
		// looking answer from a handler that failed half-way would lie.
		return false
	}
	if gone && w.status == 0 {
		// The handler wrote nothing for a client that left: no made-up
		// empty 200 (nginx sends nothing either, and logs 499).
		return false
	}
	w.finish()
	return !w.closeAfter && w.err == nil && !gone
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

// arm starts the timer that begins watching for a hang-up if the request
// runs long.
func (c *srvConn) arm() {
	c.wmu.Lock()
	c.inHandler = true
	c.wmu.Unlock()
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
// sending side) reads as a hang-up too, as nginx takes it.
func (c *srvConn) watchHangUp() {
	c.wmu.Lock()
	if !c.inHandler || c.watching {
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
