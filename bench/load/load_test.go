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
				r := run(t, Config{URL: srv.URL + "/path?q=1", Conns: 2, Duration: 150 * time.Millisecond, Engine: engine})
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
	r := run(t, Config{
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
	r := run(t, Config{URL: srv.URL, Conns: 1, Rate: 200, Duration: time.Second, Timeout: 5 * time.Second})
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
	if p90 := time.Duration(r.Service.Quantile(0.9)); p90 > 50*time.Millisecond {
		t.Errorf("service-time p90 %v: only one request was itself slow", p90)
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

// TestRun_WarmupIsExcluded: the server fails every request until the
// measured window opens, so failures in the figures would be warm-up leaking
// in. Requests in flight across the boundary may go either way.
func TestRun_WarmupIsExcluded(t *testing.T) {
	var measuring atomic.Bool
	var warmupServed atomic.Int64
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if !measuring.Load() {
			warmupServed.Add(1)
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	r := run(t, Config{
		URL: srv.URL, Conns: 1, Warmup: 300 * time.Millisecond, Duration: 300 * time.Millisecond,
		MeasureStart: func() { measuring.Store(true) },
	})
	ok, failed := r.Status[200], r.Status[500]
	if warmupServed.Load() < ok/4 {
		t.Fatalf("warm-up served only %d requests against %d measured", warmupServed.Load(), ok)
	}
	if failed > ok/20+2 {
		t.Fatalf("measured %d warm-up answers (500) against %d measured (200)", failed, ok)
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
			r := run(t, Config{URL: tc.url, Duration: 100 * time.Millisecond, Timeout: timeout})
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
	r := run(t, Config{URL: fmt.Sprintf("http://%s/", ln.Addr()), Duration: 100 * time.Millisecond})
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
