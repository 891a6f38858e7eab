package lb

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"stdlb/lb/h1"
)

// FuzzBalancer_EveryClientGetsItsOwnAnswerOrAnError is the pool's
// invariant under arbitrary backend bytes: a backend answers each request
// with a plain answer carrying the request's id, followed by whatever
// bytes the fuzzer chooses (a forged answer, half a head, a stray CRLF, a
// 408, garbage). Every client must get the answer to its own request, or
// an error the balancer made: never another request's answer, and never
// the bytes that followed one. One balancer and one backend serve the whole
// run, so what one input leaves on a pooled connection meets the next.
func FuzzBalancer_EveryClientGetsItsOwnAnswerOrAnError(f *testing.F) {
	for _, junk := range []string{
		"",
		forged,
		"\r\n",
		"HTTP/1.1 200 OK\r\nContent-Len",
		"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nFORGED\r\n0\r\n\r\n",
		"HTTP/1.1 204 No Content\r\n\r\n" + forged,
		"\x00\xff garbage",
	} {
		for framing := range uint8(3) {
			for method := range uint8(3) {
				f.Add(junk, framing, method)
			}
		}
	}

	var script struct {
		sync.Mutex
		junk    string
		framing uint8
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					script.Lock()
					junk, framing := script.junk, script.framing
					script.Unlock()
					id := req.Header.Get("X-Req-Id")
					if req.URL.Path == "/healthz" {
						id, junk = "healthy", ""
					}
					var b strings.Builder
					switch framing % 3 {
					case 0, 2:
						fmt.Fprintf(&b, "HTTP/1.1 200 OK\r\nX-Id: %s\r\nContent-Length: %d\r\n", id, len(id))
						if framing%3 == 2 {
							b.WriteString("Connection: close\r\n")
						}
						b.WriteString("\r\n")
						if req.Method != http.MethodHead {
							b.WriteString(id)
						}
					case 1:
						fmt.Fprintf(&b, "HTTP/1.1 200 OK\r\nX-Id: %s\r\nTransfer-Encoding: chunked\r\n\r\n", id)
						if req.Method != http.MethodHead {
							fmt.Fprintf(&b, "%x\r\n%s\r\n0\r\n\r\n", len(id), id)
						}
					}
					b.WriteString(junk) // in the same write: it arrives with the answer
					if _, err := io.WriteString(c, b.String()); err != nil || framing%3 == 2 {
						return
					}
				}
			}()
		}
	}()

	lb, err := New(Config{Backends: []BackendConfig{{URL: mustURL(f, "http://"+ln.Addr().String())}},
		DialTimeout: time.Second, ResponseTimeout: 5 * time.Second}, Options{})
	if err != nil {
		f.Fatal(err)
	}
	front := &http.Server{Handler: lb}
	fln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	srv := h1.NewServer(front)
	go srv.Serve(fln)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	base := "http://" + fln.Addr().String()
	var seq atomic.Int64

	f.Fuzz(func(t *testing.T, junk string, framing, method uint8) {
		script.Lock()
		script.junk, script.framing = junk, framing
		script.Unlock()
		m := []string{http.MethodGet, http.MethodHead, http.MethodPost}[method%3]
		for range 3 {
			id := fmt.Sprintf("r%d", seq.Add(1))
			var body io.Reader
			if m == http.MethodPost {
				body = strings.NewReader("body of " + id)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			req, _ := http.NewRequestWithContext(ctx, m, base+"/"+id, body)
			req.Header.Set("X-Req-Id", id)
			resp, err := client.Do(req)
			if err != nil {
				cancel()
				t.Fatalf("%s %s: %v", m, id, err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			cancel()
			switch {
			case err != nil:
				t.Fatalf("%s %s: the answer broke off: %v", m, id, err)
			case resp.StatusCode >= 500 && (isJSONError(string(got)) ||
				m == http.MethodHead && resp.Header.Get("Content-Type") == "application/json"):
				// an error the balancer made: allowed
			case resp.StatusCode != 200 || resp.Header.Get("X-Id") != id:
				t.Fatalf("%s %s got %d from X-Id %q: %q", m, id, resp.StatusCode, resp.Header.Get("X-Id"), got)
			case m != http.MethodHead && string(got) != id:
				t.Fatalf("%s %s got the body %q", m, id, got)
			case m == http.MethodHead && len(got) != 0:
				t.Fatalf("HEAD %s got a body %q", id, got)
			}
		}
	})
}
