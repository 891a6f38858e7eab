package lb

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestBalancer_RoundRobinThroughProxy(t *testing.T) {
	a, b, c := namedBackend(t, "a", nil), namedBackend(t, "b", nil), namedBackend(t, "c", nil)
	logs := &logBuffer{}
	lb := startBalancer(t, newBalancer(t, testConfig(t, a.URL, b.URL, c.URL), logs))
	got := map[string]int{}
	for range 30 {
		resp, body := get(t, lb.Client(), lb.URL+"/")
		if resp.StatusCode != 200 || !strings.HasPrefix(body, "hello from ") {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
		got[resp.Header.Get("X-Backend")]++
	}
	if fmt.Sprint(got) != "map[a:10 b:10 c:10]" {
		t.Fatalf("30 requests: %v, want 10 each", got)
	}
	if n := logs.count("msg=request", "method=GET", "path=/", "status=200", "backend=http://"); n != 30 {
		t.Fatalf("want 30 access-log lines, got %d:\n%s", n, logs)
	}
}

// TestBalancer_FailoverUnderLoadHasNoClientErrors closes one of three
// backends in the middle of a concurrent load: every request must still
// succeed, through retries on the others.
func TestBalancer_FailoverUnderLoadHasNoClientErrors(t *testing.T) {
	a, b, c := namedBackend(t, "a", nil), namedBackend(t, "b", nil), namedBackend(t, "c", nil)
	logs := &logBuffer{}
	bal := newBalancer(t, testConfig(t, a.URL, b.URL, c.URL), logs)
	lb := startBalancer(t, bal)

	const workers, each = 8, 150
	var sent, failed atomic.Int64
	var closeOnce sync.Once
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				if sent.Add(1) == workers*each/3 {
					closeOnce.Do(b.Close) // a third of the way in
				}
				resp, err := lb.Client().Get(lb.URL + "/")
				if err != nil {
					failed.Add(1)
					t.Errorf("client error: %v", err)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					t.Errorf("status %d", resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed", failed.Load(), workers*each)
	}
	if bal.pool.Load().backends[1].Healthy() {
		t.Fatal("closed backend b is still marked healthy")
	}
	if logs.count("backend "+b.URL+" down") != 1 {
		t.Fatalf("want one line saying b went down:\n%s", logs)
	}
}

func TestBalancer_AllBackendsDown(t *testing.T) {
	a, b := namedBackend(t, "a", nil), namedBackend(t, "b", nil)
	logs := &logBuffer{}
	lb := startBalancer(t, newBalancer(t, testConfig(t, a.URL, b.URL), logs))
	a.Close()
	b.Close()

	resp, err := lb.Client().Get(lb.URL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("first request after both backends closed: %d, want 502", resp.StatusCode)
	}
	if msg := errorBody(t, resp); !strings.Contains(msg, "no backend could be reached") {
		t.Fatalf("502 error = %q", msg)
	}
	resp.Body.Close()
	if n := logs.count("GET /x failed", "refused the connection", "answered 502 after 2 attempts"); n != 1 {
		t.Fatalf("want one line explaining the 502:\n%s", logs)
	}

	// Both were marked down by that request: the next one gets 503 at once.
	resp, err = lb.Client().Get(lb.URL + "/y")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("request with every backend down: %d, want 503", resp.StatusCode)
	}
	if msg := errorBody(t, resp); !strings.Contains(msg, "no healthy backend") {
		t.Fatalf("503 error = %q", msg)
	}
	if n := logs.count("GET /y: no healthy backend", "answered 503"); n != 1 {
		t.Fatalf("want one line explaining the 503:\n%s", logs)
	}
}

// hangUpAfterRead is a backend that reads the whole request and then drops
// the connection without answering: it may have acted on the request.
func hangUpAfterRead(t *testing.T, seen *atomic.Int64) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		seen.Add(1)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestBalancer_DoesNotRetryPOSTAfterSend(t *testing.T) {
	var firstSaw, secondSaw atomic.Int64
	first := hangUpAfterRead(t, &firstSaw)
	second := namedBackend(t, "second", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secondSaw.Add(1)
		io.Copy(w, r.Body)
	}))
	logs := &logBuffer{}
	lb := startBalancer(t, newBalancer(t, testConfig(t, first.URL, second.URL), logs))

	resp, err := lb.Client().Post(lb.URL+"/pay", "text/plain", strings.NewReader("charge 10 EUR"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("POST whose backend hung up after reading it: %d, want 502", resp.StatusCode)
	}
	if firstSaw.Load() != 1 || secondSaw.Load() != 0 {
		t.Fatalf("POST seen by first %d times, by second %d times; want 1 and 0 (never replayed)", firstSaw.Load(), secondSaw.Load())
	}
	if n := logs.count("POST /pay failed", "closed the connection before answering", "answered 502 after 1 attempt"); n != 1 {
		t.Fatalf("want one line explaining the 502:\n%s", logs)
	}
}

