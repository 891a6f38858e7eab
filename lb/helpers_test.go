package lb

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"stdlb/lb/h1"
)

// logBuffer collects log output from many goroutines for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// count returns how many lines contain all of the given substrings.
func (l *logBuffer) count(subs ...string) int {
	n := 0
	for line := range strings.SplitSeq(l.String(), "\n") {
		all := line != ""
		for _, s := range subs {
			all = all && strings.Contains(line, s)
		}
		if all {
			n++
		}
	}
	return n
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// namedBackend starts an httptest backend that answers "hello from name"
// with X-Backend: name, and runs extra handlers for other paths.
func namedBackend(t *testing.T, name string, extra http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		if r.URL.Path == "/" || r.URL.Path == "/healthz" || extra == nil {
			io.WriteString(w, "hello from "+name)
			return
		}
		extra.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// discardLogger formats every record, as a real access log does, and
// throws the bytes away.
func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// testConfig returns a config over the given backend URLs with frequent
// health checks, suitable for tests. A probe's timeout is long: on a busy
// machine a probe of a healthy local backend can take longer than a quiet
// one suggests, and a timed-out probe would mark it down.
func testConfig(t *testing.T, urls ...string) Config {
	cfg := Config{
		Retries: 2,
		HealthCheck: HealthCheck{
			Interval: 10 * time.Millisecond, Timeout: 2 * time.Second,
			HealthyThreshold: 2, UnhealthyThreshold: 2,
		},
		// Long: a dial that fails marks the backend down at once (passive
		// check), and with health checks an hour apart, as some tests set
		// them, every later request gets 503. A loopback SYN dropped by a
		// full accept queue on a busy machine is sent again after 1s.
		DialTimeout:     5 * time.Second,
		ResponseTimeout: 30 * time.Second, // long: a busy machine must not turn a slow answer into a 504
		AccessLog:       true,
	}
	for _, u := range urls {
		cfg.Backends = append(cfg.Backends, BackendConfig{URL: mustURL(t, u)})
	}
	return cfg
}

// startBalancer serves b on a Server, as the balancer runs in production,
// for the test's duration: every balancer test also tests Server, its fast
// path and its handoff to net/http.
func startBalancer(t *testing.T, b *Balancer) *front {
	t.Helper()
	return startServer(t, &http.Server{Handler: b})
}

// front is an h1.Server on a loopback port, with a client for it.
type front struct {
	URL    string
	srv    *h1.Server
	client *http.Client
}

// Addr returns the host:port the server listens on.
func (f *front) Addr() string { return strings.TrimPrefix(f.URL, "http://") }

// Client returns a client whose idle connections are closed with the test.
func (f *front) Client() *http.Client { return f.client }

// startServer serves an h1.NewServer(hs) on a loopback port until the test
// ends, and fails the test if Serve returns anything but ErrServerClosed.
func startServer(t *testing.T, hs *http.Server) *front {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &front{URL: "http://" + ln.Addr().String(), srv: h1.NewServer(hs),
		client: &http.Client{Transport: &http.Transport{}}}
	serveFront(t, f, ln, func() (net.Conn, error) { return net.Dial("tcp", ln.Addr().String()) })
	return f
}

// serveFront serves f on ln until the test ends, failing the test if Serve
// returns anything but ErrServerClosed. Tests that count goroutines need
// every goroutine the server keeps to have started: one exchange the server
// answers itself, without the handler, on a connection from dial, makes
// sure of it.
func serveFront(t *testing.T, f *front, ln net.Listener, dial func() (net.Conn, error)) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f.srv.Serve(ln) }()
	conn, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(conn, "GET / HTTP/9.9\r\n\r\n")
	if _, err := http.ReadResponse(bufio.NewReader(conn), nil); err != nil {
		t.Fatalf("the server did not answer a request for HTTP/9.9: %v", err)
	}
	conn.Close()
	t.Cleanup(func() {
		f.client.CloseIdleConnections()
		f.srv.Close()
		if err := <-done; err != http.ErrServerClosed {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
}

func newBalancer(t *testing.T, cfg Config, logs *logBuffer) *Balancer {
	t.Helper()
	b, err := New(cfg, Options{Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// runHealthChecks runs b's checker until the test ends.
func runHealthChecks(t *testing.T, b *Balancer) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.RunHealthChecks(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// failAfter is how long a test waits for something that must happen before
// it gives up. Only a failing test waits that long, so it is generous: a
// busy machine (both cores taken, the race detector on) can be many times
// slower than a quiet one.
const failAfter = 30 * time.Second

// waitFor polls cond until it holds or failAfter passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(failAfter)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// errorBody decodes a JSON error answer and fails unless it has an error.
func errorBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error answer Content-Type = %q, want application/json", ct)
	}
	var body struct{ Error string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Error == "" {
		t.Fatalf("error answer is not JSON with an error field: %v", err)
	}
	return body.Error
}

func get(t *testing.T, client *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := client.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// withGot1xx returns ctx with a client trace that reports 1xx answers.
func withGot1xx(ctx context.Context, f func(int, http.Header)) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			f(code, http.Header(h))
			return nil
		},
	})
}
