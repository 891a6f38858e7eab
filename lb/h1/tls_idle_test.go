package h1

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// Review finding 5: the check of an idle TLS connection before reuse
// (quiet) reads for one millisecond when the socket has bytes; a TLS
// record that has only begun to arrive reads as a timeout, and the
// connection is called quiet. doc.go promises that bytes that arrived
// while a connection sat idle close it; here they become the answer to
// the next request, which is another client's.

// splitConn is a backend's connection whose next Write, once armed, sends
// its first 5 bytes (a TLS record header), reports it on started, and
// sends the rest when release is closed.
type splitConn struct {
	net.Conn
	mu      sync.Mutex
	armed   bool
	started chan struct{}
	release chan struct{}
}

func (c *splitConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	armed := c.armed
	c.armed = false
	c.mu.Unlock()
	if !armed || len(p) <= 5 {
		return c.Conn.Write(p)
	}
	if _, err := c.Conn.Write(p[:5]); err != nil {
		return 0, err
	}
	close(c.started)
	<-c.release
	n, err := c.Conn.Write(p[5:])
	return n + 5, err
}

func TestClient_PartialTLSRecordOnAnIdleConnectionIsNotQuiet(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sc := &splitConn{started: make(chan struct{}), release: make(chan struct{})}
	gotSecond := make(chan struct{})
	idle := make(chan struct{}) // the client has put the connection in its pool
	cfg := &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}
	serve := func(c net.Conn, first bool) {
		defer c.Close()
		br := bufio.NewReader(c)
		for i := 0; ; i++ {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			if first && i == 1 {
				close(gotSecond)
				<-sc.release
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal")
			if first && i == 0 {
				// Bytes nobody asked for, sent while the connection is idle,
				// in a record that arrives in two parts.
				<-idle
				sc.mu.Lock()
				sc.armed = true
				sc.mu.Unlock()
				go io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nFORGED")
			}
		}
	}
	go func() {
		for first := true; ; first = false {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			if first {
				sc.Conn = raw
				go serve(tls.Server(sc, cfg), true)
			} else {
				go serve(tls.Server(raw, cfg), false)
			}
		}
	}()

	cl := NewClient(ln.Addr().String())
	cl.TLS = &tls.Config{InsecureSkipVerify: true}
	defer cl.Close()
	get := func(path string) (string, error) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+ln.Addr().String()+path, nil)
		resp, err := cl.RoundTrip(req, Timeouts{Dial: 5 * time.Second, Response: 5 * time.Second}, new(Scratch))
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if got, err := get("/first"); err != nil || got != "real" {
		t.Fatalf("first: %q %v", got, err)
	}
	close(idle)
	<-sc.started // the record's header is on its way
	waitFor(t, "the record's header to reach the idle connection", func() bool {
		cl.idle.mu.Lock()
		defer cl.idle.mu.Unlock()
		if len(cl.idle.stack) != 1 {
			return false
		}
		_, state := newPeeker(cl.idle.stack[0].nc.(*tls.Conn).NetConn().(*recordConn).Conn).look()
		return state == peekData
	})
	go func() {
		select {
		case <-gotSecond: // the second request went out on the idle connection
		case <-time.After(2 * time.Second): // or on another: nothing to wait for
		}
		close(sc.release)
	}()
	got, err := get("/second")
	if got == "FORGED" {
		t.Fatalf("the second request got the bytes sent on the idle connection before it: %q", got)
	}
	if err == nil && got != "real" {
		t.Fatalf("second: %q", got)
	}
}
