package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// seenRequest is what a handler can observe of a request, for comparing
// Server with net/http.
type seenRequest struct {
	Method, RequestURI, Path, RawQuery, Host, Proto string
	Header                                          http.Header
	Close                                           bool
	ContentLength                                   int64
	Body                                            string
}

// recordingHandler answers every request with its record as JSON-ish text
// and sends the record on seen.
func recordingHandler(seen chan<- seenRequest) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec := seenRequest{r.Method, r.RequestURI, r.URL.Path, r.URL.RawQuery, r.Host, r.Proto,
			r.Header, r.Close, r.ContentLength, string(body)}
		if r.RemoteAddr == "" || r.Context().Value(http.LocalAddrContextKey) == nil {
			rec.Method = "missing RemoteAddr or local address"
		}
		seen <- rec
		w.Header().Set("Content-Length", "2")
		io.WriteString(w, "ok")
	})
}

// dialTest connects to addr with a 5-second deadline for the whole test
// and closes the connection when the test ends.
func dialTest(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	return conn
}

// exchangeRaw sends raw on a new connection to addr and returns the first
// response's status (0 when the connection closed without one).
func exchangeRaw(t *testing.T, addr, raw string) int {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, raw)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestServer_HandlersSeeWhatNetHTTPWouldShow(t *testing.T) {
	cases := []struct{ name, raw string }{
		{"plain GET", "GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n"},
		{"lower-case names, repeated field, odd spacing", "GET / HTTP/1.1\r\nhost: h:8080\r\nx-a: 1\r\nX-A:2\r\naccept-encoding: \t gzip \t\r\n\r\n"},
		{"Connection: close", "HEAD /x HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, close\r\n\r\n"},
		{"Content-Length: 0", "DELETE /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"},
		{"escaped path", "GET /a%2Fb/%7Ec HTTP/1.1\r\nHost: h\r\n\r\n"},
		{"body", "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"},
		{"chunked body", "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
		{"chunked body with extensions and a trailer", "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2;a=b\r\nhe\r\n3\r\nllo\r\n0\r\nX-Sum: 1\r\n\r\n"},
		{"HTTP/1.0", "GET / HTTP/1.0\r\nHost: h\r\n\r\n"},
		{"HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n"},
		{"HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n"},
		{"absolute-form target", "GET http://h/x?q=1 HTTP/1.1\r\nHost: other\r\n\r\n"},
		{"Pragma", "GET / HTTP/1.1\r\nHost: h\r\nPragma: no-cache\r\nCache-Control: no-cache\r\n\r\n"},
		{"Expect without a body", "GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n"},
		{"head over 4 KiB", "GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("b", 5000) + "\r\n\r\n"},
		{"obs-text in a value", "GET / HTTP/1.1\r\nHost: h\r\nX-Name: caf\xc3\xa9\r\n\r\n"},
		{"IPv6 host", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := make(chan seenRequest, 1)
			std := startStd(t, recordingHandler(want))
			got := make(chan seenRequest, 1)
			ours := startServer(t, &http.Server{Handler: recordingHandler(got)})

			if s := exchangeRaw(t, std, tc.raw); s != http.StatusOK {
				t.Fatalf("net/http answered %d", s)
			}
			if s := exchangeRaw(t, ours.Addr(), tc.raw); s != http.StatusOK {
				t.Fatalf("Server answered %d", s)
			}
			w, g := receive(t, want, "net/http's request"), receive(t, got, "Server's request")
			if !reflect.DeepEqual(g, w) {
				t.Errorf("handler saw\n%+v\nnet/http shows\n%+v", g, w)
			}
		})
	}
}

// startStd serves h with a plain net/http server and returns its address.
func startStd(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestServer_MalformedRequestsGetNetHTTPsAnswer(t *testing.T) {
	// Where net/http refuses a request, so does Server, with the same
	// status. (Server refuses more: see TestServer_RefusesWhatIsNotPlain.
	// It also answers a final coding other than chunked with the 400 RFC
	// 9112 section 6.3 requires, where net/http answers 501.)
	raws := []string{
		"GET / HTTP/1.1\r\n\r\n", // no Host
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nBad Name: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n",
		"G@T / HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /\x7f HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
		"GET / HTTP/9.9\r\nHost: h\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("b", 1<<20+8192) + "\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nExpect: something\r\n\r\n",
	}
	std := startStd(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	ours := startServer(t, &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})})
	for _, raw := range raws {
		want, got := exchangeRaw(t, std, raw), exchangeRaw(t, ours.Addr(), raw)
		if got != want {
			t.Errorf("%.60q: Server answered %d, net/http %d", raw, got, want)
		}
	}
}

