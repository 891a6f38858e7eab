package lb

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"stdlb/lb/h1"
)

// BenchmarkPick answers: what does choosing a backend cost, per policy and
// pool size, with every core picking at once?
func BenchmarkPick(b *testing.B) {
	for _, name := range []string{AlgorithmRoundRobin, AlgorithmWeightedRoundRobin, AlgorithmLeastConnections} {
		for _, n := range []int{3, 16} {
			b.Run(fmt.Sprintf("%s/backends=%d", name, n), func(b *testing.B) {
				bs := testBackends(n)
				weights := make([]int, n)
				for i := range weights {
					weights[i] = i%3 + 1
				}
				p, _ := NewPolicy(name, bs, weights)
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if p.Pick(0) < 0 {
							b.Fatal("no backend")
						}
					}
				})
			})
		}
	}
}

// BenchmarkProxy answers: what does one request through the balancer cost,
// end to end over loopback keep-alive connections to an httptest backend?
// The client and the backend run in the same process, so the figures
// include them: the "direct" case, the client talking to the backend
// itself, is that share, and the difference is the balancer's.
func BenchmarkProxy(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from the backend")
	}))
	defer backend.Close()
	b.Run("direct", func(b *testing.B) { benchmarkGet(b, backend.URL+"/") })
	for _, server := range []string{"lb", "net-http"} {
		for _, accessLog := range []bool{false, true} {
			b.Run(fmt.Sprintf("keepalive/server=%s/access-log=%v", server, accessLog), func(b *testing.B) {
				cfg := Config{Backends: []BackendConfig{{URL: mustURL(b, backend.URL)}}, AccessLog: accessLog}
				bal, err := New(cfg, Options{Logger: (&logBuffer{}).logger(), AccessWriter: io.Discard})
				if err != nil {
					b.Fatal(err)
				}
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				// As in production (h1.Server), or net/http's server alone
				// (as an embedder of lb.Balancer may run it).
				var srv interface{ Close() error }
				if server == "lb" {
					s := h1.NewServer(&http.Server{Handler: bal})
					go s.Serve(ln)
					srv = s
				} else {
					s := &http.Server{Handler: bal}
					go s.Serve(ln)
					srv = s
				}
				defer srv.Close()
				benchmarkGet(b, "http://"+ln.Addr().String()+"/")
			})
		}
	}
}

// benchmarkGet measures sequential keep-alive GETs of url.
func benchmarkGet(b *testing.B, url string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	req, _ := http.NewRequest("GET", url, nil)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// BenchmarkServeHTTP answers: what does the balancer's handler cost per
// request, the network and net/http's server aside? The backend is an
// in-memory connection that answers every request with a canned response,
// and the ResponseWriter is a reused fake, so what is left is the
// balancer: pick, ReverseProxy, the direct transport, the access log.
func BenchmarkServeHTTP(b *testing.B) {
	for _, accessLog := range []bool{false, true} {
		b.Run(fmt.Sprintf("access-log=%v", accessLog), func(b *testing.B) {
			cfg := Config{Backends: []BackendConfig{{URL: mustURL(b, "http://10.0.0.1:80")}}, AccessLog: accessLog}
			bal, err := New(cfg, Options{Logger: discardLogger(), AccessLog: discardLogger()})
			if err != nil {
				b.Fatal(err)
			}
			bal.pool.Load().backends[0].client.Dial = func(context.Context, string, string) (net.Conn, error) {
				return &cannedConn{answer: []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" +
					"Date: Fri, 27 Nov 2026 12:00:00 GMT\r\nContent-Length: 22\r\n\r\nhello from the backend")}, nil
			}
			req := httptest.NewRequest("GET", "http://shop.example/products?page=2", nil)
			req.RemoteAddr = "203.0.113.9:51234"
			req.Header.Set("User-Agent", "bench/1.0")
			req.Header.Set("Accept", "*/*")
			w := &fakeWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				w.code = 0
				bal.ServeHTTP(w, req)
				if w.code != 200 {
					b.Fatalf("status %d", w.code)
				}
			}
		})
	}
}

// cannedConn is a backend connection in memory: each request written to it
// is answered with answer.
type cannedConn struct {
	answer  []byte
	pending []byte
}

func (c *cannedConn) Write(p []byte) (int, error) {
	c.pending = c.answer
	return len(p), nil
}

func (c *cannedConn) Read(p []byte) (int, error) {
	if len(c.pending) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

func (c *cannedConn) Close() error                     { return nil }
func (c *cannedConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *cannedConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *cannedConn) SetDeadline(time.Time) error      { return nil }
func (c *cannedConn) SetReadDeadline(time.Time) error  { return nil }
func (c *cannedConn) SetWriteDeadline(time.Time) error { return nil }

// fakeWriter is a reusable ResponseWriter that keeps only the status.
type fakeWriter struct {
	h    http.Header
	code int
}

func (w *fakeWriter) Header() http.Header { return w.h }
func (w *fakeWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
func (w *fakeWriter) Write(p []byte) (int, error) {
	w.WriteHeader(200)
	return len(p), nil
}
