package load

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func newServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func run(t *testing.T, cfg Config) *Result {
	t.Helper()
	r, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return r
}

// runSome is run for a test that needs its window to see at least one
// request. A worker goroutine that a busy machine starts only after a short
// window has closed sends nothing, which is right but tests nothing; the
// run is then repeated with a window twice as long, up to four times.
func runSome(t *testing.T, cfg Config) *Result {
	t.Helper()
	for range 4 {
		if r := run(t, cfg); r.Requests() > 0 {
			return r
		}
		t.Logf("no request was sent in a %v window; running again", cfg.Duration)
		cfg.Duration *= 2
	}
	return run(t, cfg)
}

// TestRun_EnginesReadEveryFraming runs both engines against responses
// framed every way HTTP/1.1 allows; a framing bug shows up as errors or as
// a desynchronised connection answering garbage.
func TestRun_EnginesReadEveryFraming(t *testing.T) {
	big := strings.Repeat("x", 100_000) // larger than the raw client's buffer
	handlers := map[string]http.HandlerFunc{
		"content-length": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "5")
			w.Write([]byte("hello"))
		},
		"chunked": func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("part one "))
			w.(http.Flusher).Flush()
			w.Write([]byte(big))
		},
		"no-content": func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) },
		"not-modified-and-long-header": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Long", strings.Repeat("c", 40_000))
			w.WriteHeader(http.StatusNotModified)
		},
		"connection-close": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			w.Write([]byte(big))
		},
		"status-429": func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, `{"error":"slow down"}`, http.StatusTooManyRequests)
		},
	}
	for name, h := range handlers {
		for _, engine := range []string{"raw", "std"} {
			t.Run(name+"/"+engine, func(t *testing.T) {
				var served atomic.Int64
				srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
					served.Add(1)
					h(w, r)
				})
				r := runSome(t, Config{URL: srv.URL + "/path?q=1", Conns: 2, Duration: 150 * time.Millisecond, Engine: engine})
				if r.Errors.Total() != 0 {
					t.Fatalf("errors: %v %v", r.Errors.Counts, r.Errors.First)
				}
				if r.Responses() == 0 || int64(len(r.Status)) != 1 {
					t.Fatalf("responses %d, statuses %v; want some, all of one code", r.Responses(), r.Status)
				}
				if r.Responses() > served.Load() {
					t.Fatalf("counted %d responses, server answered only %d", r.Responses(), served.Load())
				}
			})
		}
	}
}

func TestRun_SendsMethodHeadersAndBody(t *testing.T) {
	type seen struct{ method, key, host, body string }
	got := make(chan seen, 1)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 64)
		n, _ := r.Body.Read(b)
		select {
		case got <- seen{r.Method, r.Header.Get("X-API-Key"), r.Host, string(b[:n])}:
		default:
		}
	})
	r := runSome(t, Config{
		URL: srv.URL, Method: http.MethodPost, Body: []byte("payload"), Duration: 50 * time.Millisecond,
		Header: http.Header{"X-Api-Key": {"k1"}, "Host": {"example.test"}},
	})
	if r.Status[200] == 0 {
		t.Fatalf("statuses %v, errors %v", r.Status, r.Errors.First)
	}
	want := seen{"POST", "k1", "example.test", "payload"}
	if s := <-got; s != want {
		t.Fatalf("server saw %+v, want %+v", s, want)
	}
}