func TestServer_ServesRequestsWithAndWithoutBodiesOnOneConnection(t *testing.T) {
	seen := make(chan seenRequest, 4)
	srv := startServer(t, &http.Server{Handler: recordingHandler(seen)})
	conn := dialTest(t, srv.Addr())
	// All in one write: each request's bytes follow the one before in the
	// server's buffer, and must be taken apart exactly.
	io.WriteString(conn, "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"+
		"POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody"+
		"PUT /3 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"+
		"GET /4 HTTP/1.1\r\nHost: h\r\n\r\n")
	br := bufio.NewReader(conn)
	for i, want := range []struct{ path, body string }{{"/1", ""}, {"/2", "body"}, {"/3", "abc"}, {"/4", ""}} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i+1, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		got := receive(t, seen, "a request")
		if got.Path != want.path || got.Body != want.body {
			t.Fatalf("request %d: path %q body %q; want %q %q", i+1, got.Path, got.Body, want.path, want.body)
		}
	}
}

func TestServer_AnswersPipelinedRequestsInOrder(t *testing.T) {
	srv := startServer(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
	})})
	conn := dialTest(t, srv.Addr())
	var reqs strings.Builder
	for i := range 20 {
		fmt.Fprintf(&reqs, "GET /%d HTTP/1.1\r\nHost: h\r\n\r\n", i)
	}
	io.WriteString(conn, reqs.String())
	var wants []string
	for i := range 20 {
		wants = append(wants, fmt.Sprintf("/%d", i))
	}
	expectBodies(t, bufio.NewReader(conn), wants...)
}

// expectBodies reads one response per want from br and fails unless their
// bodies are the wants, in order.
func expectBodies(t *testing.T, br *bufio.Reader, wants ...string) {
	t.Helper()
	for i, want := range wants {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i+1, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if string(body) != want {
			t.Fatalf("response %d is %q, want %q", i+1, body, want)
		}
	}
}

// rawResponse is a response as a client parses it, and whether the server
// closed the connection after it.
type rawResponse struct {
	status  int
	interim []int // 1xx statuses before it
	header  http.Header
	body    string
	trailer http.Header
	closed  bool
}

