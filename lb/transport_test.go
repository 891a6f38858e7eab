package lb

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rawBackend serves each accepted connection with handle, for backends that
// misbehave in ways net/http will not.
func rawBackend(t *testing.T, handle func(net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// readHead reads one request head from br.
func readHead(br *bufio.Reader) (*http.Request, error) {
	return http.ReadRequest(br)
}

func TestTransport_RetriesRequestLostOnStaleConnection(t *testing.T) {
	// Each connection answers one request with keep-alive promised, then
	// closes: the second request on it finds it dead, as when a backend's
	// idle timeout closes a pooled connection.
	var conns atomic.Int64
	url := rawBackend(t, func(c net.Conn) {
		conns.Add(1)
		br := bufio.NewReader(c)
		if _, err := readHead(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	logs := &logBuffer{}
	lb := startBalancer(t, newBalancer(t, testConfig(t, url), logs))
	for i := range 5 {
		resp, body := get(t, lb.Client(), lb.URL+"/")
		if resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q\n%s", i, resp.StatusCode, body, logs)
		}
	}
	if strings.Contains(logs.String(), "level=WARN") || strings.Contains(logs.String(), "level=ERROR") {
		t.Fatalf("a stale pooled connection showed in the log:\n%s", logs)
	}
	if n := conns.Load(); n < 5 {
		t.Fatalf("%d connections for 5 requests: stale ones were not replaced", n)
	}
}

func TestTransport_WritesRequestHeadFaithfully(t *testing.T) {
	got := make(chan *http.Request, 1)
	url := rawBackend(t, func(c net.Conn) {
		req, err := readHead(bufio.NewReader(c))
		if err != nil {
			return
		}
		got <- req
		io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
	})
	lb := startBalancer(t, newBalancer(t, testConfig(t, url), &logBuffer{}))
	req, _ := http.NewRequest("GET", lb.URL+"/a%20b/c?x=1&y=%2F", nil)
	req.Host = "shop.example"
	req.Header.Add("X-Multi", "one")
	req.Header.Add("X-Multi", "two")
	req.Header.Set("Connection", "close, X-Hop")
	req.Header.Set("X-Hop", "dropped")
	resp, err := lb.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	r := <-got
	checks := []struct{ what, got, want string }{
		{"request URI", r.RequestURI, "/a%20b/c?x=1&y=%2F"},
		{"Host", r.Host, "shop.example"},
		{"X-Multi", strings.Join(r.Header["X-Multi"], "|"), "one|two"},
		{"X-Hop (named in Connection)", r.Header.Get("X-Hop"), ""},
		{"Connection", r.Header.Get("Connection"), ""},
		{"User-Agent", r.Header.Get("User-Agent"), "Go-http-client/1.1"},
		{"X-Forwarded-For", r.Header.Get("X-Forwarded-For"), "127.0.0.1"},
		{"protocol", r.Proto, "HTTP/1.1"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
}

func TestTransport_HEADAndNoBodyAnswersKeepTheConnection(t *testing.T) {
	var conns atomic.Int64
	url := rawBackend(t, func(c net.Conn) {
		conns.Add(1)
		br := bufio.NewReader(c)
		for {
			req, err := readHead(br)
			if err != nil {
				return
			}
			switch req.Method {
			case "HEAD": // a HEAD answer announces a length but has no body
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
			default:
				io.WriteString(c, "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n")
			}
		}
	})
	lb := startBalancer(t, newBalancer(t, testConfig(t, url), &logBuffer{}))
	for i := range 6 {
		method := []string{"HEAD", "GET"}[i%2]
		req, _ := http.NewRequest(method, lb.URL+"/", nil)
		resp, err := lb.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if want := []int{200, 304}[i%2]; resp.StatusCode != want {
			t.Fatalf("%s: %d, want %d", method, resp.StatusCode, want)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("6 sequential requests used %d backend connections, want 1", n)
	}
}

func TestTransport_PassesEarlyHints(t *testing.T) {
	url := rawBackend(t, func(c net.Conn) {
		if _, err := readHead(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"+
			"HTTP/1.1 200 OK\r\nRatelimit: \"backend\";r=1\r\nContent-Length: 5\r\n\r\nhello")
	})
	// An admission hook's headers (the rate limiter's) belong on the final
	// answer: ReverseProxy clears the header map after relaying a 1xx.
	bal, err := New(testConfig(t, url), Options{Logger: discardLogger(), Admit: func(w http.ResponseWriter, r *http.Request) Admission {
		w.Header().Set("Ratelimit", `"default";r=9;t=1`)
		return Admission{Allowed: true}
	}})
	if err != nil {
		t.Fatal(err)
	}
	lb := startBalancer(t, bal)
	var hints []string
	req, _ := http.NewRequest("GET", lb.URL+"/", nil)
	resp, err := lb.Client().Do(req.WithContext(withGot1xx(req.Context(), func(code int, h http.Header) {
		hints = append(hints, fmt.Sprint(code, " ", h.Get("Link")))
	})))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello" {
		t.Fatalf("final answer %d %q", resp.StatusCode, body)
	}
	// ...ahead of the backend's own, which stays.
	if got := resp.Header["Ratelimit"]; !slices.Equal(got, []string{`"default";r=9;t=1`, `"backend";r=1`}) {
		t.Fatalf("Ratelimit on the final answer: %q", got)
	}
	if len(hints) != 1 || hints[0] != "103 </style.css>; rel=preload" {
		t.Fatalf("1xx seen by the client: %q", hints)
	}
}

func TestTransport_BackendResetMidBodyAbortsClientResponse(t *testing.T) {
	clientHasPart := make(chan struct{})
	url := rawBackend(t, func(c net.Conn) {
		if _, err := readHead(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
		// More than the front server's write buffer, so the client sees it.
		io.WriteString(c, strings.Repeat("x", 10000))
		<-clientHasPart
		c.(*net.TCPConn).SetLinger(0) // close with a reset
	})
	logs := &logBuffer{}
	bal := newBalancer(t, testConfig(t, url), logs)
	lb := startBalancer(t, bal)
	resp, err := lb.Client().Get(lb.URL + "/big")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 1000)); err != nil {
		t.Fatalf("first 1000 bytes: %v", err)
	}
	close(clientHasPart)
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Fatalf("client read %d bytes and a clean end of a response the backend broke off", n)
	}
	waitFor(t, "the abort to be logged", func() bool { return logs.count("path=/big") == 1 })
	if logs.count("broke off the response after 10000 bytes") != 1 || logs.count("path=/big", "aborted=true") != 1 {
		t.Fatalf("want the abort explained and marked in the access log:\n%s", logs)
	}
	if st := bal.Status()[0]; st.Failures != 1 || st.InFlight != 0 {
		t.Fatalf("backend after a broken answer: %+v", st)
	}
}

func TestTransport_ClientGoneWhileWaitingCancelsBackendRequest(t *testing.T) {
	closed := make(chan struct{})
	url := rawBackend(t, func(c net.Conn) {
		if _, err := readHead(bufio.NewReader(c)); err != nil {
			return
		}
		c.Read(make([]byte, 1)) // returns when the balancer closes the connection
		close(closed)
	})
	lb := startBalancer(t, newBalancer(t, testConfig(t, url), &logBuffer{}))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", lb.URL+"/", nil)
	if resp, err := lb.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("request answered though the backend never did")
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend connection stayed open after the client left")
	}
}

// TestTransport_BareLFHeadIsRefusedAtOnce: a head whose lines end in LF
// alone is refused (502) as soon as it arrives, not waited out to the
// response timeout for a CRLF that never comes.
func TestTransport_BareLFHeadIsRefusedAtOnce(t *testing.T) {
	url := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			if _, err := readHead(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\nContent-Length: 5\n\nhello")
		}
	})
	cfg := testConfig(t, url)
	cfg.ResponseTimeout = 5 * time.Second
	logs := &logBuffer{}
	lb := startBalancer(t, newBalancer(t, cfg, logs))
	start := time.Now()
	resp, _ := get(t, lb.Client(), lb.URL+"/")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("bare-LF head: %d, want 502", resp.StatusCode)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("bare-LF head took %v: the parser waited for a CRLF CRLF that never comes", d)
	}
	if logs.count("invalid response", "bare LF") != 1 {
		t.Fatalf("the 502 is not explained in the log:\n%s", logs)
	}
}

