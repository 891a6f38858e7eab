package h1

import (
	"sync"
	"time"
)

// idleConns is one backend's keep-alive connections for the direct path.
// It is a stack: the connection used last is used next, so a lightly loaded
// balancer keeps reusing a few warm connections while the rest age out,
// instead of cycling through all of them until each has outlived the
// backend's own keep-alive timeout. It is safe for concurrent use; the lock
// is held for slice operations only, connections are closed after it is
// released.
type idleConns struct {
	// mu guards stack and retired.
	mu      sync.Mutex
	stack   []*clientConn // oldest first
	retired bool          // the backend left the configuration: keep nothing
}

// get returns the most recently used connection, or nil. When that one has
// been idle too long, all are (the stack is ordered), and all are closed.
func (p *idleConns) get(now time.Time) *clientConn {
	p.mu.Lock()
	n := len(p.stack)
	if n == 0 {
		p.mu.Unlock()
		return nil
	}
	c := p.stack[n-1]
	if now.Sub(c.idleSince) < IdleConnTimeout {
		p.stack[n-1] = nil
		p.stack = p.stack[:n-1]
		p.mu.Unlock()
		return c
	}
	stale := p.stack
	p.stack = nil
	p.mu.Unlock()
	for _, c := range stale {
		c.nc.Close()
	}
	return nil
}

// put keeps c for reuse, reporting false when it was not kept (the caller
// closes it): the backend is retired or already has enough idle
// connections. The oldest connection is let go when it has been idle too
// long, so a stack that is never emptied does not keep dead ones forever.
func (p *idleConns) put(c *clientConn) bool {
	var old *clientConn
	p.mu.Lock()
	if p.retired || len(p.stack) >= MaxIdlePerBackend {
		p.mu.Unlock()
		return false
	}
	if len(p.stack) > 0 && c.idleSince.Sub(p.stack[0].idleSince) >= IdleConnTimeout {
		old = p.stack[0]
		p.stack = append(p.stack[:0], p.stack[1:]...)
	}
	p.stack = append(p.stack, c)
	p.mu.Unlock()
	if old != nil {
		old.nc.Close()
	}
	return true
}

// closeStale closes the connections idle for IdleConnTimeout or longer:
// get and put let them go only when the stack is used, and after a burst
// it may not be for a long time, while each holds a socket at both ends.
func (p *idleConns) closeStale(now time.Time) {
	p.mu.Lock()
	n := 0
	for n < len(p.stack) && now.Sub(p.stack[n].idleSince) >= IdleConnTimeout {
		n++
	}
	if n == 0 {
		p.mu.Unlock()
		return
	}
	stale := make([]*clientConn, n)
	copy(stale, p.stack[:n])
	kept := copy(p.stack, p.stack[n:])
	clear(p.stack[kept:]) // no closed connection (and its buffers) kept alive by the array
	p.stack = p.stack[:kept]
	p.mu.Unlock()
	for _, c := range stale {
		c.nc.Close()
	}
}

// retire closes every idle connection and keeps none from now on: the
// backend has left the configuration.
func (p *idleConns) retire() {
	p.mu.Lock()
	p.retired = true
	all := p.stack
	p.stack = nil
	p.mu.Unlock()
	for _, c := range all {
		c.nc.Close()
	}
}
