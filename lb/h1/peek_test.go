package h1

import (
	"net"
	"testing"
)

// BenchmarkQuiet answers: what does the check of an idle connection before
// its reuse cost? One non-blocking peek of a loopback TCP socket with
// nothing to read, as a pooled connection is checked on every reuse.
func BenchmarkQuiet(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			var buf [1]byte
			c.Read(buf[:]) // until the benchmark closes its end
		}
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	c := &clientConn{nc: nc, cl: &Client{}}
	b.ReportAllocs()
	for b.Loop() {
		if !c.quiet() {
			b.Fatal("an idle connection with nothing on it is not quiet")
		}
	}
}