// TestTransport_StaleRequestTimeoutIsNotAnAnswer: some servers write a 408
// on an idle keep-alive connection before closing it. It answers nothing
// of ours; the next request must go on a fresh connection.
func TestTransport_StaleRequestTimeoutIsNotAnAnswer(t *testing.T) {
	var conns atomic.Int64
	url := rawBackend(t, func(c net.Conn) {
		first := conns.Add(1) == 1
		br := bufio.NewReader(c)
		for {
			if _, err := readHead(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			if first {
				io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
				return
			}
		}
	})
	lb := startBalancer(t, newBalancer(t, testConfig(t, url), &logBuffer{}))
	for i := range 3 {
		if resp, body := get(t, lb.Client(), lb.URL+"/"); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q; the backend's unsolicited 408 reached the client", i+1, resp.StatusCode, body)
		}
	}
}

func TestTransport_OversizedResponseHeadIs502(t *testing.T) {
	url := rawBackend(t, func(c net.Conn) {
		if _, err := readHead(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Big: ")
		chunk := strings.Repeat("a", 1<<20)
		for range 64 {
			if _, err := io.WriteString(c, chunk); err != nil {
				return // the balancer gave up, as it should
			}
		}
		io.WriteString(c, "\r\nContent-Length: 0\r\n\r\n")
	})
	lb := startBalancer(t, newBalancer(t, testConfig(t, url), &logBuffer{}))
	resp, err := lb.Client().Get(lb.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("a 64 MiB response head: %d, want 502 (heads are bounded at 10 MiB)", resp.StatusCode)
	}
}

func TestTransport_UnaskedSwitchOfProtocolsIs502AndClosesTheConnection(t *testing.T) {
	closed := make(chan struct{})
	url := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := readHead(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n")
		br.ReadByte() // returns when the balancer closes the connection
		close(closed)
	})
	logs := &logBuffer{}
	bal := newBalancer(t, testConfig(t, url), logs)
	lb := startBalancer(t, bal)
	if resp, _ := get(t, lb.Client(), lb.URL+"/"); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("a 101 nobody asked for: %d, want 502", resp.StatusCode)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend connection stayed open")
	}
	waitFor(t, "the access-log line", func() bool { return logs.count("msg=request") == 1 })
	if logs.count("msg=request", "status=502") != 1 || bal.Upgrades() != 0 {
		t.Fatalf("want the request logged as 502 and no upgrade counted:\n%s", logs)
	}
}

