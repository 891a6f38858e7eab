package h1

import (
	"context"
	"errors"
	"log"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Server serves HTTP/1.1 on a listener, strictly: every request is
// parsed and framed here (the package documentation lists what is
// refused), its body is decoded here, and its answer written here. A TLS
// connection that negotiates HTTP/2 is handed to an http.Server, which
// serves HTTP/2; one that negotiates HTTP/1.1 stays here.
//
// Why not net/http's server for HTTP/1.1: it is lenient where a proxy
// must not be (both Content-Length and Transfer-Encoding, folded lines,
// a body cut short: see the package documentation), and for each request
// it starts a goroutine that reads the connection so it can notice the
// client hanging up, then parks and wakes it again to stop it. On two
// cores those handoffs cost more than the rest of the server's work
// (bench/RESULTS.md has the figures). This loop parses a head into one
// string, writes the answer through a buffered writer, and watches for a
// hang-up only when a request has been running for watchAfter.
//
// The differences a handler can see from net/http's server: a request's
// context is the connection's, cancelled when the client is seen to hang
// up (or half-close) or the connection ends, not when ServeHTTP returns;
// a response without Content-Length is sent chunked (net/http would
// compute the length of a short one) and no Content-Type is sniffed; a
// handler that writes nothing for a client that hung up gets nothing sent
// (net/http makes up an empty 200); the request body may be read while
// the answer is written (full duplex) without asking; answers the server
// makes itself (400, 417, 431, 501, 505) are small JSON objects.
type Server struct {
	// Refused, if set, is told of every request refused before its
	// handler ran, with the status sent and why. It is called from many
	// goroutines at once.
	Refused func(remote string, status int, reason string)

	hs      *http.Server
	handoff *connQueue

	// shutting is set by Shutdown and Close. Connection goroutines read it
	// after each response, to close instead of waiting for the next.
	shutting atomic.Bool

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*srvConn]struct{}
	connsDone chan struct{} // closed when conns empties after shutting; made by Shutdown

	date dateCache
}

// NewServer returns a Server that takes its handler, timeouts
// (ReadHeaderTimeout, IdleTimeout, WriteTimeout), MaxHeaderBytes,
// BaseContext and ErrorLog from hs, and hands hs the TLS connections that
// negotiate HTTP/2. hs must not be used on its own after that;
// Server.Shutdown and Close shut it down.
func NewServer(hs *http.Server) *Server {
	return &Server{
		hs:        hs,
		handoff:   newConnQueue(hs),
		listeners: map[net.Listener]struct{}{},
		conns:     map[*srvConn]struct{}{},
	}
}

