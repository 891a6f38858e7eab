//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package h1

import (
	"net"
	"syscall"
)

// peeker cannot look at a socket without taking from it on this system:
// a connection with a socket is never called quiet, so idle connections
// are not reused here. An in-memory one (tests) is.
type peeker struct {
	socket bool
	buf    [32]byte
}

func newPeeker(nc net.Conn) *peeker {
	_, ok := nc.(syscall.Conn)
	return &peeker{socket: ok}
}

func (p *peeker) look() (n, state int) {
	if p.socket {
		return 0, peekError
	}
	return 0, peekQuiet
}
