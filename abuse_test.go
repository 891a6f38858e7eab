package main

// Tests for issue 5, "Trust it under faults and abuse", that need the whole
// app: the http.Server's timeouts and header limit, rate limiting, the admin
// API and graceful shutdown. Balancer-only fault tests are in
// lb/faults_test.go.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// startAbuseApp starts the app over backends with extra top-level config
// fields (see writeConfig).
func startAbuseApp(t *testing.T, extra string, backends ...string) *runningApp {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.json")
	writeConfig(t, path, extra, backends...)
	return startApp(t, path)
}

// within waits for a value on ch for up to d.
func within[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("timed out after %v waiting for %s", d, what)
		panic("unreachable")
	}
}

// mustServe fails unless a plain GET through the app answers 200 with the
// backend's body, and unless serve is still running.
func mustServe(t *testing.T, r *runningApp, want string) {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		t.Fatalf("serve returned %v; the balancer stopped", err)
	default:
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + r.Addr() + "/")
	if err != nil {
		t.Fatalf("a normal client was not served: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != want {
		t.Fatalf("a normal client got %d %q, want 200 %q", resp.StatusCode, body, want)
	}
}

// readUntilClosed reads conn until the other side closes it and returns
// what was read, or fails if conn is still open when the deadline passes.
func readUntilClosed(t *testing.T, conn net.Conn, deadline time.Time, what string) string {
	t.Helper()
	conn.SetReadDeadline(deadline)
	got, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: the connection is still open (read %q)", what, got)
	}
	return string(got)
}

func TestApp_SlowlorisIsDisconnectedAfterReadHeaderTimeout(t *testing.T) {
	be := backendNamed(t, "a")
	const readHeader = 200 * time.Millisecond
	r := startAbuseApp(t, `, "timeouts": {"read_header": "200ms", "shutdown": "1s"}`, be.URL)

	const slow = 8
	type result struct {
		got     string
		elapsed time.Duration
	}
	trickling := make(chan struct{}, slow)
	results := make(chan result, slow)
	stop := make(chan struct{})
	defer close(stop)
	for range slow {
		go func() {
			begin := time.Now()
			conn, err := net.Dial("tcp", r.Addr())
			if err != nil {
				results <- result{got: "dial: " + err.Error()}
				return
			}
			defer conn.Close()
			io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
			trickling <- struct{}{}
			// One more header byte every 20ms, for ever: each arrives well
			// within any per-read timeout, the headers never end.
			go func() {
				tick := time.NewTicker(20 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
						if _, err := conn.Write([]byte("a")); err != nil {
							return
						}
					}
				}
			}()
			conn.SetReadDeadline(begin.Add(5 * time.Second))
			got, err := io.ReadAll(conn)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				got = append(got, "[still open after 5s]"...)
			}
			results <- result{string(got), time.Since(begin)}
		}()
	}
	for range slow {
		within(t, trickling, 5*time.Second, "the slow clients to start")
	}
	mustServe(t, r, "hello from a") // served while the slow clients hold their connections
	for range slow {
		res := within(t, results, 10*time.Second, "a slow client's connection to end")
		if strings.Contains(res.got, "still open") || strings.HasPrefix(res.got, "dial") {
			t.Fatalf("slowloris client: %s", res.got)
		}
		if strings.HasPrefix(res.got, "HTTP/1.1 2") {
			t.Fatalf("slowloris client was answered %q", res.got)
		}
		if res.elapsed < readHeader || res.elapsed > readHeader+2*time.Second {
			t.Fatalf("slowloris client disconnected after %v, want soon after timeouts.read_header (%v)", res.elapsed, readHeader)
		}
	}
	mustServe(t, r, "hello from a")
}

