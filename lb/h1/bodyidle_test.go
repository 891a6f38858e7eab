package h1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// stallingBackend answers every request with answer, then sends nothing
// more and keeps the connection open until the test ends.
func stallingBackend(t *testing.T, answer string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				if _, err := c.Read(buf); err != nil {
					return
				}
				io.WriteString(c, answer)
				<-done
			}()
		}
	}()
	return ln.Addr().String()
}

// TestClient_CutsABodyTheBackendStopsSending: a backend that sends a head
// and part of a body, then nothing, fails the body's read after BodyIdle
// with a KindTimeout error, in every framing. (Found by an attacker's
// review: nothing bounded a body once its head had come, and such a
// backend held the client for as long as the client would wait.)
func TestClient_CutsABodyTheBackendStopsSending(t *testing.T) {
	for _, tc := range []struct{ name, answer string }{
		{"Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"},
		{"chunked, in the middle of a chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nabc"},
		{"until the connection closes", "HTTP/1.0 200 OK\r\n\r\nabc"},
		{"head only", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := stallingBackend(t, tc.answer)
			cl := NewClient(addr)
			defer cl.Close()
			req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
			const idle = 50 * time.Millisecond
			resp, err := cl.RoundTrip(req, Timeouts{Response: 10 * time.Second, BodyIdle: idle}, new(Scratch))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			read := make(chan error, 1)
			go func() {
				_, err := io.ReadAll(resp.Body)
				read <- err
			}()
			select {
			case err := <-read:
				var he *Error
				if !errors.As(err, &he) || he.Kind != KindTimeout || !strings.Contains(he.Reason, "sent nothing for 50ms") {
					t.Fatalf("reading the body: %v, want an *Error of KindTimeout", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the body's read still waits, 10s after the backend stopped sending")
			}
		})
	}
}

// TestClient_BodyIdleIsASilenceNotATotal: a body that keeps coming is read
// to its end however long it takes in all. Here it takes more than twice
// BodyIdle, in pieces 25 ms apart against a BodyIdle of 250 ms: only a
// pause of ten times the backend's own could cut it.
func TestClient_BodyIdleIsASilenceNotATotal(t *testing.T) {
	t.Parallel()
	const pieces, every, idle = 24, 25 * time.Millisecond, 250 * time.Millisecond
	be := startServer(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		for i := range pieces {
			fmt.Fprintf(w, "%02d", i)
			rc.Flush()
			time.Sleep(every)
		}
	})})
	cl := NewClient(be.Addr())
	defer cl.Close()
	req, _ := http.NewRequest("GET", "http://"+be.Addr()+"/", nil)
	start := time.Now()
	resp, err := cl.RoundTrip(req, Timeouts{Response: 10 * time.Second, BodyIdle: idle}, new(Scratch))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("after %s and %d bytes: %v", time.Since(start).Round(time.Millisecond), len(b), err)
	}
	if len(b) != 2*pieces {
		t.Fatalf("read %d bytes, want %d", len(b), 2*pieces)
	}
	if d := time.Since(start); d < idle*3/2 {
		t.Fatalf("the body took %s, less than the %s this test needs to show anything", d, idle*3/2)
	}
}

// cancelledLater is a context whose Err says it was cancelled once end is
// called, while its Done never closes: it holds open, for as long as a test
// needs, the moment between a cancellation and the run of its AfterFunc.
type cancelledLater struct {
	context.Context
	ended atomic.Bool
}

func (c *cancelledLater) end() { c.ended.Store(true) }

func (c *cancelledLater) Err() error {
	if c.ended.Load() {
		return context.Canceled
	}
	return nil
}

// TestClient_NeverPoolsTheConnectionOfACancelledRequest: a body read to
// its end after its request was cancelled, but before the cancellation's
// abort ran, does not put the connection back in the pool: the abort may
// yet set its deadlines in the past, and the peek before reuse does not
// look at deadlines, so the next request would fail on it. (Found by a
// review of this session's diff: armIdle aborts itself on a cancelled
// context, and the connection then went back to the pool.)
func TestClient_NeverPoolsTheConnectionOfACancelledRequest(t *testing.T) {
	addr, conns := scriptedBackend(t, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	cl := NewClient(addr)
	defer cl.Close()
	ctx := &cancelledLater{Context: context.Background()}
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/", nil)
	resp, err := cl.RoundTrip(req, Timeouts{Response: 10 * time.Second, BodyIdle: time.Minute}, new(Scratch))
	if err != nil {
		t.Fatal(err)
	}
	ctx.end()
	io.ReadAll(resp.Body)
	resp.Body.Close()
	cl.idle.mu.Lock()
	pooled := len(cl.idle.stack)
	cl.idle.mu.Unlock()
	if pooled != 0 {
		t.Fatalf("the connection of a cancelled request went back to the pool")
	}
	req, _ = http.NewRequest("POST", "http://"+addr+"/", strings.NewReader("x"))
	req.ContentLength = 1
	resp, err = cl.RoundTrip(req, Timeouts{Response: 10 * time.Second}, new(Scratch))
	if err != nil {
		t.Fatalf("the next request: %v", err)
	}
	resp.Body.Close()
	if n := conns.Load(); n != 2 {
		t.Errorf("two requests took %d connections, want 2", n)
	}
}