func TestServer_FramesEveryKindOfAnswer(t *testing.T) {
	cases := []struct {
		name    string
		method  string
		handler http.HandlerFunc
		check   func(t *testing.T, r rawResponse)
	}{
		{"Content-Length from the handler", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		}, func(t *testing.T, r rawResponse) {
			if r.body != "hello" || r.header.Get("Content-Length") != "5" || r.closed {
				t.Errorf("got %+v", r)
			}
		}},
		{"no Content-Length: chunked", "GET", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "hel")
			w.(http.Flusher).Flush()
			io.WriteString(w, "lo")
		}, func(t *testing.T, r rawResponse) {
			if r.body != "hello" || r.header.Get("Content-Length") != "" || r.closed {
				t.Errorf("got %+v", r)
			}
		}},
		{"nothing written: empty 200 with a length", "GET", func(http.ResponseWriter, *http.Request) {},
			func(t *testing.T, r rawResponse) {
				if r.status != 200 || r.header.Get("Content-Length") != "0" || r.header.Get("Date") == "" || r.closed {
					t.Errorf("got %+v", r)
				}
			}},
		{"HEAD: length kept, no body", "HEAD", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		}, func(t *testing.T, r rawResponse) {
			if r.body != "" || r.header.Get("Content-Length") != "5" || r.closed {
				t.Errorf("got %+v", r)
			}
		}},
		{"204 has no body", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNoContent)
			if _, err := io.WriteString(w, "x"); !errors.Is(err, http.ErrBodyNotAllowed) {
				panic(fmt.Sprintf("write after 204: %v", err))
			}
		}, func(t *testing.T, r rawResponse) {
			if r.status != 204 || r.body != "" || r.closed {
				t.Errorf("got %+v", r)
			}
		}},
		{"interim 103, then 200", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Set("Content-Length", "2")
			io.WriteString(w, "ok")
		}, func(t *testing.T, r rawResponse) {
			if !reflect.DeepEqual(r.interim, []int{103}) || r.status != 200 || r.body != "ok" || r.closed {
				t.Errorf("got %+v", r)
			}
		}},
		{"trailers", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "X-Sum")
			io.WriteString(w, "data")
			w.Header().Set("X-Sum", "42")
			w.Header().Set(http.TrailerPrefix+"X-Late", "7")
		}, func(t *testing.T, r rawResponse) {
			if r.body != "data" || r.trailer.Get("X-Sum") != "42" || r.trailer.Get("X-Late") != "7" {
				t.Errorf("got %+v", r)
			}
		}},
		{"304: no length, no type", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "10")
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Etag", `"v1"`)
			w.WriteHeader(http.StatusNotModified)
		}, func(t *testing.T, r rawResponse) {
			if r.status != 304 || r.header.Get("Content-Length") != "" || r.header.Get("Content-Type") != "" ||
				r.header.Get("Etag") != `"v1"` || r.closed {
				t.Errorf("got %+v", r)
			}
		}},
		{"trailers that may not be trailers are dropped", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "Content-Type, Connection, X-Ok")
			io.WriteString(w, "data")
			w.Header().Set("Content-Type", "evil")
			w.Header().Set("Connection", "close")
			w.Header().Set("X-Ok", "1")
			w.Header().Set(http.TrailerPrefix+"If-Match", "x")
		}, func(t *testing.T, r rawResponse) {
			// The client lists every announced name in Trailer, with no value
			// until one arrives.
			tr := r.trailer
			if r.body != "data" || tr.Get("X-Ok") != "1" || tr.Get("Content-Type") != "" || tr.Get("Connection") != "" ||
				tr.Get("If-Match") != "" || r.closed {
				t.Errorf("got %+v", r)
			}
		}},
		{"Connection: close from the handler", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			io.WriteString(w, "bye")
		}, func(t *testing.T, r rawResponse) {
			if r.body != "bye" || !r.closed {
				t.Errorf("got %+v", r)
			}
		}},
		{"short body: connection closed", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "short")
			if _, err := io.WriteString(w, "much too long"); !errors.Is(err, http.ErrContentLength) {
				panic(fmt.Sprintf("write past Content-Length: %v", err))
			}
		}, func(t *testing.T, r rawResponse) {
			if !r.closed {
				t.Errorf("got %+v", r)
			}
		}},
		{"header values cannot add lines", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Evil", "a\r\nSet-Cookie: x=1")
			w.Header()["Bad Name"] = []string{"v"}
		}, func(t *testing.T, r rawResponse) {
			if r.header.Get("Set-Cookie") != "" || r.header.Get("X-Evil") != "a  Set-Cookie: x=1" {
				t.Errorf("got %+v", r)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, &http.Server{Handler: tc.handler})
			conn := dialTest(t, srv.Addr())
			fmt.Fprintf(conn, "%s / HTTP/1.1\r\nHost: h\r\n\r\n", tc.method)
			br := bufio.NewReader(conn)
			req, _ := http.NewRequest(tc.method, "/", nil)
			var interim []int
			resp, err := http.ReadResponse(br, req)
			for err == nil && resp.StatusCode < 200 {
				interim = append(interim, resp.StatusCode)
				resp, err = http.ReadResponse(br, req)
			}
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			r := rawResponse{status: resp.StatusCode, interim: interim, header: resp.Header, body: string(body), trailer: resp.Trailer}
			// A second request on the connection finds it open or closed.
			fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
			_, err = http.ReadResponse(br, nil)
			r.closed = err != nil
			tc.check(t, r)
		})
	}
}