func TestApp_StalledRequestBodyIsCutOffAfterReadBodyTimeout(t *testing.T) {
	bodyEnded := make(chan error, 1)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/upload" {
			_, err := io.Copy(io.Discard, r.Body)
			bodyEnded <- err
			if err == nil {
				io.WriteString(w, "stored")
			}
			return
		}
		io.WriteString(w, "hello")
	}))
	defer be.Close()
	const readBody = 200 * time.Millisecond
	r := startAbuseApp(t, `, "timeouts": {"read_body": "200ms", "shutdown": "1s"}`, be.URL)

	begin := time.Now()
	conn, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// 100 of the 1000 bytes promised, then nothing.
	io.WriteString(conn, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n"+
		strings.Repeat("b", 100))
	mustServe(t, r, "hello") // a normal client is served meanwhile

	if err := within(t, bodyEnded, 5*time.Second, "the backend to stop waiting for the body"); err == nil {
		t.Fatal("the backend got a complete body from a client that sent a tenth of it")
	}
	got := readUntilClosed(t, conn, begin.Add(3*time.Second), "client that stalled mid-body")
	if elapsed := time.Since(begin); elapsed < readBody {
		t.Fatalf("stalled client cut off after %v, before timeouts.read_body (%v)", elapsed, readBody)
	}
	if strings.HasPrefix(got, "HTTP/1.1 2") {
		t.Fatalf("a client whose upload was cut off was answered %q", got)
	}
	if st := r.bal.Status()[0]; st.InFlight != 0 {
		t.Fatalf("backend after the stalled upload: %+v; want nothing in flight", st)
	}
	mustServe(t, r, "hello")
}

func TestApp_SlowButSteadyUploadIsNotCutOff(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		fmt.Fprintf(w, "got %d bytes", len(b))
	}))
	defer be.Close()
	r := startAbuseApp(t, `, "timeouts": {"read_body": "1500ms", "shutdown": "1s"}`, be.URL)

	// 16 parts 100ms apart: 1.6s in all, more than read_body, while each
	// wait between two parts is 1.4s short of it. That margin is for a busy
	// machine, which was seen to hold the writer back for more than half a
	// second (with read_body 500ms and parts 80ms apart, one run in ten
	// with both cores busy). read_body bounds each wait, not the whole
	// upload.
	pr, pw := io.Pipe()
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for range 16 {
			<-tick.C
			if _, err := pw.Write([]byte(strings.Repeat("p", 50))); err != nil {
				return
			}
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", "http://"+r.Addr()+"/upload", pr)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "got 800 bytes" {
		t.Fatalf("slow but steady upload: %d %q, want 200 \"got 800 bytes\"", resp.StatusCode, body)
	}
}

// rawExchange sends req on a fresh connection and reads the answer.
func rawExchange(t *testing.T, addr, req string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatalf("sending the request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

func TestApp_OversizedInputIsRejectedAndServingGoesOn(t *testing.T) {
	var reached atomic.Int64
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" { // not the health checks
			reached.Add(1)
		}
		io.WriteString(w, "ok")
	}))
	defer be.Close()
	r := startAbuseApp(t, `, "max_header_bytes": 4096,
		"rate_limit": {"enabled": true, "capacity": 1000, "refill_rate": 1000, "max_key_length": 64}`, be.URL)

	many := ""
	for i := range 300 {
		many += fmt.Sprintf("X-Filler-%03d: %s\r\n", i, strings.Repeat("f", 50))
	}
	cases := []struct {
		name    string
		path    string
		headers string
		check   func(t *testing.T, resp *http.Response, body string)
	}{
		{"one header over max_header_bytes", "/", "X-Big: " + strings.Repeat("h", 16<<10) + "\r\n", status(431)},
		{"many headers over max_header_bytes", "/", many, status(431)},
		{"URL over max_header_bytes", "/" + strings.Repeat("u", 16<<10), "", clientError},
		{"API key over max_key_length", "/", "X-API-Key: " + strings.Repeat("k", 65) + "\r\n", func(t *testing.T, resp *http.Response, body string) {
			status(400)(t, resp, body)
			var e struct{ Error string }
			if resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal([]byte(body), &e) != nil ||
				!strings.Contains(e.Error, "X-API-Key") {
				t.Fatalf("over-long key answer is not a JSON error naming the header: %q %q", resp.Header.Get("Content-Type"), body)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := reached.Load()
			resp, body := rawExchange(t, r.Addr(), "GET "+tc.path+" HTTP/1.1\r\nHost: x\r\n"+tc.headers+"\r\n")
			tc.check(t, resp, body)
			if reached.Load() != before {
				t.Fatal("a rejected request reached the backend")
			}
			mustServe(t, r, "ok")
		})
	}
	t.Run("API key at max_key_length is accepted", func(t *testing.T) {
		resp, body := rawExchange(t, r.Addr(), "GET / HTTP/1.1\r\nHost: x\r\nX-API-Key: "+strings.Repeat("k", 64)+"\r\n\r\n")
		if resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("key of exactly max_key_length bytes: %d %q, want 200", resp.StatusCode, body)
		}
	})
}