func TestBalancer_RetriesIdempotentRequestAfterConnectionLoss(t *testing.T) {
	var firstSaw atomic.Int64
	first := hangUpAfterRead(t, &firstSaw)
	second := namedBackend(t, "second", nil)
	logs := &logBuffer{}
	lb := startBalancer(t, newBalancer(t, testConfig(t, first.URL, second.URL), logs))
	resp, body := get(t, lb.Client(), lb.URL+"/")
	if resp.StatusCode != 200 || body != "hello from second" {
		t.Fatalf("GET after first backend hung up: %d %q, want 200 from second", resp.StatusCode, body)
	}
	if logs.count("retrying GET / on "+second.URL+" after "+first.URL+" closed the connection before answering") != 1 {
		t.Fatalf("want one retry line:\n%s", logs)
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestBalancer_RetriesPOSTWhenConnectionRefused(t *testing.T) {
	dead := "http://" + closedAddr(t)
	echo := namedBackend(t, "echo", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Write(body)
	}))
	logs := &logBuffer{}
	lb := startBalancer(t, newBalancer(t, testConfig(t, dead, echo.URL), logs))
	payload := strings.Repeat("order line\n", 1000)
	resp, err := lb.Client().Post(lb.URL+"/echo", "text/plain", strings.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(got) != payload {
		t.Fatalf("POST after refused connection: status %d, body of %d bytes, want 200 and the %d bytes sent\n%s",
			resp.StatusCode, len(got), len(payload), logs)
	}
	if logs.count("backend "+dead+" down: refused the connection") != 1 {
		t.Fatalf("want the refusing backend marked down:\n%s", logs)
	}
}

func TestBalancer_GatewayTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	var otherSaw atomic.Int64
	slow := namedBackend(t, "slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	other := namedBackend(t, "other", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { otherSaw.Add(1) }))
	cfg := testConfig(t, slow.URL, other.URL)
	cfg.ResponseTimeout = 50 * time.Millisecond
	logs := &logBuffer{}
	lb := startBalancer(t, newBalancer(t, cfg, logs))
	resp, err := lb.Client().Get(lb.URL + "/slow")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("backend slower than the response timeout: %d, want 504", resp.StatusCode)
	}
	errorBody(t, resp)
	if otherSaw.Load() != 0 {
		t.Fatal("a timed-out request was retried on another backend")
	}
	if logs.count("sent no response headers within 50ms", "answered 504") != 1 {
		t.Fatalf("want one line explaining the 504:\n%s", logs)
	}
}

func TestBalancer_ClientGoneIsNotABackendFailure(t *testing.T) {
	entered := make(chan struct{})
	hold := namedBackend(t, "hold", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
	}))
	logs := &logBuffer{}
	bal := newBalancer(t, testConfig(t, hold.URL), logs)
	lb := startBalancer(t, bal)

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", lb.URL+"/hold", nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := lb.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-entered
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("client error = %v, want context.Canceled", err)
	}
	waitFor(t, "the access-log line", func() bool { return logs.count("path=/hold") == 1 })
	if logs.count("path=/hold", "status=499") != 1 {
		t.Fatalf("client that hung up should be logged as 499:\n%s", logs)
	}
	st := bal.Status()[0]
	if st.Failures != 0 || !st.Healthy || st.InFlight != 0 {
		t.Fatalf("backend after a client hang-up: %+v; want no failure, healthy, nothing in flight", st)
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Fatalf("a client hang-up was logged as an error:\n%s", logs)
	}
}

