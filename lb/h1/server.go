package h1

import (
	"context"
	"crypto/tls"
	"errors"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Server serves HTTP/1.1 on a listener. It answers the requests that make
// up nearly all of a proxy's traffic on its own connection loop, and hands
// every other connection to an http.Server, which answers it from then on.
//
// A request stays here when its head fits in 4 KiB and is plain: HTTP/1.1,
// a path as target, exactly one Host, field names and values net/http
// accepts, no body (no Transfer-Encoding; Content-Length absent or 0), no
// Expect, no Upgrade. At the first request that is anything else, the
// connection goes to the http.Server with every byte already read, and that
// request and the ones after it are net/http's: bodies, upgrades, malformed
// requests and their 400s, every corner of the protocol.
//
// Why: for each request, net/http's server starts a goroutine that reads
// the connection so it can notice the client hanging up, then parks and
// wakes it again to stop it. On two cores those handoffs and the read
// that finds nothing cost more than the rest of the server's work
// (bench/RESULTS.md has the figures). This loop parses a plain head into
// one string, writes the answer through a buffered writer, and watches for
// a hang-up only when a request has been running for watchAfter.
//
// The differences a handler can see: a request's context is the
// connection's, cancelled when the client is seen to hang up (or
// half-close) or the connection ends, not when ServeHTTP returns; a
// response without Content-Length is sent chunked (net/http would compute
// the length of a short one) and no Content-Type is sniffed; a handler
// that writes nothing for a client that hung up gets nothing sent (net/http
// makes up an empty 200); the ResponseWriter cannot be hijacked (upgrades
// are net/http's).
type Server struct {
	hs      *http.Server
	handoff *connQueue

	// shutting is set by Shutdown and Close. Connection goroutines read it
	// after each response, to close instead of waiting for the next.
	shutting atomic.Bool
	hsOnce   sync.Once // starts hs.Serve on the handoff queue

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*srvConn]struct{}
	connsDone chan struct{} // closed when conns empties after shutting; made by Shutdown

	date dateCache
}

// NewServer returns a Server that takes its handler, timeouts
// (ReadHeaderTimeout, IdleTimeout), BaseContext and ErrorLog from hs and
// hands hs the connections it does not serve itself. hs must not be used
// on its own after that; Server.Shutdown and Close shut it down.
func NewServer(hs *http.Server) *Server {
	return &Server{
		hs:        hs,
		handoff:   newConnQueue(),
		listeners: map[net.Listener]struct{}{},
		conns:     map[*srvConn]struct{}{},
	}
}

// Serve accepts connections on ln until Shutdown or Close, serving each on
// its own goroutine. It returns http.ErrServerClosed after those, and any
// other error of ln.Accept that is not temporary.
func (s *Server) Serve(ln net.Listener) error {
	s.hsOnce.Do(func() {
		s.handoff.addr = ln.Addr()
		go s.hs.Serve(s.handoff) // returns when Shutdown or Close closes the queue
	})
	s.mu.Lock()
	if s.shutting.Load() {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
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
		if _, ok := nc.(*tls.Conn); ok {
			// TLS (a listener from tls.NewListener) is net/http's: it
			// fills Request.TLS and handles the handshake's timeouts.
			s.handoff.hand(nc)
			continue
		}
		c := newSrvConn(s, nc, base)
		if !s.track(c) {
			nc.Close()
			return http.ErrServerClosed
		}
		go c.serve()
	}
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
// connections the Server hands over.
type connQueue struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnQueue() *connQueue {
	return &connQueue{ch: make(chan net.Conn), done: make(chan struct{})}
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
	q.once.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }

// hand gives c to the http.Server, or closes it when that has shut down.
func (q *connQueue) hand(c net.Conn) {
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
