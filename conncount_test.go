package main

import (
	"io"
	"net"
	"testing"
)

// countedListener returns a counting listener on a loopback port.
func countedListener(t *testing.T, counts *connCounts) net.Listener {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := counts.count(raw)
	t.Cleanup(func() { ln.Close() })
	return ln
}

// connect dials ln and returns both ends, closed with the test.
func connect(t *testing.T, ln net.Listener) (client, server net.Conn) {
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}

func TestConnCounts_CountOpenAndAcceptedConnections(t *testing.T) {
	var counts connCounts
	ln := countedListener(t, &counts)
	var server []net.Conn
	for range 2 {
		_, s := connect(t, ln)
		server = append(server, s)
	}
	if open, acc := counts.open.Load(), counts.accepted.Load(); open != 2 || acc != 2 {
		t.Fatalf("open %d, accepted %d; want 2 and 2", open, acc)
	}
	server[0].Close()
	server[0].Close() // closed twice, counted once
	if open := counts.open.Load(); open != 1 {
		t.Fatalf("open %d after one close, want 1", open)
	}
	server[1].Close()
	if open, acc := counts.open.Load(), counts.accepted.Load(); open != 0 || acc != 2 {
		t.Fatalf("open %d, accepted %d; want 0 and 2", open, acc)
	}
}

// net/http half-closes a connection it is about to close when the
// connection can; the wrapper must not hide that.
func TestCountedConn_CloseWriteReachesTheSocket(t *testing.T) {
	var counts connCounts
	c, s := connect(t, countedListener(t, &counts))
	cw, ok := s.(interface{ CloseWrite() error })
	if !ok {
		t.Fatal("counted connection has no CloseWrite")
	}
	s.Write([]byte("bye"))
	if err := cw.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c) // ends at the half-close, not at a timeout
	if err != nil || string(got) != "bye" {
		t.Fatalf("read %q, %v; want bye then EOF", got, err)
	}
}
