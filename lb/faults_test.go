package lb

// Tests for issue 5, "Trust it under faults and abuse", that need only the
// balancer: clients that go away, and backends that hang, reset, go stale or
// answer garbage. The tests that need the real http.Server settings
// (timeouts, header limits, rate limiting) are in ../abuse_test.go.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
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

// waitGoroutines polls until no more goroutines run than base, and fails
// with every goroutine's stack if that does not happen within failAfter.
func waitGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(failAfter)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines left, %d before the request: something was left behind\n%s", n, base, buf)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// receive waits for a value on ch for up to failAfter.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(failAfter):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// firstLines returns up to n log lines containing sub.
func firstLines(logs *logBuffer, sub string, n int) string {
	var out []string
	for line := range strings.SplitSeq(logs.String(), "\n") {
		if strings.Contains(line, sub) && len(out) < n {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// noWarnOrError fails if the event log has a WARN or ERROR line.
func noWarnOrError(t *testing.T, logs *logBuffer, what string) {
	t.Helper()
	if logs.count("level=ERROR") != 0 || logs.count("level=WARN") != 0 {
		t.Fatalf("%s was logged as a warning or an error:\n%s", what, logs)
	}
}

func TestBalancer_ClientGoneCancelsBackendRequestAndLeavesNothingBehind(t *testing.T) {
	cases := []struct {
		name    string
		method  string
		body    string
		midBody bool // the client leaves after part of the answer, else while waiting for it
	}{
		{"GET/direct transport/waiting for headers", "GET", "", false},
		{"GET/direct transport/mid-body", "GET", "", true},
		{"POST/http.Transport/waiting for headers", "POST", "order=42", false},
		{"POST/http.Transport/mid-body", "POST", "order=42", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			entered := make(chan struct{}, 1)
			cancelled := make(chan struct{}, 1)
			backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				if tc.midBody {
					w.WriteHeader(http.StatusOK)
					io.WriteString(w, "first part\n")
					http.NewResponseController(w).Flush()
				}
				entered <- struct{}{}
				<-r.Context().Done()
				cancelled <- struct{}{}
			}))
			defer backend.Close()
			logs := &logBuffer{}
			bal := newBalancer(t, testConfig(t, backend.URL), logs)
			front := startBalancer(t, bal)
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}

			base := runtime.NumGoroutine()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, _ := http.NewRequestWithContext(ctx, tc.method, front.URL+"/gone", body)
			if tc.midBody {
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				line, err := bufio.NewReader(resp.Body).ReadString('\n')
				if err != nil || line != "first part\n" {
					t.Fatalf("first part of the answer: %q, %v", line, err)
				}
				receive(t, entered, "the backend to be waiting")
				cancel()
				resp.Body.Close()
			} else {
				errc := make(chan error, 1)
				go func() {
					resp, err := client.Do(req)
					if err == nil {
						resp.Body.Close()
					}
					errc <- err
				}()
				receive(t, entered, "the request to reach the backend")
				cancel()
				if err := receive(t, errc, "the client's request to end"); !errors.Is(err, context.Canceled) {
					t.Fatalf("client error = %v, want context.Canceled", err)
				}
			}

			receive(t, cancelled, "the backend request to be cancelled")
			waitFor(t, "the access-log line", func() bool { return logs.count("path=/gone") == 1 })
			if logs.count("path=/gone", "status=499") != 1 {
				t.Fatalf("a client that hung up should be logged as 499:\n%s", logs)
			}
			noWarnOrError(t, logs, "a client hanging up")
			if st := bal.Status()[0]; st.Failures != 0 || !st.Healthy || st.InFlight != 0 {
				t.Fatalf("backend after a client hang-up: %+v; want no failure, healthy, nothing in flight", st)
			}
			tr.CloseIdleConnections()
			waitGoroutines(t, base)
		})
	}
}