func TestBalancer_PassiveDownThenActiveUp(t *testing.T) {
	addr := closedAddr(t)
	up := namedBackend(t, "up", nil)
	logs := &logBuffer{}
	bal := newBalancer(t, testConfig(t, "http://"+addr, up.URL), logs)
	lb := startBalancer(t, bal)
	get(t, lb.Client(), lb.URL+"/") // refused by addr, retried on up
	be := bal.pool.Load().backends[0]
	if be.Healthy() {
		t.Fatal("a backend that refused a connection is still healthy")
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	back := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "back")
	})}}
	back.Start()
	defer back.Close()
	runHealthChecks(t, bal)
	waitFor(t, "the backend to come back", be.Healthy)
	if logs.count("backend http://"+addr+" up: 2 passed health checks") != 1 {
		t.Fatalf("want one line saying it came back:\n%s", logs)
	}
}

func TestBalancer_XForwardedHeaders(t *testing.T) {
	echo := namedBackend(t, "echo", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{
			"xff": r.Header.Get("X-Forwarded-For"), "host": r.Host,
			"xfh": r.Header.Get("X-Forwarded-Host"), "xfp": r.Header.Get("X-Forwarded-Proto"),
			"forwarded": r.Header.Get("Forwarded"), "xri": r.Header.Get("X-Real-IP"),
		})
	}))
	tests := []struct {
		name    string
		trusted bool
		in      map[string]string
		want    map[string]string
	}{
		// X-Real-IP, the nginx convention many backends read, was passed
		// on from anyone (found by an operator's review).
		{"untrusted peer: spoofed headers replaced", false,
			map[string]string{"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https", "Forwarded": "for=6.6.6.6", "X-Real-IP": "6.6.6.6"},
			map[string]string{"xff": "127.0.0.1", "xfp": "http", "xfh": "shop.example", "host": "shop.example", "forwarded": "", "xri": ""}},
		{"trusted peer: chain kept and peer appended", true,
			map[string]string{"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https", "X-Real-IP": "203.0.113.7"},
			map[string]string{"xff": "203.0.113.7, 127.0.0.1", "xfp": "https", "xfh": "shop.example", "host": "shop.example", "xri": "203.0.113.7"}},
		{"trusted peer without headers", true, nil,
			map[string]string{"xff": "127.0.0.1", "xfp": "http", "xfh": "shop.example", "host": "shop.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, echo.URL)
			if tt.trusted {
				cfg.TrustedProxies = mustPrefixes(t, "127.0.0.0/8")
			}
			lb := startBalancer(t, newBalancer(t, cfg, &logBuffer{}))
			req, _ := http.NewRequest("GET", lb.URL+"/headers", nil)
			req.Host = "shop.example"
			for k, v := range tt.in {
				req.Header.Set(k, v)
			}
			resp, err := lb.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got map[string]string
			json.NewDecoder(resp.Body).Decode(&got)
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func TestBalancer_StreamsEachFlushedLine(t *testing.T) {
	next := make(chan struct{})
	stream := namedBackend(t, "stream", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			http.NewResponseController(w).Flush()
			select {
			case <-next: // the client read this event through the proxy
			case <-time.After(5 * time.Second):
				return
			}
		}
	}))
	lb := startBalancer(t, newBalancer(t, testConfig(t, stream.URL), &logBuffer{}))
	resp, err := lb.Client().Get(lb.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	for i := range 3 {
		line, err := r.ReadString('\n')
		if err != nil || line != fmt.Sprintf("data: %d\n", i) {
			t.Fatalf("event %d: %q, %v", i, line, err)
		}
		r.ReadString('\n')
		next <- struct{}{} // only now may the backend write the next event
	}
}

func TestBalancer_WebSocketUpgradePassesThrough(t *testing.T) {
	ws := namedBackend(t, "ws", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n") // RFC 6455's example, for the key below
		brw.Flush()
		io.Copy(conn, brw) // echo until the client closes
	}))
	bal := newBalancer(t, testConfig(t, ws.URL), &logBuffer{})
	lb := startBalancer(t, bal)

	conn, err := net.Dial("tcp", lb.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	waitFor(t, "the upgrade to be counted", func() bool { return bal.Upgrades() == 1 })
	for _, msg := range []string{"ping one\n", "ping two\n"} {
		io.WriteString(conn, msg)
		got, err := br.ReadString('\n')
		if err != nil || got != msg {
			t.Fatalf("echo through the upgraded connection: %q, %v; want %q", got, err, msg)
		}
	}
	conn.Close()
	waitFor(t, "the upgrade to end", func() bool { return bal.Upgrades() == 0 })
}

