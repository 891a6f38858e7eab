package lb

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Uploads that a backend answers before it has read them: a 401, 403 or
// 413 does exactly that. These used to crash the balancer (a request body
// read by http.Transport's writer after the handler had returned: "invalid
// concurrent Body.Read call") and to smuggle requests hidden in the body.

// countingBackend is an httptest-like backend that records every request
// it parses, so a test can check it saw only the requests clients framed.
type countingBackend struct {
	URL  string
	mu   sync.Mutex
	seen map[string]int // method and path
}

func (c *countingBackend) count(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[key]
}

func (c *countingBackend) paths() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.seen {
		out[k] = v
	}
	return out
}

// refusingBackend answers POST /upload at once with 403, reading nothing
// of the body; Go's server then drops the connection (or reads up to
// 256 KiB of it), as many servers do. Every other request is echoed.
func refusingBackend(t *testing.T) *countingBackend {
	cb := &countingBackend{seen: map[string]int{}}
	srv := namedBackend(t, "b", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cb.mu.Lock()
		cb.seen[r.Method+" "+r.URL.Path]++
		cb.mu.Unlock()
		if r.URL.Path == "/upload" {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, "forbidden: "+r.Header.Get("X-Req-Id"))
			return
		}
		io.Copy(w, r.Body)
	}))
	cb.URL = srv.URL
	return cb
}

// earlyBackend answers POST /upload with 403 as soon as it has the head,
// before it reads any of the body, as nginx or a server checking
// credentials does; then it reads the body by its framing, and the next
// requests, recording each. Other requests are echoed.
func earlyBackend(t *testing.T) *countingBackend {
	cb := &countingBackend{seen: map[string]int{}}
	cb.URL = rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			cb.mu.Lock()
			cb.seen[req.Method+" "+req.URL.Path]++
			cb.mu.Unlock()
			if req.URL.Path == "/upload" {
				body := "forbidden: " + req.Header.Get("X-Req-Id")
				fmt.Fprintf(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
				if _, err := io.Copy(io.Discard, req.Body); err != nil {
					return
				}
				continue
			}
			b, err := io.ReadAll(req.Body)
			if err != nil {
				return
			}
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(b), b)
		}
	})
	return cb
}

