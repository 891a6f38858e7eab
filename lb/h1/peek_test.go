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

// closeRecorder is a connection that only notes whether it was closed.
type closeRecorder struct {
	net.Conn
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

// TestIdle_CloseStaleLetsGoOnlyTheStale: the idle pool's sweep closes the
// connections unused for IdleConnTimeout and keeps the rest in order.
// (Found by an attacker's review: after a burst, 238 idle connections were
// still open 57 s later, since the pool let them go only when used.)
func TestIdle_CloseStaleLetsGoOnlyTheStale(t *testing.T) {
	now := time.Now()
	var p idleConns
	var conns []*closeRecorder
	for _, idle := range []time.Duration{IdleConnTimeout + 10*time.Second, IdleConnTimeout, IdleConnTimeout - time.Second, time.Second} {
		nc := &closeRecorder{}
		conns = append(conns, nc)
		p.stack = append(p.stack, &clientConn{nc: nc, idleSince: now.Add(-idle)})
	}
	p.closeStale(now)
	for i, want := range []bool{true, true, false, false} {
		if conns[i].closed != want {
			t.Errorf("connection %d closed = %v, want %v", i, conns[i].closed, want)
		}
	}
	if len(p.stack) != 2 || p.stack[0].nc != conns[2] || p.stack[1].nc != conns[3] {
		t.Fatalf("the pool keeps %d connections, want the two fresh ones in order", len(p.stack))
	}
	for i, c := range p.stack[len(p.stack):cap(p.stack)] {
		if c != nil {
			t.Errorf("slot %d past the stack's end still holds a closed connection (and its buffers)", len(p.stack)+i)
		}
	}
	p.closeStale(now) // nothing stale left: nothing changes
	if len(p.stack) != 2 {
		t.Fatalf("a second sweep left %d connections, want 2", len(p.stack))
	}
}