// TestBalancer_WebSocketSwitchMustAnswerTheKey: a 101 to a WebSocket
// upgrade without the Sec-WebSocket-Accept that answers the request's key
// is a 502, and no tunnel opens: it comes from something that did not read
// the key (an endpoint passing on a status code, in the WebSocket smuggling
// literature), and a tunnel would carry requests past the rate limiter and
// the access log.
func TestBalancer_WebSocketSwitchMustAnswerTheKey(t *testing.T) {
	for _, tc := range []struct{ name, accept, key string }{
		{"no Sec-WebSocket-Accept", "", "dGhlIHNhbXBsZSBub25jZQ=="},
		{"an Accept for another key", "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", "YW5vdGhlciBrZXkgaGVyZQ=="},
		{"a request without a key", "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws := namedBackend(t, "ws", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				conn, brw, err := http.NewResponseController(w).Hijack()
				if err != nil {
					return
				}
				defer conn.Close()
				brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" + tc.accept + "\r\n")
				brw.Flush()
				io.Copy(conn, brw)
			}))
			logs := &logBuffer{}
			bal := newBalancer(t, testConfig(t, ws.URL), logs)
			lb := startBalancer(t, bal)
			conn, err := net.Dial("tcp", lb.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(failAfter))
			key := ""
			if tc.key != "" {
				key = "Sec-WebSocket-Key: " + tc.key + "\r\n"
			}
			fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n%s\r\n", key)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadGateway || bal.Upgrades() != 0 {
				t.Fatalf("answer %d with %d upgraded connections, want 502 and none", resp.StatusCode, bal.Upgrades())
			}
			waitFor(t, "the refusal to be logged", func() bool { return logs.count("without the Sec-WebSocket-Accept") == 1 })
		})
	}
}

// TestBalancer_ApplyUnderLoadFailsNothing swaps the backend set while
// requests run: none may fail, and a backend that stays keeps its counters.
func TestBalancer_ApplyUnderLoadFailsNothing(t *testing.T) {
	a, b, c := namedBackend(t, "a", nil), namedBackend(t, "b", nil), namedBackend(t, "c", nil)
	logs := &logBuffer{}
	bal := newBalancer(t, testConfig(t, a.URL, b.URL), logs)
	lb := startBalancer(t, bal)
	stay := bal.pool.Load().backends[1] // b stays in every configuration

	stop := make(chan struct{})
	var served, failed atomic.Int64
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := lb.Client().Get(lb.URL + "/")
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
				}
				served.Add(1)
			}
		})
	}
	configs := [][]string{{b.URL, c.URL}, {a.URL, b.URL, c.URL}, {b.URL}, {a.URL, b.URL}}
	for i := range 20 {
		waitFor(t, "some requests", func() bool { return served.Load() >= int64(i+1)*20 })
		cfg := testConfig(t, configs[i%len(configs)]...)
		cfg.Algorithm = []string{AlgorithmRoundRobin, AlgorithmLeastConnections, AlgorithmWeightedRoundRobin}[i%3]
		if err := bal.Apply(cfg); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during reloads", failed.Load(), served.Load())
	}
	var now *Backend
	for _, be := range bal.pool.Load().backends {
		if be.name == b.URL {
			now = be
		}
	}
	if now != stay || now.requests.Load() == 0 {
		t.Fatal("backend b did not keep its state across reloads")
	}
	before := bal.pool.Load()
	if err := bal.Apply(Config{Backends: []BackendConfig{{URL: mustURL(t, "ftp://x")}}}); err == nil {
		t.Fatal("Apply accepted an ftp backend")
	}
	if bal.pool.Load() != before {
		t.Fatal("a rejected Apply changed the configuration")
	}
}