// uploadClient sends uploads on its own keep-alive connections, so that a
// connection the balancer keeps open after an early answer is reused.
func uploadClient(f *front) *http.Client {
	tr := f.Client().Transport.(*http.Transport).Clone()
	tr.ExpectContinueTimeout = 5 * time.Second
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// upload posts body to /upload with id; a nil error means the client got an
// answer whose body it read to the end.
func upload(c *http.Client, base, id string, body []byte, expect bool) (int, string, error) {
	req, _ := http.NewRequest("POST", base+"/upload", bytes.NewReader(body))
	req.Header.Set("X-Req-Id", id)
	if expect {
		req.Header.Set("Expect", "100-continue")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// closeIdle closes the idle connections b keeps to its backends, whose
// goroutines (on an in-process backend) a leak check must not count.
func closeIdle(b *Balancer) {
	for _, be := range b.pool.Load().backends {
		be.client.Close()
	}
}

// noPanicLogged fails if a handler's panic was logged, by the balancer or
// by a server.
func noPanicLogged(t *testing.T, logs ...*logBuffer) {
	t.Helper()
	for _, l := range logs {
		if s := l.String(); strings.Contains(s, "panic") {
			t.Fatalf("a panic was logged:\n%s", s)
		}
	}
}

func TestBalancer_EarlyAnswerToAnUploadKeepsEveryClientsOwnAnswer(t *testing.T) {
	cases := []struct {
		name   string
		size   int
		expect bool
	}{
		{"256 KiB bodies", 256 << 10, false},
		{"1 MiB bodies", 1 << 20, false},
		{"small bodies with Expect", 512, true},
		{"256 KiB bodies with Expect", 256 << 10, true},
	}
	for _, fp := range frontPaths {
		for _, tc := range cases {
			t.Run(fp.name+"/"+tc.name, func(t *testing.T) {
				be := refusingBackend(t)
				logs := &logBuffer{}
				cfg := testConfig(t, be.URL)
				cfg.HealthCheck.Interval = time.Hour
				b := newBalancer(t, cfg, logs)
				f := fp.start(t, b)
				base := runtime.NumGoroutine()

				// Bodies made of requests: if any part of a body were read as
				// a request, the backend would see GET /smuggled.
				smuggled := []byte("GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
				body := bytes.Repeat(smuggled, tc.size/len(smuggled)+1)[:tc.size]
				var wg sync.WaitGroup
				var failures atomic.Int64
				errs := make(chan error, 64)
				for w := range 4 {
					wg.Go(func() {
						c := uploadClient(f)
						defer c.CloseIdleConnections()
						for i := range 5 {
							id := fmt.Sprintf("w%d-%d", w, i)
							code, got, err := upload(c, f.URL, id, body, tc.expect)
							switch {
							case err != nil:
								// The balancer lingers after its early answer, so a client
								// still sending its body reads the answer all the same.
								failures.Add(1)
							case code != http.StatusForbidden || got != "forbidden: "+id:
								errs <- fmt.Errorf("%s got %d %q", id, code, got)
							}
							// The same connection, when still open, must carry the next
							// request as it was framed.
							code, got, err = echoOnce(c, f.URL, id)
							if err != nil || code != 200 || got != "echo "+id {
								errs <- fmt.Errorf("echo after %s got %d %q (%v)", id, code, got, err)
							}
						}
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Error(err)
				}
				if n := failures.Load(); n != 0 {
					t.Errorf("%d of 20 uploads got no answer at all", n)
				}
				if n := be.count("GET /smuggled"); n != 0 {
					t.Fatalf("the backend saw %d requests smuggled in bodies: %v", n, be.paths())
				}
				for k := range be.paths() {
					if k != "POST /upload" && k != "POST /echo" {
						t.Fatalf("the backend saw %q, which no client sent: %v", k, be.paths())
					}
				}
				noPanicLogged(t, logs)
				f.Client().CloseIdleConnections()
				closeIdle(b)
				waitGoroutines(t, base)
			})
		}
	}
}

// echoOnce posts "echo id" to /echo and returns the answer.
func echoOnce(c *http.Client, base, id string) (int, string, error) {
	resp, err := c.Post(base+"/echo", "text/plain", strings.NewReader("echo "+id))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestServer_UploadAnsweredEarlyEndsItsConnection: the answer to a
// request whose body was not read to its end says Connection: close, and
// nothing after it on the connection is read as a request, even when the
// rest of the body is made of requests.
func TestServer_UploadAnsweredEarlyEndsItsConnection(t *testing.T) {
	for _, fp := range frontPaths[:2] {
		t.Run(fp.name, func(t *testing.T) {
			be := earlyBackend(t)
			logs := &logBuffer{}
			f := fp.start(t, newBalancer(t, testConfig(t, be.URL), logs))
			conn := dialFront(t, f)
			smuggled := "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
			body := strings.Repeat(smuggled, 200)
			fmt.Fprintf(conn, "POST /upload HTTP/1.1\r\nHost: h\r\nX-Req-Id: u1\r\nContent-Length: %d\r\n\r\n", len(body))
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 403 || string(got) != "forbidden: u1" || !resp.Close {
				t.Fatalf("early answer: %d %q close=%v; want 403 with Connection: close", resp.StatusCode, got, resp.Close)
			}
			// The client sends its body anyway, then another request.
			io.WriteString(conn, body+"GET /echo HTTP/1.1\r\nHost: h\r\n\r\n")
			if b, err := io.ReadAll(br); len(b) != 0 {
				t.Fatalf("after an early answer the connection carried %q (%v)", b, err)
			}
			if be.count("GET /smuggled") != 0 || be.count("GET /echo") != 0 {
				t.Fatalf("the backend saw requests from the rest of the connection: %v", be.paths())
			}
		})
	}
}

// dialFront opens a raw connection to f, over TLS when f's URL is https.
func dialFront(t *testing.T, f *front) net.Conn {
	t.Helper()
	addr := strings.TrimPrefix(strings.TrimPrefix(f.URL, "http://"), "https://")
	var conn net.Conn
	var err error
	if strings.HasPrefix(f.URL, "https://") {
		conn, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	} else {
		conn, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	return conn
}

// TestBalancer_BackendResettingAnUploadIsAClearError: a backend that
// resets a POST as soon as it has the head. The client gets a 502 that
// closes its connection (never a panic, never its next request lost to a
// half-read body), and the log says the backend hung up, never that it
// sent an invalid response.
func TestBalancer_BackendResettingAnUploadIsAClearError(t *testing.T) {
	url := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := readHead(br); err != nil {
			return
		}
		c.(*net.TCPConn).SetLinger(0) // close with a reset
	})
	for _, fp := range frontPaths {
		t.Run(fp.name, func(t *testing.T) {
			logs := &logBuffer{}
			cfg := testConfig(t, url)
			cfg.HealthCheck.Interval = time.Hour
			b := newBalancer(t, cfg, logs)
			f := fp.start(t, b)
			base := runtime.NumGoroutine()
			c := uploadClient(f)
			for i := range 3 {
				code, body, err := upload(c, f.URL, fmt.Sprint(i), bytes.Repeat([]byte("x"), 1<<20), false)
				if err != nil {
					continue // the client was still sending when its connection was closed: allowed
				}
				if code != http.StatusBadGateway || !isJSONError(body) {
					t.Fatalf("upload %d: %d %q, want a 502 from the balancer", i, code, body)
				}
			}
			c.CloseIdleConnections()
			// Whether the reset came while the body was being sent or after it
			// had all gone (loopback buffers a megabyte) depends on the
			// kernel; either way the backend hung up, and the log says so.
			if logs.count("failed: backend", "reset the connection") == 0 && logs.count("failed: backend", "closed the connection") == 0 {
				t.Fatalf("the log does not say the backend hung up:\n%s", logs)
			}
			if logs.count("sent an invalid response") != 0 {
				t.Fatalf("a reset was blamed as an invalid response:\n%s", logs)
			}
			noPanicLogged(t, logs)
			f.Client().CloseIdleConnections()
			closeIdle(b)
			waitGoroutines(t, base)
		})
	}
}

// TestBalancer_ClientResettingAnUploadIsTheClients: a client that resets
// in the middle of its body is logged as the client's doing (499), not as
// a backend failure, and the backend connection is not reused.
func TestBalancer_ClientResettingAnUploadIsTheClients(t *testing.T) {
	got := make(chan int, 1)
	be := namedBackend(t, "b", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		got <- int(n)
	}))
	for _, fp := range frontPaths[:2] {
		t.Run(fp.name, func(t *testing.T) {
			logs := &logBuffer{}
			cfg := testConfig(t, be.URL)
			cfg.HealthCheck.Interval = time.Hour
			b := newBalancer(t, cfg, logs)
			f := fp.start(t, b)
			conn := dialFront(t, f)
			io.WriteString(conn, "POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("x", 5000))
			tcpOf(conn).SetLinger(0)
			tcpOf(conn).Close() // a reset, without TLS's close_notify (a clean end: 400, as nginx logs it)
			if n := receive(t, got, "the backend to see the body end"); n >= 100000 {
				t.Fatalf("the backend read %d bytes of a body the client cut off", n)
			}
			waitFor(t, "the access log line", func() bool {
				if logs.count("path=/up", "status=499") == 1 {
					return true
				}
				if logs.count("path=/up") != 0 {
					t.Fatalf("a client's reset is not logged as 499:\n%s", logs)
				}
				return false
			})
			if b.Status()[0].Failures != 0 {
				t.Fatalf("a client's reset counted as a backend failure: %+v", b.Status()[0])
			}
			if logs.count("level=ERROR") != 0 {
				t.Fatalf("a client's reset was logged as an error:\n%s", logs)
			}
		})
	}
}

// tcpOf returns the TCP connection under conn.
func tcpOf(conn net.Conn) *net.TCPConn {
	if tc, ok := conn.(*tls.Conn); ok {
		return tc.NetConn().(*net.TCPConn)
	}
	return conn.(*net.TCPConn)
}

// TestBalancer_BrokenRequestBodyIs400AndEndsTheConnection: a chunked body
// with a bad chunk size, or a Content-Length body cut short, gets 400 (the
// client's fault, never a 502), and the connection ends: the request
// hidden after the broken chunk never reaches the backend.
func TestBalancer_BrokenRequestBodyIs400AndEndsTheConnection(t *testing.T) {
	for _, fp := range frontPaths[:2] {
		for _, tc := range []struct{ name, raw string }{
			{"bad chunk size", "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n" +
				"GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"},
			{"chunk data without CRLF", "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"},
			{"chunk size with a bare LF", "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n" +
				"GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"},
		} {
			t.Run(fp.name+"/"+tc.name, func(t *testing.T) {
				be := refusingBackend(t)
				logs := &logBuffer{}
				cfg := testConfig(t, be.URL)
				cfg.HealthCheck.Interval = time.Hour
				b := newBalancer(t, cfg, logs)
				f := fp.start(t, b)
				conn := dialFront(t, f)
				io.WriteString(conn, tc.raw)
				br := bufio.NewReader(conn)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusBadRequest || !isJSONError(string(body)) || !resp.Close {
					t.Fatalf("broken body: %d %q close=%v; want a 400 that closes the connection", resp.StatusCode, body, resp.Close)
				}
				if rest, _ := io.ReadAll(br); len(rest) != 0 {
					t.Fatalf("after the 400 the connection carried %q", rest)
				}
				if be.count("GET /smuggled") != 0 {
					t.Fatalf("the request after the broken body reached the backend: %v", be.paths())
				}
				if st := b.Status()[0]; st.Failures != 0 {
					t.Fatalf("a client's broken body counted as a backend failure: %+v", st)
				}
			})
		}
	}
}

// TestBalancer_ShortRequestBodyIs400: a client that half-closes before the
// end of its Content-Length body is told 400 and the connection ends.
func TestBalancer_ShortRequestBodyIs400(t *testing.T) {
	be := refusingBackend(t)
	logs := &logBuffer{}
	f := startBalancer(t, newBalancer(t, testConfig(t, be.URL), logs))
	conn := dialFront(t, f)
	io.WriteString(conn, "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 20\r\n\r\nonly ten b")
	conn.(*net.TCPConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !isJSONError(string(body)) {
		t.Fatalf("short body: %d %q, want 400", resp.StatusCode, body)
	}
	if !strings.Contains(string(body), "ended before the end of its body") {
		t.Fatalf("the 400 does not say why: %q", body)
	}
}

// TestBalancer_BodyReaderDoesNotOutliveTheExchange: a backend answers an
// upload at once and never reads it, while the client trickles its body.
// The answer goes out, and once the handler has returned nothing reads the
// body: the connection closes (the client sees EOF after the answer).
func TestBalancer_BodyReaderDoesNotOutliveTheExchange(t *testing.T) {
	be := earlyBackend(t)
	logs := &logBuffer{}
	f := startBalancer(t, newBalancer(t, testConfig(t, be.URL), logs))
	conn := dialFront(t, f)
	io.WriteString(conn, "POST /upload HTTP/1.1\r\nHost: h\r\nX-Req-Id: t1\r\nContent-Length: 1000000\r\n\r\nfirst bytes")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	if resp.StatusCode != 403 || !resp.Close {
		t.Fatalf("early answer: %d close=%v", resp.StatusCode, resp.Close)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		if _, err := conn.Write(bytes.Repeat([]byte("y"), 4096)); err != nil {
			break // the balancer closed the connection, as it must
		}
	}
	if ctx.Err() != nil {
		t.Fatal("the balancer kept reading a body whose request was over")
	}
	noPanicLogged(t, logs)
}

// TestBalancer_ExpectContinueReachesTheClientAndTheBodyTheBackend: a
// client that waits for 100 Continue gets it once the backend asks for the
// body, and the backend gets the body whole.
func TestBalancer_ExpectContinueReachesTheClientAndTheBodyTheBackend(t *testing.T) {
	be := refusingBackend(t)
	for _, fp := range frontPaths[:2] {
		t.Run(fp.name, func(t *testing.T) {
			f := fp.start(t, newBalancer(t, testConfig(t, be.URL), &logBuffer{}))
			body := strings.Repeat("expect me ", 10000)
			var got100 atomic.Bool
			ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
				Got100Continue: func() { got100.Store(true) },
			})
			req, _ := http.NewRequestWithContext(ctx, "POST", f.URL+"/echo", strings.NewReader(body))
			req.Header.Set("Expect", "100-continue")
			resp, err := uploadClient(f).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(got) != body {
				t.Fatalf("echo with Expect: %d, %d bytes; want 200 and the %d sent", resp.StatusCode, len(got), len(body))
			}
			if !got100.Load() {
				t.Fatal("the client never got 100 Continue (it sent the body after its own timeout)")
			}
		})
	}
}

// TestBalancer_PassesResponseTrailers: trailers a backend announces and
// sends after a chunked body reach the client.
func TestBalancer_PassesResponseTrailers(t *testing.T) {
	be := namedBackend(t, "b", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		io.WriteString(w, "data")
		w.(http.Flusher).Flush()
		w.Header().Set("X-Sum", "42")
	}))
	f := startBalancer(t, newBalancer(t, testConfig(t, be.URL), &logBuffer{}))
	resp, err := f.Client().Get(f.URL + "/t")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "data" || resp.Trailer.Get("X-Sum") != "42" {
		t.Fatalf("body %q trailer %v; want data and X-Sum: 42", body, resp.Trailer)
	}
}