func TestServer_CancelsTheContextWhenTheClientHangsUp(t *testing.T) {
	cases := []struct {
		name, send string
		halfClose  bool
	}{
		{"close", "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n", false},
		// The next request is already buffered: the watch reads beneath it.
		{"close with a pipelined request", "GET /slow HTTP/1.1\r\nHost: h\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n", false},
		{"close after a stray CRLF", "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n\r\n", false},
		// A half-close reads as a hang-up, and nothing is made up for it.
		{"half-close", "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			entered, cancelled := make(chan struct{}), make(chan error, 1)
			var slow atomic.Int32
			srv := startServer(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if slow.Add(1) > 1 {
					t.Errorf("%s was served after the client left", r.URL.Path)
					return
				}
				close(entered)
				select {
				case <-r.Context().Done():
					cancelled <- context.Cause(r.Context())
				case <-time.After(5 * time.Second):
					cancelled <- errors.New("the context was not cancelled within 5s")
				}
			})})
			conn := dialTest(t, srv.Addr())
			io.WriteString(conn, tc.send)
			receive(t, entered, "the handler to start")
			if tc.halfClose {
				conn.(*net.TCPConn).CloseWrite()
			} else {
				conn.Close()
			}
			if err := receive(t, cancelled, "the handler to end"); !errors.Is(err, errClientHungUp) {
				t.Fatalf("cause = %v, want errClientHungUp", err)
			}
			if tc.halfClose {
				if b, err := io.ReadAll(conn); len(b) != 0 || err != nil {
					t.Fatalf("a half-closed client read %q, %v; want nothing, then EOF", b, err)
				}
			}
		})
	}
}

func TestServer_SlowRequestKeepsAPipelinedByte(t *testing.T) {
	// The hang-up watch reads the connection of a slow request; a byte of
	// the next request it reads must not be lost.
	release := make(chan struct{})
	slow := make(chan *srvConn, 1)
	srv := startServer(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			slow <- w.(*srvResponse).c
			<-release
		}
		io.WriteString(w, r.URL.Path)
	})})
	conn := dialTest(t, srv.Addr())
	io.WriteString(conn, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
	c := receive(t, slow, "/slow to start")
	waitFor(t, "the watch to begin reading", func() bool {
		c.wmu.Lock()
		defer c.wmu.Unlock()
		return c.watching
	})
	io.WriteString(conn, "GET /next HTTP/1.1\r\nHost: h\r\n\r\n")
	waitFor(t, "the watch to read a byte of /next", func() bool {
		c.wmu.Lock()
		defer c.wmu.Unlock()
		return len(c.in.pending) > 0
	})
	close(release)
	expectBodies(t, bufio.NewReader(conn), "/slow", "/next")
}

func TestServer_BodyAfterASlowRequestKeepsTheBytesTheWatchRead(t *testing.T) {
	// While /slow runs, the hang-up watch reads a byte that comes after a
	// buffered POST's head; the POST's body must still be whole.
	entered := make(chan struct{})
	srv := startServer(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			c := w.(*srvResponse).c
			waitFor(t, "the watch to read a byte", func() bool {
				c.wmu.Lock()
				defer c.wmu.Unlock()
				return len(c.in.pending) > 0
			})
			return
		}
		io.Copy(w, r.Body)
	})})
	conn := dialTest(t, srv.Addr())
	io.WriteString(conn, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\nPOST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhel")
	receive(t, entered, "/slow to start") // so the rest comes in a later read
	io.WriteString(conn, "lo")
	expectBodies(t, bufio.NewReader(conn), "", "hello")
}