func status(want int) func(*testing.T, *http.Response, string) {
	return func(t *testing.T, resp *http.Response, body string) {
		t.Helper()
		if resp.StatusCode != want {
			t.Fatalf("status %d (%q), want %d", resp.StatusCode, body, want)
		}
	}
}

func clientError(t *testing.T, resp *http.Response, body string) {
	t.Helper()
	if resp.StatusCode < 400 || resp.StatusCode > 499 {
		t.Fatalf("status %d (%q), want a 4xx", resp.StatusCode, body)
	}
}

func TestApp_ShutdownClosesUpgradedConnectionAfterGracePeriod(t *testing.T) {
	backendClosed := make(chan struct{}, 1)
	ws := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			io.WriteString(w, "hello")
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
		io.Copy(conn, brw) // echo until the balancer closes
		backendClosed <- struct{}{}
	}))
	defer ws.Close()
	const grace = 400 * time.Millisecond
	r := startAbuseApp(t, `, "timeouts": {"shutdown": "400ms"}`, ws.URL)
	addr := r.Addr()

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	echo := func(msg string) {
		t.Helper()
		io.WriteString(conn, msg)
		if got, err := br.ReadString('\n'); err != nil || got != msg {
			t.Fatalf("echo through the upgraded connection: %q, %v; want %q", got, err, msg)
		}
	}
	echo("before shutdown\n")

	start := time.Now()
	r.stop() // as SIGTERM does
	waitUntil(t, "the listener to close", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	echo("during the drain\n") // the upgraded connection still works

	_, err = br.ReadString('\n')
	closedAfter := time.Since(start)
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("upgraded connection still open %v after shutdown began (read error %v)", closedAfter, err)
	}
	if closedAfter < grace {
		t.Fatalf("upgraded connection closed %v after shutdown began, before timeouts.shutdown (%v)", closedAfter, grace)
	}
	if closedAfter > grace+3*time.Second {
		t.Fatalf("upgraded connection closed %v after shutdown began, long after timeouts.shutdown (%v)", closedAfter, grace)
	}
	within(t, backendClosed, 5*time.Second, "the backend side of the upgraded connection to close")
	if err := within(t, r.done, 5*time.Second, "serve to return"); err != nil {
		t.Fatalf("serve returned %v after a clean shutdown", err)
	}
	r.done <- nil // for the cleanup
	// serve has closed the connection, but the handler that proxied it
	// may still be on its way out: the count reaches 0 when it returns.
	waitUntil(t, "the upgraded connection to be counted out", func() bool { return r.bal.Upgrades() == 0 })
}

