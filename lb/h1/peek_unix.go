//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package h1

import (
	"net"
	"syscall"
)

// peeker looks at what waits on a socket without taking it and without
// waiting. One is made per connection, so that a peek allocates nothing.
type peeker struct {
	rc   syscall.RawConn // nil: the connection has no socket (in memory)
	recv func(fd uintptr) bool
	buf  [32]byte
	n    int
	err  error
}

func newPeeker(nc net.Conn) *peeker {
	p := &peeker{}
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			p.rc = rc
			p.recv = p.peek
		}
	}
	return p
}

func (p *peeker) peek(fd uintptr) bool {
	p.n, _, p.err = syscall.Recvfrom(int(fd), p.buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return true // never wait for readiness
}

// look reports what waits on the socket; with peekData, the first bytes
// are in p.buf[:n].
func (p *peeker) look() (n, state int) {
	if p.rc == nil {
		return 0, peekQuiet // an in-memory connection (tests, benchmarks): nothing arrives unasked
	}
	if err := p.rc.Read(p.recv); err != nil {
		return 0, peekError
	}
	switch {
	case p.err == syscall.EAGAIN || p.err == syscall.EWOULDBLOCK:
		return 0, peekQuiet
	case p.err != nil:
		return 0, peekError
	case p.n == 0:
		return 0, peekEOF
	}
	return p.n, peekData
}