func TestServer_ShutdownClosesIdleAndWaitsForActive(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	srv := startServer(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		io.WriteString(w, "done")
	})})
	dial := func() (net.Conn, *bufio.Reader) {
		c := dialTest(t, srv.Addr())
		return c, bufio.NewReader(c)
	}
	idle, idleR := dial()
	io.WriteString(idle, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	resp, err := http.ReadResponse(idleR, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	active, activeR := dial()
	io.WriteString(active, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
	receive(t, entered, "the slow request to start")

	shut := make(chan error, 1)
	go func() { shut <- srv.srv.Shutdown(context.Background()) }()
	if _, err := idleR.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: read %v, want EOF", err)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v while a request was running", err)
	default:
	}
	close(release)
	resp, err = http.ReadResponse(activeR, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Close {
		t.Error("the answer during Shutdown should say Connection: close")
	}
	if err := receive(t, shut, "Shutdown to return"); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := net.Dial("tcp", srv.Addr()); err == nil {
		t.Fatal("still accepting after Shutdown")
	}
}

func TestServer_IdleConnectionTimesOut(t *testing.T) {
	srv := startServer(t, &http.Server{IdleTimeout: 50 * time.Millisecond,
		Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})})
	conn := dialTest(t, srv.Addr())
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	br := bufio.NewReader(conn)
	if _, err := http.ReadResponse(br, nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("read %v, want EOF after the idle timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("closed after %v, want about 50ms", d)
	}
}

func TestServer_PanicClosesOnlyThatConnection(t *testing.T) {
	var logs logBuffer
	srv := startServer(t, &http.Server{ErrorLog: log.New(&logs, "", 0),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/panic":
				panic("boom")
			case "/abort":
				// A complete-looking answer must not leave: the handler failed.
				w.WriteHeader(http.StatusNoContent)
				panic(http.ErrAbortHandler)
			}
			io.WriteString(w, "fine")
		})})
	if s := exchangeRaw(t, srv.Addr(), "GET /panic HTTP/1.1\r\nHost: h\r\n\r\n"); s != 0 {
		t.Fatalf("a panicking handler's connection answered %d", s)
	}
	if s := exchangeRaw(t, srv.Addr(), "GET /abort HTTP/1.1\r\nHost: h\r\n\r\n"); s != 0 {
		t.Fatalf("an aborted handler's connection answered %d", s)
	}
	if s := exchangeRaw(t, srv.Addr(), "GET / HTTP/1.1\r\nHost: h\r\n\r\n"); s != 200 {
		t.Fatalf("after a panic: %d", s)
	}
	if logs.count("panic serving", "boom") != 1 {
		t.Fatalf("the panic was not logged once:\n%s", logs.String())
	}
}

func TestServer_HeadArrivingByteByByte(t *testing.T) {
	// Each byte in its own read: the head's lines and its end must still
	// be found right, and a bare LF refused wherever it falls.
	cases := []struct {
		name, head string
		status     int // 0: taken
	}{
		{"plain", "GET /a HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n", 0},
		{"bare LF in the middle", "GET /a HTTP/1.1\r\nHost: h\nX-A: 1\r\n\r\n", 400},
		{"LF LF", "GET /a HTTP/1.1\r\nHost: h\r\n\n", 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := NewServer(&http.Server{})
			client, server := net.Pipe() // unbuffered: one Write, one Read
			c := newSrvConn(s, server, context.Background())
			defer c.cancel(nil)
			type result struct {
				p   parsedRequest
				err error
			}
			done := make(chan result, 1)
			go func() {
				p, err := c.readRequest(true)
				done <- result{p, err}
			}()
			go func() {
				for i := range len(tc.head) {
					if _, err := client.Write([]byte{tc.head[i]}); err != nil {
						return // the reader stopped early, as for a bare LF: the pipe is closed
					}
				}
			}()
			r := receive(t, done, "the head to be read")
			client.Close()
			if tc.status != 0 {
				var re *requestError
				if !errors.As(r.err, &re) || re.status != tc.status {
					t.Fatalf("got %v, want a refusal with %d", r.err, tc.status)
				}
				return
			}
			if r.err != nil {
				t.Fatal(r.err)
			}
			if req := r.p.req; req.URL.Path != "/a" || req.Host != "h" || req.Header.Get("X-A") != "1" {
				t.Fatalf("request %s %s host %q header %v", req.Method, req.URL, req.Host, req.Header)
			}
		})
	}
}

