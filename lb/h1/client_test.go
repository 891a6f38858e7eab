package h1

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestClient_ExpectContinueOnAFreshConnection: a request with Expect:
// 100-continue on a connection just dialled. (Found by the soak: the
// connection's head limit was 0 until a head set it, and the wait for the
// 100 Continue peeked before that, so every such first upload got a 502
// "head too large".)
func TestClient_ExpectContinueOnAFreshConnection(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	defer backend.Close()
	cl := NewClient(strings.TrimPrefix(backend.URL, "http://"))
	defer cl.Close()
	req, _ := http.NewRequest(http.MethodPost, backend.URL+"/", strings.NewReader("hello"))
	req.ContentLength = 5
	req.Header.Set("Expect", "100-continue")
	resp, err := cl.RoundTrip(req, Timeouts{Response: 5 * time.Second}, new(Scratch))
	if err != nil {
		t.Fatalf("RoundTrip with Expect: 100-continue on a fresh connection: %v", err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || string(b) != "hello" {
		t.Errorf("answer %d %q, want 200 \"hello\"", resp.StatusCode, b)
	}
}

// TestClient_NeverSendsOneBodyOnTwoConnections: a request body is given to
// one connection at most. (Found by the soak: RoundTrip sent a request
// again on a fresh connection when a pooled one turned out closed, if its
// body was not yet taken; the first writer marked it taken only once its
// goroutine ran, so a failure seen before that started a second writer on
// the same body, and the first took its start into the dead connection.
// The backend got a shorter, well-formed body and answered 200.)
//
// The pooled connection is in memory: it answers one GET, then reads EOF,
// as a keep-alive connection the backend closed just as the client took
// it. The body gives a byte per read, and GOMAXPROCS is 1 so that the first
// writer cannot run before the check.
func TestClient_NeverSendsOneBodyOnTwoConnections(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var posts atomic.Int64 // POSTs that reached the echo backend
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method == http.MethodPost {
			posts.Add(1)
		}
		w.Write(b)
	}))
	defer echo.Close()
	for i := range 20 {
		before := posts.Load()
		dials := 0
		cl := NewClient("backend:80")
		cl.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if dials++; dials == 1 {
				return &closedAfterOne{answer: []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")}, nil
			}
			return (&net.Dialer{}).DialContext(ctx, "tcp", strings.TrimPrefix(echo.URL, "http://"))
		}
		get, _ := http.NewRequest(http.MethodGet, "http://backend/", nil)
		resp, err := cl.RoundTrip(get, Timeouts{Response: 5 * time.Second}, new(Scratch))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body) // the connection goes back to the pool
		resp.Body.Close()

		const body = "hello, world"
		post, _ := http.NewRequest(http.MethodPost, "http://backend/", &byteAtATime{s: body})
		post.ContentLength = -1 // chunked
		resp, err = cl.RoundTrip(post, Timeouts{Response: 5 * time.Second}, new(Scratch))
		if err != nil {
			// Refusing to send it again is right too, but then nothing of it
			// may have reached another connection.
			if n := posts.Load() - before; n != 0 {
				t.Fatalf("round %d: the request failed, yet %d POST reached the backend", i, n)
			}
			cl.Close()
			continue
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cl.Close()
		if string(got) != body {
			t.Fatalf("round %d: sent the body %q, the backend received %q (and answered %d)", i, body, got, resp.StatusCode)
		}
	}
}

// byteAtATime is a request body that gives one byte per read, as a client
// trickling its upload does.
type byteAtATime struct {
	mu sync.Mutex
	s  string
}

func (b *byteAtATime) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.s == "" {
		return 0, io.EOF
	}
	p[0], b.s = b.s[0], b.s[1:]
	return 1, nil
}

// closedAfterOne is an in-memory backend connection that gives answer,
// then reads as closed by the backend; writes succeed until Close.
type closedAfterOne struct {
	mu     sync.Mutex
	answer []byte
	closed bool
}

func (c *closedAfterOne) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.answer) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.answer)
	c.answer = c.answer[n:]
	return n, nil
}

func (c *closedAfterOne) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	return len(p), nil
}

func (c *closedAfterOne) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return nil
}

func (c *closedAfterOne) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
}
func (c *closedAfterOne) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80}
}
func (c *closedAfterOne) SetDeadline(time.Time) error      { return nil }
func (c *closedAfterOne) SetReadDeadline(time.Time) error  { return nil }
func (c *closedAfterOne) SetWriteDeadline(time.Time) error { return nil }
