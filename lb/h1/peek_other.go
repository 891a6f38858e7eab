//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package h1

import (
	"net"
	"syscall"
)

// peekSocket cannot look at a socket without taking from it on this
// system: a connection that can be reached is never called quiet, so
// idle connections are not reused here. An in-memory one (tests) is.
func peekSocket(nc net.Conn, buf []byte) (int, int) {
	if _, ok := nc.(syscall.Conn); ok {
		return 0, peekError
	}
	return 0, peekQuiet
}
