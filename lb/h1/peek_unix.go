//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package h1

import (
	"net"
	"syscall"
)

// peekSocket looks at what waits on nc's socket without taking it and
// without waiting: up to len(buf) bytes are copied into buf.
func peekSocket(nc net.Conn, buf []byte) (int, int) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return 0, peekQuiet // an in-memory connection (tests, benchmarks): nothing arrives unasked
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, peekError
	}
	var n int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr = syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true // never wait for readiness
	})
	switch {
	case err != nil:
		return 0, peekError
	case rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK:
		return 0, peekQuiet
	case rerr != nil:
		return 0, peekError
	case n == 0:
		return 0, peekEOF
	}
	return n, peekData
}