// limiterStatus reads "limiter" from GET /status on the admin listener.
func readLimiterStatus(t *testing.T, r *runningApp) limiterStatus {
	t.Helper()
	resp, err := http.Get("http://" + r.AdminAddr() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Limiter limiterStatus `json:"limiter"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("/status: %v", err)
	}
	return st.Limiter
}

func TestApp_FloodOfForwardedAddressesStaysWithinMaxClients(t *testing.T) {
	be := backendNamed(t, "a")
	r := startAbuseApp(t, `, "rate_limit": {"enabled": true, "capacity": 5, "refill_rate": 0.01,
		"trusted_proxies": ["127.0.0.1/32"], "max_clients": 100}`, be.URL)
	base := "http://" + r.Addr() + "/"
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	getAs := func(ip string) (*http.Response, error) {
		req, _ := http.NewRequest("GET", base, nil)
		req.Header.Set("X-Forwarded-For", ip)
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp, nil
	}

	const known = "192.0.2.7"
	if resp, err := getAs(known); err != nil || resp.StatusCode != 200 {
		t.Fatalf("known client's first request: %v %v", resp, err)
	}

	const flood, workers = 2000, 8
	var next atomic.Int64
	var bad atomic.Int64
	var badMsg sync.Once
	var msg string
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= flood {
					return
				}
				resp, err := getAs(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
				if err != nil || resp.StatusCode != 200 && resp.StatusCode != 429 {
					bad.Add(1)
					badMsg.Do(func() { msg = fmt.Sprint(resp, err) })
				}
			}
		})
	}
	wg.Wait()
	if n := bad.Load(); n != 0 {
		t.Fatalf("%d flood requests got neither 200 nor 429; first: %s", n, msg)
	}
	st := readLimiterStatus(t, r)
	if st.Clients > 100 || st.MaxClients != 100 {
		t.Fatalf("limiter after %d distinct clients: tracks %d, max_clients %d; want at most 100", flood, st.Clients, st.MaxClients)
	}
	if st.Overflowed == 0 {
		t.Fatalf("the flood of %d clients never found the table full (%+v): the X-Forwarded-For addresses were not used", flood, st)
	}

	// The known client keeps its own bucket: 4 tokens left of 5, then 429.
	for i := range 4 {
		resp, err := getAs(known)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("known client's request %d after the flood: %v %v, want 200", i+2, resp, err)
		}
	}
	resp, err := getAs(known)
	if err != nil || resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("known client over its capacity: %v %v, want 429 with Retry-After", resp, err)
	}
	if st := readLimiterStatus(t, r); st.Clients > 100 {
		t.Fatalf("limiter tracks %d clients, over max_clients 100", st.Clients)
	}
}

func TestApp_APIKeyNeverAppearsInLogsOrStatus(t *testing.T) {
	const secret = "sk_live_7f3a9c2e5b1d4f6a8c0e"
	const listed = "pk_partner_9d8c7b6a5f4e3d2c"
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" { // hang up without answering: a 502 and an ERROR line
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
			return
		}
		io.WriteString(w, "ok")
	}))
	defer be.Close()
	t.Setenv("STDLB_TEST_ADMIN_TOKEN", "s3cret")
	r := startAbuseApp(t, `, "access_log": true,
		"rate_limit": {"enabled": true, "capacity": 3, "refill_rate": 0.01, "max_key_length": 64},
		"admin": {"listen": "127.0.0.1:0", "token_env": "STDLB_TEST_ADMIN_TOKEN"}`, be.URL)
	if code, body := adminDo(t, "PUT", "http://"+r.AdminAddr()+"/clients/"+listed, "s3cret", `{"capacity": 1, "refill_rate": 0.01}`); code != 200 {
		t.Fatalf("PUT /clients/%s: %d %v", listed, code, body)
	}

	send := func(path, key string) int {
		req, _ := http.NewRequest("GET", "http://"+r.Addr()+path, nil)
		req.Header.Set("X-API-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	steps := []struct {
		path, key string
		want      int
	}{
		{"/fail", secret, 502},                           // backend failure: an ERROR line
		{"/", secret, 200},                               // admitted
		{"/", secret, 200},                               // admitted, last token
		{"/", secret, 429},                               // rate limited
		{"/", secret + strings.Repeat("x", 64), 400},     // too long
		{"/", listed, 200},                               // a client with its own limits
		{"/", listed, 429},                               // ... over them
		{"/fail", listed + strings.Repeat("y", 64), 400}, // too long, listed prefix
	}
	for i, s := range steps {
		if got := send(s.path, s.key); got != s.want {
			t.Fatalf("step %d (%s): %d, want %d", i+1, s.path, got, s.want)
		}
	}
	// A minute of limiter ticks: the rejection summary is logged now.
	ticks := int(time.Minute / (100 * time.Millisecond))
	for range ticks {
		r.limit.limiter.Tick()
	}
	waitUntil(t, "the rejection summary", func() bool { return strings.Contains(r.logs.String(), "rate limit: rejections") })
	r.app.access.Flush()
	waitUntil(t, "the access log", func() bool { return strings.Count(r.access.String(), "msg=request") >= len(steps) })

	sources := map[string]string{"access log": r.access.String(), "event log": r.logs.String()}
	for _, path := range []string{"/status", "/metrics", "/"} {
		resp, err := http.Get("http://" + r.AdminAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		sources["admin "+path] = string(b)
	}
	for where, text := range sources {
		for _, key := range []string{secret, listed} {
			if strings.Contains(text, key) {
				t.Errorf("API key %q appears in the %s:\n%s", key, where, text)
			}
		}
	}
	if !strings.Contains(r.access.String(), "key_kind=key") || !strings.Contains(r.access.String(), "status=429") {
		t.Fatalf("access log lacks the keyed and limited requests:\n%s", r.access)
	}
}