// TestBalancer_ClientThatStopsReadingIsCutOff: a client that asks for a
// large answer and never reads it must not hold its connection, a backend
// connection and an in-flight slot for longer than the write timeout.
func TestBalancer_ClientThatStopsReadingIsCutOff(t *testing.T) {
	backendDone := make(chan struct{})
	big := namedBackend(t, "big", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(backendDone)
		chunk := []byte(strings.Repeat("x", 64<<10))
		for range 1024 { // 64 MiB, far more than the socket buffers hold
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	cfg := testConfig(t, big.URL)
	cfg.WriteTimeout = 200 * time.Millisecond
	logs := &logBuffer{}
	bal := newBalancer(t, cfg, logs)
	lb := startBalancer(t, bal)
	conn, err := net.Dial("tcp", lb.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n") // and never read
	select {
	case <-backendDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the backend is still sending to a client that stopped reading")
	}
	waitFor(t, "the in-flight slot to be released", func() bool { return bal.Status()[0].InFlight == 0 })
	waitFor(t, "the access-log line", func() bool { return logs.count("path=/big") == 1 })
	if logs.count("path=/big", "status=499") != 1 || bal.Status()[0].Failures != 0 {
		t.Fatalf("want the stalled client logged as 499 and no backend failure:\n%s", logs)
	}
}