// TestRun_OpenLoopCountsStallFromDueTime injects a handler that stalls one
// request for 300ms while requests keep falling due at 200/s on a single
// connection. Counted from their due time, the ~60 requests that queued
// behind the stall are slow; counted from their send time (coordinated
// omission) only one would be.
//
// The bounds hold however busy the machine: the 50th request, due at
// 245ms, ends 300ms after it is sent or later, and each request due before
// that end waits for it, so the latencies from due time add up to 8.8s or
// more; the service times of one connection's requests, one at a time,
// add up to less than the run's own length.
func TestRun_OpenLoopCountsStallFromDueTime(t *testing.T) {
	const stall = 300 * time.Millisecond
	var n atomic.Int64
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 50 {
			select {
			case <-time.After(stall):
			case <-r.Context().Done():
			}
		}
	})
	began := time.Now()
	r := run(t, Config{URL: srv.URL, Conns: 1, Rate: 200, Duration: time.Second, Timeout: 5 * time.Second})
	took := time.Since(began)
	if r.Requests() != 200 || r.Unsent != 0 || r.Errors.Total() != 0 {
		t.Fatalf("requests %d, unsent %d, errors %v; want every one of the 200 due requests sent and answered",
			r.Requests(), r.Unsent, r.Errors.First)
	}
	if p90 := time.Duration(r.Latency.Quantile(0.9)); p90 < 100*time.Millisecond {
		t.Errorf("latency p90 %v: the requests queued behind the stall were not counted from their due time", p90)
	}
	if max := time.Duration(r.Latency.Max()); max < stall {
		t.Errorf("latency max %v, want at least the stall %v", max, stall)
	}
	sum := func(h *Histogram) time.Duration { return time.Duration(h.Mean() * float64(h.Count())) }
	if s := sum(&r.Latency); s < 8*time.Second {
		t.Errorf("latencies add up to %v, want 8.8s or more: the queued requests were not counted from their due time", s)
	}
	if s := sum(&r.Service); s > took {
		t.Errorf("service times add up to %v, more than the run's %v: they include the wait behind the stall", s, took)
	}
}

// TestRun_OpenLoopReportsUnsent: a target that never answers leaves the
// requests due during the run unsent, and the report must say so.
func TestRun_OpenLoopReportsUnsent(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	r := run(t, Config{URL: srv.URL, Conns: 2, Rate: 100, Duration: 300 * time.Millisecond, Timeout: 100 * time.Millisecond})
	if r.Responses() != 0 || r.Errors.Of(Timeout) == 0 {
		t.Fatalf("responses %d, timeouts %d; want none and some", r.Responses(), r.Errors.Of(Timeout))
	}
	if r.Requests()+r.Unsent != 30 || r.Unsent == 0 {
		t.Fatalf("sent %d + unsent %d, want 30 due with some unsent", r.Requests(), r.Unsent)
	}
}

// TestRun_WarmupIsExcluded: the server fails every request that arrives
// before the measured window can have opened. Run reads its clock after the
// test's, so a request that arrives before before+Warmup was sent during
// the warm-up, and a 500 in the figures is warm-up leaking in. Requests
// arriving later may have been sent on either side of the boundary; they
// succeed and prove nothing either way.
//
// The test needs a warm-up request and a measured one to happen at all,
// which a machine that stalls for the whole window can deny it; then it
// runs again, rather than pass on nothing.
func TestRun_WarmupIsExcluded(t *testing.T) {
	const warmup, attempts = 200 * time.Millisecond, 5
	for attempt := 1; ; attempt++ {
		before := time.Now()
		opens := before.Add(warmup)
		var warmupServed atomic.Int64
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
			if time.Now().Before(opens) {
				warmupServed.Add(1)
				w.WriteHeader(http.StatusInternalServerError)
			}
		})
		r := run(t, Config{URL: srv.URL, Conns: 1, Warmup: warmup, Duration: 200 * time.Millisecond})
		if n := r.Status[500]; n != 0 {
			t.Fatalf("%d of the %d answers given during the warm-up are in the figures", n, warmupServed.Load())
		}
		if warmupServed.Load() > 0 && r.Status[200] > 0 {
			return
		}
		if attempt == attempts {
			t.Fatalf("%d runs without both a warm-up and a measured answer (last: %d and %d)",
				attempts, warmupServed.Load(), r.Status[200])
		}
		t.Logf("run %d: %d warm-up and %d measured answers; the machine stalled, running again",
			attempt, warmupServed.Load(), r.Status[200])
	}
}

// TestRun_CallsHooksAsTheWindowOpensAndCloses: MeasureStart runs once, not
// before the warm-up is over; MeasureEnd once, not before the window ends,
// and both before Run returns.
func TestRun_CallsHooksAsTheWindowOpensAndCloses(t *testing.T) {
	const warmup, dur = 50 * time.Millisecond, 100 * time.Millisecond
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {})
	var starts, ends atomic.Int64
	var startedAt, endedAt time.Time // written by the hooks, read after Run
	before := time.Now()
	run(t, Config{URL: srv.URL, Warmup: warmup, Duration: dur,
		MeasureStart: func() { starts.Add(1); startedAt = time.Now() },
		MeasureEnd:   func() { ends.Add(1); endedAt = time.Now() },
	})
	if starts.Load() != 1 || ends.Load() != 1 {
		t.Fatalf("MeasureStart called %d times, MeasureEnd %d; want once each before Run returns", starts.Load(), ends.Load())
	}
	if startedAt.Before(before.Add(warmup)) {
		t.Errorf("MeasureStart ran %v after Run began, inside the %v warm-up", startedAt.Sub(before), warmup)
	}
	if endedAt.Before(before.Add(warmup + dur)) {
		t.Errorf("MeasureEnd ran %v after Run began, before the window's end at %v", endedAt.Sub(before), warmup+dur)
	}
}