// FuzzServerParse checks the request parser against http.ReadRequest:
// whatever it accepts, ReadRequest accepts too and reads the same way.
func FuzzServerParse(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /a?b=c HTTP/1.1\r\nhost: h:1\r\nx-y: 1\r\nX-Y: 2\r\nConnection: close\r\n\r\n",
		"DELETE /x HTTP/1.1\r\nHost: [::1]:80\r\nContent-Length: 0\r\n\r\n",
		"OPTIONS /%zz HTTP/1.1\r\nHost: h\r\nCookie: a=b; c=d\r\n\r\n",
		"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
		"PUT http://h:8/x HTTP/1.0\r\nContent-Length: 12\r\nConnection: keep-alive\r\n\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		end := strings.Index(raw, "\r\n\r\n")
		if end < 0 {
			return
		}
		head := raw[:end+4]
		h, err := readHead(bufio.NewReader(strings.NewReader(head)), nil, 1<<20, true)
		if err != nil {
			return
		}
		p, _, rerr := parseRequest(h, nil, new(http.Request))
		if rerr != nil {
			return
		}
		got := p.req
		want, err := http.ReadRequest(bufio.NewReader(strings.NewReader(head)))
		if err != nil {
			t.Fatalf("Server accepted what ReadRequest refuses (%v): %q", err, head)
		}
		// ReadRequest leaves Host in the header map; a server removes it.
		// Ours leaves out names with '_' (parseFields says why).
		delete(want.Header, "Host")
		for k := range want.Header {
			if strings.Contains(k, "_") {
				delete(want.Header, k)
			}
		}
		if got.Method != want.Method || got.RequestURI != want.RequestURI || got.Host != want.Host ||
			got.URL.String() != want.URL.String() || got.Close != want.Close || got.Proto != want.Proto ||
			got.ContentLength != want.ContentLength || !reflect.DeepEqual(got.TransferEncoding, want.TransferEncoding) ||
			!reflect.DeepEqual(got.Header, want.Header) {
			t.Fatalf("%q\nours: %s %s host=%q close=%v cl=%d te=%v %v\nstd:  %s %s host=%q close=%v cl=%d te=%v %v", head,
				got.Method, got.URL, got.Host, got.Close, got.ContentLength, got.TransferEncoding, got.Header,
				want.Method, want.URL, want.Host, want.Close, want.ContentLength, want.TransferEncoding, want.Header)
		}
	})
}

// BenchmarkServerVsNetHTTP answers: how much does a trivial request cost
// through Server's fast path, and through net/http's server? One keep-alive
// connection, request after request.
func BenchmarkServerVsNetHTTP(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Length"] = []string{"2"}
		io.WriteString(w, "ok")
	})
	run := func(b *testing.B, addr string) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		req := []byte("GET /bench HTTP/1.1\r\nHost: h\r\nUser-Agent: bench\r\n\r\n")
		br := bufio.NewReader(conn)
		b.ReportAllocs()
		for b.Loop() {
			conn.Write(req)
			if err := skipResponse(br); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("server=lb", func(b *testing.B) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		s := NewServer(&http.Server{Handler: h})
		go s.Serve(ln)
		defer s.Close()
		run(b, ln.Addr().String())
	})
	b.Run("server=net/http", func(b *testing.B) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		s := &http.Server{Handler: h}
		go s.Serve(ln)
		defer s.Close()
		run(b, ln.Addr().String())
	})
}

// skipResponse reads one response with a Content-Length body, without
// allocating, so the benchmark measures the server.
func skipResponse(br *bufio.Reader) error {
	n := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) == 2 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			n = 0
			for _, c := range bytes.TrimSpace(v) {
				n = n*10 + int(c-'0')
			}
		}
	}
	if n < 0 {
		return errors.New("no Content-Length")
	}
	_, err := br.Discard(n)
	return err
}