// TestBalancer_OutageIsLoggedOncePerInterval: when every request fails the
// same way, the log gets one line per throttleEvery that says how many it
// stands for, not a line per request.
func TestBalancer_OutageIsLoggedOncePerInterval(t *testing.T) {
	a := namedBackend(t, "a", nil)
	logs := &logBuffer{}
	bal := newBalancer(t, testConfig(t, a.URL), logs)
	lb := startBalancer(t, bal)
	bal.pool.Load().backends[0].healthy.Store(false)
	for range 20 {
		get(t, lb.Client(), lb.URL+"/x")
	}
	if n := logs.count("no healthy backend"); n != 1 {
		t.Fatalf("20 requests in an outage: %d lines, want 1:\n%s", n, logs)
	}
	// The next line after the interval says how many it stands for.
	bal.logNoBackend.last.Add(-int64(throttleEvery))
	get(t, lb.Client(), lb.URL+"/x")
	if n := logs.count("no healthy backend", "(and 19 more like it since the last such line)"); n != 1 {
		t.Fatalf("want the next line to count the 19 held back:\n%s", logs)
	}
	if got := bal.Metrics().Local[503]; got != 21 {
		t.Fatalf("metrics counted %d 503s, want all 21", got)
	}
}

// TestBalancer_OnlyWebSocketUpgradesPass: an h2c upgrade would open a
// tunnel past the rate limiter and the access log; the backend gets the
// request without it, and the client an ordinary answer.
func TestBalancer_OnlyWebSocketUpgradesPass(t *testing.T) {
	seen := make(chan http.Header, 1)
	be := namedBackend(t, "b", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		io.WriteString(w, "plain")
	}))
	f := startBalancer(t, newBalancer(t, testConfig(t, be.URL), &logBuffer{}))
	conn := dialFront(t, f)
	io.WriteString(conn, "GET /x HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"+
		"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "plain" {
		t.Fatalf("h2c upgrade request: %d %q, want the plain answer", resp.StatusCode, body)
	}
	h := receive(t, seen, "the backend's request")
	for _, k := range []string{"Upgrade", "Http2-Settings", "Connection"} {
		if v := h.Get(k); v != "" {
			t.Errorf("the backend got %s: %q", k, v)
		}
	}
}

// TestBalancer_DropsXRealIPFromAPeerWithoutAnAddress: a balancer served on
// something other than TCP (a Unix socket: RemoteAddr "@") has no trusted
// peer, so a client's X-Real-IP goes no further. (Found by a review of this
// session's diff: the drop came after the return for such peers.)
func TestBalancer_DropsXRealIPFromAPeerWithoutAnAddress(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "xri="+r.Header.Get("X-Real-IP"))
	}))
	defer be.Close()
	cfg := testConfig(t, be.URL)
	cfg.TrustedProxies = mustPrefixes(t, "0.0.0.0/0")
	b := newBalancer(t, cfg, &logBuffer{})
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "@"
	r.Header.Set("X-Real-IP", "6.6.6.6")
	w := httptest.NewRecorder()
	b.ServeHTTP(w, r)
	if got := w.Body.String(); got != "xri=" {
		t.Fatalf("the backend answered %q, want no X-Real-IP", got)
	}
}
