//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package h1

import (
	"net"
	"syscall"
)

// peeker looks at what waits on a socket without taking it and without
// waiting. One is made per connection, so that a peek allocates nothing.
type peeker struct {
	rc  syscall.RawConn // nil: the connection has no socket (in memory)
	ctl func(fd uintptr)
	buf [32]byte
	n   int
	err error
}

func newPeeker(nc net.Conn) *peeker {
	p := &peeker{}
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			p.rc = rc
			p.ctl = p.peek
		}
	}
	return p
}

func (p *peeker) peek(fd uintptr) {
	p.n, _, p.err = syscall.Recvfrom(int(fd), p.buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
}

// look reports what waits on the socket; with peekData, the first bytes
// are in p.buf[:n].
func (p *peeker) look() (n, state int) {
	if p.rc == nil {
		return 0, peekQuiet // an in-memory connection (tests, benchmarks): nothing arrives unasked
	}
	// Control, not Read: the peek never waits, and must not see the read
	// deadline, which the last body may have left set (respBody.armIdle),
	// long past for a connection idle longer than it.
	if err := p.rc.Control(p.ctl); err != nil {
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