// Serve accepts connections on ln until Shutdown or Close, serving each on
// its own goroutine. It returns http.ErrServerClosed after those, and any
// other error of ln.Accept that is not temporary.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.handoff.addr == nil {
		s.handoff.addr = ln.Addr()
	}
	if s.shutting.Load() {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	if cfg := s.hs.TLSConfig; cfg != nil && slices.Contains(cfg.NextProtos, "h2") {
		// HTTP/2 clients go to the http.Server: it serves from now on, so
		// that its goroutine is not born in the middle of the traffic.
		s.handoff.startServing()
	}
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()

	base := context.Background()
	if s.hs.BaseContext != nil {
		base = s.hs.BaseContext(ln)
	}
	base = context.WithValue(base, http.ServerContextKey, s.hs)
	var delay time.Duration // backoff after a failed Accept, as net/http does
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.shutting.Load() {
				return http.ErrServerClosed
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logf("lb: accept error: %v; retrying in %v", err, delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		c := newSrvConn(s, nc, base)
		if !s.track(c) {
			nc.Close()
			return http.ErrServerClosed
		}
		go c.serve()
	}
}

// headTimeout is how long a request's head may take to arrive: as net/http
// reads its settings, ReadTimeout stands in for a zero ReadHeaderTimeout.
func (s *Server) headTimeout() time.Duration {
	if s.hs.ReadHeaderTimeout != 0 {
		return s.hs.ReadHeaderTimeout
	}
	return s.hs.ReadTimeout
}

// idleTimeout is how long a connection may wait for its next request.
func (s *Server) idleTimeout() time.Duration {
	if s.hs.IdleTimeout != 0 {
		return s.hs.IdleTimeout
	}
	return s.hs.ReadTimeout
}

// maxHeaderBytes bounds a request head, as net/http's does (its default,
// and the 4 KiB of slack it allows).
func (s *Server) maxHeaderBytes() int {
	n := s.hs.MaxHeaderBytes
	if n <= 0 {
		n = http.DefaultMaxHeaderBytes
	}
	return n + 4096
}

// isTemporary reports whether err says so, as accept errors like ECONNABORTED
// do; net/http retries on them too.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// track adds c to the connections Shutdown waits for; false once shutting.
func (s *Server) track(c *srvConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutting.Load() {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *srvConn) {
	s.mu.Lock()
	delete(s.conns, c)
	if len(s.conns) == 0 && s.connsDone != nil {
		select {
		case <-s.connsDone:
		default:
			close(s.connsDone)
		}
	}
	s.mu.Unlock()
}

// Shutdown stops accepting and closes idle connections; connections
// serving a request close when it is answered. It waits until every
// connection, its own and the http.Server's, is closed, or ctx ends, and
// then returns ctx's error. As with http.Server.Shutdown, upgraded
// connections are not waited for.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutting.Store(true)
	for ln := range s.listeners {
		ln.Close()
	}
	if s.connsDone == nil {
		s.connsDone = make(chan struct{})
		if len(s.conns) == 0 {
			close(s.connsDone)
		}
	}
	done := s.connsDone
	s.mu.Unlock()

	hsErr := make(chan error, 1)
	s.handoff.Close()
	go func() { hsErr <- s.hs.Shutdown(ctx) }()

	// Idle connections are closed now; a connection still reading its first
	// request is given a few seconds (as net/http does), since a client
	// cannot tell a close before its request from a lost one.
	poll := time.Millisecond
	timer := time.NewTimer(poll)
	defer timer.Stop()
	for !s.closeIdle() {
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			poll = min(2*poll, 500*time.Millisecond)
			timer.Reset(poll)
			continue
		}
		break
	}
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-hsErr
}

// closeIdle closes every connection waiting for a request, and reports
// whether none is left.
func (s *Server) closeIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now().UnixNano()
	for c := range s.conns {
		st := c.state.Load()
		if st == stateIdle || st == stateNew && now-c.accepted > int64(5*time.Second) {
			if c.state.CompareAndSwap(st, stateClosed) {
				c.rwc.Close()
			}
		}
	}
	return len(s.conns) == 0
}

// Close closes the listeners and every connection at once, also those
// serving a request, and the http.Server's.
func (s *Server) Close() error {
	s.mu.Lock()
	s.shutting.Store(true)
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.state.Store(stateClosed)
		c.rwc.Close()
	}
	s.mu.Unlock()
	s.handoff.Close()
	return s.hs.Close()
}

func (s *Server) logf(format string, args ...any) {
	if s.hs.ErrorLog != nil {
		s.hs.ErrorLog.Printf(format, args...)
	} else {
		log.Printf(format, args...) // as net/http
	}
}

// connQueue is the listener the http.Server serves: its Accept returns the
// connections the Server hands over. The http.Server starts serving it at
// the first connection handed over, so a Server that never meets an
// HTTP/2 client runs no goroutine for it.
type connQueue struct {
	addr  net.Addr
	hs    *http.Server
	ch    chan net.Conn
	done  chan struct{}
	start sync.Once
	stop  sync.Once
}

func newConnQueue(hs *http.Server) *connQueue {
	return &connQueue{hs: hs, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.stop.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }

// startServing starts the http.Server on the queue, once, unless the
// queue is closed.
func (q *connQueue) startServing() {
	q.start.Do(func() {
		select {
		case <-q.done:
		default:
			go q.hs.Serve(q) // returns when Shutdown or Close closes the queue
		}
	})
}

// hand gives c to the http.Server, or closes it when that has shut down.
func (q *connQueue) hand(c net.Conn) {
	q.startServing()
	select {
	case q.ch <- c:
	case <-q.done:
		c.Close()
	}
}

// dateCache keeps the Date header value of the current second, so that a
// response without one costs no formatting.
type dateCache struct {
	cur atomic.Pointer[dateValue]
}

type dateValue struct {
	sec int64
	s   string
}

func (d *dateCache) get(now time.Time) string {
	sec := now.Unix()
	if v := d.cur.Load(); v != nil && v.sec == sec {
		return v.s
	}
	v := &dateValue{sec, now.UTC().Format(http.TimeFormat)}
	d.cur.Store(v)
	return v.s
}