func TestBalancer_GatewayTimeoutForRequestsWithABody(t *testing.T) {
	for _, method := range []string{"POST", "PUT", "PATCH"} {
		t.Run(method, func(t *testing.T) {
			release := make(chan struct{})
			defer close(release)
			gotBody := make(chan string, 1)
			cancelled := make(chan struct{}, 1)
			var otherSaw atomic.Int64
			slow := namedBackend(t, "slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				gotBody <- string(b)
				select {
				case <-release:
				case <-r.Context().Done():
					cancelled <- struct{}{}
				}
			}))
			other := namedBackend(t, "other", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { otherSaw.Add(1) }))
			cfg := testConfig(t, slow.URL, other.URL)
			cfg.ResponseTimeout = 100 * time.Millisecond
			logs := &logBuffer{}
			bal := newBalancer(t, cfg, logs)
			front := startBalancer(t, bal)

			req, _ := http.NewRequest(method, front.URL+"/slow", strings.NewReader("charge 10 EUR"))
			start := time.Now()
			resp, err := front.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusGatewayTimeout {
				t.Fatalf("%s to a backend slower than the response timeout: %d, want 504", method, resp.StatusCode)
			}
			if took := time.Since(start); took < 100*time.Millisecond {
				t.Fatalf("504 after %v, before the 100ms response timeout", took)
			}
			errorBody(t, resp)
			if got := receive(t, gotBody, "the backend to read the body"); got != "charge 10 EUR" {
				t.Fatalf("backend got body %q", got)
			}
			receive(t, cancelled, "the timed-out backend request to be cancelled")
			if otherSaw.Load() != 0 {
				t.Fatalf("a timed-out %s was replayed on another backend", method)
			}
			if logs.count(method+" /slow failed", "sent no response headers within 100ms", "answered 504 after 1 attempt") != 1 {
				t.Fatalf("want one line explaining the 504:\n%s", logs)
			}
			if st := bal.Status()[0]; st.InFlight != 0 || st.Failures != 1 {
				t.Fatalf("slow backend after the 504: %+v; want 1 failure, nothing in flight", st)
			}
		})
	}
}

func TestBalancer_BackendResetMidBodyAbortsClientResponseWithABody(t *testing.T) {
	cases := []struct {
		name string
		head string // the response head; the backend then sends 10000 bytes of body and resets
		body func(string) string
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", func(s string) string { return s }},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", func(s string) string {
			return fmt.Sprintf("%x\r\n%s\r\n", len(s), s)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clientHasPart := make(chan struct{})
			gotBody := make(chan string, 1)
			url := rawBackend(t, func(c net.Conn) {
				req, err := readHead(bufio.NewReader(c))
				if err != nil {
					return
				}
				b, _ := io.ReadAll(req.Body)
				gotBody <- string(b)
				io.WriteString(c, tc.head+tc.body(strings.Repeat("x", 10000)))
				<-clientHasPart
				c.(*net.TCPConn).SetLinger(0) // close with a reset
			})
			logs := &logBuffer{}
			bal := newBalancer(t, testConfig(t, url), logs)
			front := startBalancer(t, bal)
			resp, err := front.Client().Post(front.URL+"/upload", "text/plain", strings.NewReader("photo bytes"))
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d before the reset, want the backend's 200", resp.StatusCode)
			}
			if _, err := io.ReadFull(resp.Body, make([]byte, 1000)); err != nil {
				t.Fatalf("first 1000 bytes: %v", err)
			}
			close(clientHasPart)
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil {
				t.Fatalf("client read %d more bytes and a clean end of a response the backend broke off", n)
			}
			if got := receive(t, gotBody, "the backend's copy of the body"); got != "photo bytes" {
				t.Fatalf("backend got body %q", got)
			}
			waitFor(t, "the abort to be logged", func() bool { return logs.count("path=/upload") == 1 })
			if logs.count("POST /upload: backend "+url+" broke off the response after") != 1 ||
				logs.count("path=/upload", "aborted=true") != 1 {
				t.Fatalf("want the abort explained and marked in the access log:\n%s", logs)
			}
			if st := bal.Status()[0]; st.Failures != 1 || st.InFlight != 0 {
				t.Fatalf("backend after a broken answer: %+v; want 1 failure, nothing in flight", st)
			}
		})
	}
}

// staleBackend answers the first request on each connection and promises
// keep-alive, then breaks the promise: with "fin" it closes the connection
// right after answering (as a backend with a short idle timeout does); with
// "rst" it waits for the next request on the connection and resets it
// unanswered (as a restarted backend or a NAT that forgot the connection
// does). It counts the requests it answered.
func staleBackend(t *testing.T, mode string, answered *atomic.Int64) string {
	return rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := readHead(br)
		if err != nil {
			return
		}
		answered.Add(1)
		body := "ok"
		if req.Method == "HEAD" {
			body = ""
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"+body)
		if mode == "rst" {
			if _, err := readHead(br); err == nil {
				c.(*net.TCPConn).SetLinger(0)
			}
		}
	})
}