func TestRun_ClassifiesErrors(t *testing.T) {
	closedAddr := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		return "http://" + ln.Addr().String()
	}
	hijack := func(reply string) string {
		return newServer(t, func(w http.ResponseWriter, r *http.Request) {
			c, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			c.Write([]byte(reply))
			c.Close()
		}).URL
	}
	hang := newServer(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }).URL
	for _, tc := range []struct {
		name string
		url  string
		want ErrorKind
	}{
		{"refused", closedAddr(), Refused},
		{"timeout", hang, Timeout},
		{"reset-before-status", hijack(""), Reset},
		{"reset-mid-body", hijack("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"), Reset},
		{"other-garbage", hijack("SMTP ready\r\n\r\n"), Other},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Only the hanging server needs a short timeout; for the others a
			// long one keeps a loaded machine from turning a reset into a
			// timeout (seen with both cores busy and the race detector on).
			timeout := 2 * time.Second
			if tc.want == Timeout {
				timeout = 30 * time.Millisecond
			}
			r := runSome(t, Config{URL: tc.url, Duration: 100 * time.Millisecond, Timeout: timeout})
			if r.Responses() != 0 || r.Errors.Of(tc.want) == 0 || r.Errors.Of(tc.want) != r.Errors.Total() {
				t.Fatalf("responses %d, errors %v (%v); want only %s", r.Responses(), r.Errors.Counts, r.Errors.First, tc.want)
			}
		})
	}
}

// TestRun_ResendsWhenIdleConnectionWasClosed: a server that closes each
// connection after one answer, without saying so, must not turn into
// reset errors: the request is resent on a fresh connection, as net/http
// does.
func TestRun_ResendsWhenIdleConnectionWasClosed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() { // ends when the listener closes
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
			}()
		}
	}()
	r := runSome(t, Config{URL: fmt.Sprintf("http://%s/", ln.Addr()), Duration: 100 * time.Millisecond})
	if r.Responses() == 0 || r.Errors.Total() != 0 {
		t.Fatalf("responses %d, errors %v %v; want answers and no errors", r.Responses(), r.Errors.Counts, r.Errors.First)
	}
}

func TestRun_CancelStopsPromptly(t *testing.T) {
	arrived := make(chan struct{}, 1)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		<-r.Context().Done()
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan *Result, 1)
	go func() {
		r, _ := Run(ctx, Config{URL: srv.URL, Conns: 4, Duration: time.Minute, Timeout: time.Minute})
		done <- r
	}()
	<-arrived
	cancel()
	select {
	case r := <-done:
		if r == nil || !r.Interrupted || r.Errors.Total() != 0 {
			t.Fatalf("result %+v: want Interrupted and the aborted requests not counted as errors", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of cancel")
	}
}

func TestRun_RejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{URL: "http://127.0.0.1:1/"},
		{URL: "ftp://x/", Duration: time.Second},
		{URL: "http:///nohost", Duration: time.Second},
		{URL: "http://127.0.0.1:1/", Duration: time.Second, Engine: "curl"},
		{URL: "http://127.0.0.1:1/", Duration: time.Second, Rate: -1},
	} {
		if _, err := Run(t.Context(), cfg); err == nil {
			t.Errorf("Run(%+v) = nil error, want one", cfg)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := Median(tc.in); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestRounds_AlternatesOrder(t *testing.T) {
	var order []string
	mk := func(name string) Config {
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {})
		return Config{URL: srv.URL, Duration: 20 * time.Millisecond}
	}
	a, b := mk("a"), mk("b")
	res, err := Rounds(t.Context(), []Config{a, b}, 3, func(round, target int, r *Result) {
		order = append(order, string("AB"[target]))
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(order, ""); got != "ABBAAB" {
		t.Fatalf("run order %s, want ABBAAB", got)
	}
	if len(res) != 3 || res[1][0].URL != a.URL || res[1][1].URL != b.URL {
		t.Fatalf("results not indexed [round][target]: %d rounds", len(res))
	}
}
