package main

import (
	"net"
	"sync/atomic"
)

// connCounts counts the client connections of the proxy listener, for
// /metrics. Both fields are independent counters, hence atomics.
type connCounts struct {
	open     atomic.Int64
	accepted atomic.Uint64
}

// count returns ln with its connections counted in c: one when accepted,
// out again when closed.
func (c *connCounts) count(ln net.Listener) net.Listener {
	return &countingListener{Listener: ln, counts: c}
}

type countingListener struct {
	net.Listener
	counts *connCounts
}

func (l *countingListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.counts.accepted.Add(1)
	l.counts.open.Add(1)
	return &countedConn{Conn: nc, counts: l.counts}, nil
}

// countedConn leaves the count on its first Close; net/http and h1.Server
// may both close a connection that changed hands.
type countedConn struct {
	net.Conn
	counts *connCounts
	closed atomic.Bool
}

func (c *countedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.counts.open.Add(-1)
	}
	return c.Conn.Close()
}

// CloseWrite half-closes the connection as *net.TCPConn does: net/http
// does so before closing after an error answer, if the connection can.
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
