package h1

import (
	"net"
	"testing"
	"time"
)

// idleConn returns a client connection to a loopback server that never
// sends anything, as a pooled connection to a well-behaved backend is.
func idleConn(tb testing.TB) *clientConn {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			var buf [1]byte
			c.Read(buf[:]) // until the test closes its end
		}
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { nc.Close() })
	return &clientConn{nc: nc, cl: &Client{}}
}

// BenchmarkQuiet answers: what does the check of an idle connection before
// its reuse cost? One non-blocking peek of a loopback TCP socket with
// nothing to read, as a pooled connection is checked on every reuse.
func BenchmarkQuiet(b *testing.B) {
	c := idleConn(b)
	b.ReportAllocs()
	for b.Loop() {
		if !c.quiet() {
			b.Fatal("an idle connection with nothing on it is not quiet")
		}
	}
}

// TestQuiet_WhateverTheReadDeadline: the check before reuse looks at the
// socket whatever read deadline the last body left on it (respBody.armIdle
// leaves one, long past for a connection that idled longer).
func TestQuiet_WhateverTheReadDeadline(t *testing.T) {
	c := idleConn(t)
	c.nc.SetReadDeadline(time.Now().Add(-time.Second))
	if !c.quiet() {
		t.Fatal("an idle connection with nothing on it, its read deadline past, is not quiet")
	}
}
