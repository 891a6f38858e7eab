package h1

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// Review finding 3: RoundTrip sends a request again on a fresh connection
// when a pooled one ends before a byte of answer, whatever its method. The
// backend may have acted on it before it closed (a crash after the work,
// a keep-alive limit reached after reading the request): a POST is then
// done twice. http.Transport resends only replayable requests (an
// idempotent method, or an Idempotency-Key), and the balancer's own retry
// (lb.retryable) refuses a non-idempotent request after a broken
// connection; this one, beneath it, does not ask.

// closingBackend answers the first request on each connection and, on the
// second, reads it whole and closes without a word. It counts the requests
// it read by method and path.
type closingBackend struct {
	ln   net.Listener
	mu   sync.Mutex
	seen map[string]int
}

func startClosingBackend(t *testing.T) *closingBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &closingBackend{ln: ln, seen: map[string]int{}}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go b.serve(c)
		}
	}()
	return b
}

func (b *closingBackend) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for i := 0; ; i++ {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		b.mu.Lock()
		b.seen[req.Method+" "+req.URL.Path]++
		b.mu.Unlock()
		if i == 1 {
			return // acted on it, and closed without answering
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	}
}

func (b *closingBackend) count(what string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seen[what]
}

func TestClient_DoesNotResendANonIdempotentRequest(t *testing.T) {
	for _, tc := range []struct{ name, method string }{
		{"POST without a body", http.MethodPost},
		{"PATCH without a body", http.MethodPatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := startClosingBackend(t)
			addr := be.ln.Addr().String()
			cl := NewClient(addr)
			defer cl.Close()
			get, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/warm", nil)
			resp, err := cl.RoundTrip(get, Timeouts{Response: 5 * time.Second}, new(Scratch))
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body) // the connection goes back to the pool
			resp.Body.Close()

			req, _ := http.NewRequest(tc.method, "http://"+addr+"/charge", nil)
			resp, err = cl.RoundTrip(req, Timeouts{Response: 5 * time.Second}, new(Scratch))
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if n := be.count(tc.method + " /charge"); n != 1 {
				t.Fatalf("the backend received %s /charge %d times (RoundTrip: %v); a request that is not idempotent is sent once", tc.method, n, err)
			}
		})
	}
}