func TestBalancer_BackendClosingKeepAliveConnectionsIsRetriedTransparently(t *testing.T) {
	// Every idempotent method without a body, whichever transport takes it
	// (GET, HEAD, OPTIONS and DELETE go direct; PUT and TRACE through
	// http.Transport), must survive a stale pooled connection, with one
	// backend and so no other backend to retry on.
	methods := []string{"GET", "HEAD", "OPTIONS", "DELETE", "PUT", "TRACE"}
	for _, mode := range []string{"fin", "rst"} {
		for _, method := range methods {
			t.Run(mode+"/"+method, func(t *testing.T) {
				var answered atomic.Int64
				url := staleBackend(t, mode, &answered)
				logs := &logBuffer{}
				bal := newBalancer(t, testConfig(t, url), logs)
				front := startBalancer(t, bal)
				client := front.Client()

				var failed atomic.Int64
				var firstErr sync.Once
				var errMsg atomic.Value
				do := func() {
					req, _ := http.NewRequest(method, front.URL+"/item/7", nil)
					resp, err := client.Do(req)
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK {
							err = fmt.Errorf("status %d", resp.StatusCode)
						}
					}
					if err != nil {
						failed.Add(1)
						firstErr.Do(func() { errMsg.Store(err.Error()) })
					}
				}
				const sequential, workers, each = 40, 4, 15
				for range sequential {
					do()
				}
				var wg sync.WaitGroup
				for range workers {
					wg.Go(func() {
						for range each {
							do()
						}
					})
				}
				wg.Wait()
				const total = sequential + workers*each
				if n := failed.Load(); n != 0 {
					t.Fatalf("%d of %d %s requests failed on a backend whose keep-alive connections go stale; first: %v\n%s",
						n, total, method, errMsg.Load(), firstLines(logs, "level=ERROR", 2))
				}
				if n := answered.Load(); n != total {
					t.Fatalf("backend answered %d requests for %d sent", n, total)
				}
				noWarnOrError(t, logs, "a stale keep-alive connection")
				if st := bal.Status()[0]; st.Failures != 0 || !st.Healthy {
					t.Fatalf("backend after stale connections: %+v; want no failure and healthy", st)
				}
			})
		}
	}
}

func TestBalancer_GarbageFromBackendIs502WithJSONError(t *testing.T) {
	answers := []struct{ name, raw string }{
		{"not HTTP", "hello, I am not a web server\r\n\r\n"},
		{"bad status code", "HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n"},
		{"bad header line", "HTTP/1.1 200 OK\r\nthis line has no colon\r\n\r\n"},
		{"binary", "\x00\x01\x02\xff\xfe garbage \x7f\r\n\r\n"},
		{"bad content-length", "HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\nbody"},
	}
	for _, a := range answers {
		for _, method := range []string{"GET", "POST"} {
			t.Run(a.name+"/"+method, func(t *testing.T) {
				url := rawBackend(t, func(c net.Conn) {
					req, err := readHead(bufio.NewReader(c))
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					io.WriteString(c, a.raw)
				})
				logs := &logBuffer{}
				bal := newBalancer(t, testConfig(t, url), logs)
				front := startBalancer(t, bal)
				for i := range 2 { // and the balancer keeps answering
					var body io.Reader
					if method == "POST" {
						body = strings.NewReader("a=1")
					}
					req, _ := http.NewRequest(method, front.URL+"/junk", body)
					resp, err := front.Client().Do(req)
					if err != nil {
						t.Fatalf("request %d: %v", i+1, err)
					}
					if resp.StatusCode != http.StatusBadGateway {
						resp.Body.Close()
						t.Fatalf("request %d to a backend answering %q: %d, want 502", i+1, a.raw, resp.StatusCode)
					}
					errorBody(t, resp)
					resp.Body.Close()
				}
				// The second failure within throttleEvery is counted, not logged.
				if n := logs.count(method+" /junk failed: backend "+url, "answered 502 after 1 attempt"); n != 1 {
					t.Fatalf("want one line explaining the 502s, got %d:\n%s", n, logs)
				}
				if st := bal.Status()[0]; st.Failures != 2 || st.InFlight != 0 {
					t.Fatalf("backend after two garbage answers: %+v", st)
				}
			})
		}
	}
}

func TestBalancer_ClientThatLeavesGetsNoMadeUpAnswer(t *testing.T) {
	// Through both of Server's paths: its own loop (GET) and net/http's
	// (a POST with a body is handed over). A half-closed client can still
	// read: it must read nothing, not an empty 200.
	for _, tc := range []struct{ name, raw string }{
		{"fast path", "GET /wait HTTP/1.1\r\nHost: h\r\n\r\n"},
		{"net/http", "POST /wait HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entered := make(chan struct{}, 1)
			backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				entered <- struct{}{}
				<-r.Context().Done()
			}))
			defer backend.Close()
			logs := &logBuffer{}
			front := startBalancer(t, newBalancer(t, testConfig(t, backend.URL), logs))
			conn, err := net.Dial("tcp", front.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(conn, tc.raw)
			receive(t, entered, "the request to reach the backend")
			conn.(*net.TCPConn).CloseWrite()
			if b, err := io.ReadAll(conn); len(b) != 0 || err != nil {
				t.Fatalf("the client read %q, %v; want nothing, then EOF", b, err)
			}
			waitFor(t, "the access-log line", func() bool { return logs.count("path=/wait") == 1 })
			if logs.count("path=/wait", "status=499") != 1 {
				t.Fatalf("want one 499 line:\n%s", logs)
			}
		})
	}
}

func TestBalancer_BackendAnsweringWhileReadingTheBodyGetsAllOfIt(t *testing.T) {
	body := make([]byte, 5<<20)
	for i := range body {
		body[i] = byte(i*7 + i>>11)
	}
	for _, tc := range []struct {
		name        string
		headerFirst bool // the backend sends its status before reading anything
	}{{"echo", false}, {"answer first, then read", true}} {
		t.Run(tc.name, func(t *testing.T) {
			backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rc := http.NewResponseController(w)
				rc.EnableFullDuplex()
				if tc.headerFirst {
					w.WriteHeader(http.StatusOK)
					rc.Flush()
				}
				io.Copy(w, r.Body)
			}))
			defer backend.Close()
			front := startBalancer(t, newBalancer(t, testConfig(t, backend.URL), &logBuffer{}))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "POST", front.URL+"/echo", bytes.NewReader(body))
			resp, err := front.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("echo of %d bytes: got %d bytes (equal: %v), %v", len(body), len(got), bytes.Equal(got, body), err)
			}
		})
	}
}

// TestBalancer_BackendThatStallsMidBodyIsCutAfterBackendResponse: a
// backend that sends a head and part of its body, then nothing, has its
// answer broken off once it has been silent for ResponseTimeout, as
// nginx's proxy_read_timeout does, and the client is not held for as long
// as it would wait. (Found by an attacker's review: with every timeout at
// 5s, such a backend held a client for the client's own 90s.)
func TestBalancer_BackendThatStallsMidBodyIsCutAfterBackendResponse(t *testing.T) {
	for _, tc := range []struct{ name, head string }{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2710\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			defer close(release)
			url := rawBackend(t, func(c net.Conn) {
				if _, err := readHead(bufio.NewReader(c)); err != nil {
					return
				}
				io.WriteString(c, tc.head+strings.Repeat("x", 10000))
				<-release
			})
			logs := &logBuffer{}
			cfg := testConfig(t, url)
			cfg.ResponseTimeout = time.Second
			bal := newBalancer(t, cfg, logs)
			front := startBalancer(t, bal)
			client := front.Client()
			client.Timeout = failAfter // the test's own guard, far beyond the balancer's second
			resp, err := client.Get(front.URL + "/stalls")
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if err == nil || errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "Client.Timeout") {
				t.Fatalf("the client's read ended with %v, want the balancer to break the answer off", err)
			}
			waitFor(t, "the abort to be logged", func() bool { return logs.count("path=/stalls") == 1 })
			if logs.count("GET /stalls: backend "+url+" broke off the response after", "sent nothing for 1s in the middle of the body") != 1 {
				t.Fatalf("want the abort explained, with the silence:\n%s", logs)
			}
		})
	}
}
