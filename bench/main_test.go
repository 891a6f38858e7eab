package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func backend(t *testing.T, name string) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		if r.Header.Get("X-API-Key") != "k1" {
			http.Error(w, "no key", http.StatusUnauthorized)
			return
		}
		w.Header().Set("X-Backend", name)
		w.Write([]byte("hello from " + name + "\n"))
	}))
	t.Cleanup(srv.Close)
	return srv, &served
}

func runBench(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(t.Context(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestSmoke_TextReport runs the generator as a user would and checks the
// report names what it measured.
func TestSmoke_TextReport(t *testing.T) {
	srv, served := backend(t, "b1")
	code, out, errOut := runBench(t, "-url", srv.URL, "-c", "4", "-d", "200ms", "-warmup", "50ms", "-H", "X-API-Key: k1")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{"closed loop, 4 connections", "throughput", "p99.9", "200: ", "refused 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if served.Load() == 0 || strings.Contains(out, "401: ") { // a status count, not a figure that has 401 in it
		t.Errorf("server served %d, report:\n%s", served.Load(), out)
	}
}

func TestSmoke_JSONOpenLoop(t *testing.T) {
	srv, _ := backend(t, "b1")
	code, out, errOut := runBench(t, "-url", srv.URL, "-rate", "500", "-c", "8", "-d", "300ms",
		"-warmup", "0s", "-json", "-H", "X-API-Key: k1")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var s summary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("-json output is not JSON: %v\n%s", err, out)
	}
	if s.Mode != "open" || s.Requests+s.Unsent != 150 || s.Status["200"] != s.Responses || s.Service == nil {
		t.Fatalf("summary %+v: want open loop, 150 due requests at 500/s over 300ms, all 200, service figures", s)
	}
	if s.Latency.P50 <= 0 || s.Latency.Max < s.Latency.P99 || s.Latency.P99 < s.Latency.P50 {
		t.Fatalf("latency figures out of order: %+v", s.Latency)
	}
}

func TestSmoke_CompareAlternatesAndReportsRatios(t *testing.T) {
	a, servedA := backend(t, "a")
	b, servedB := backend(t, "b")
	code, out, errOut := runBench(t, "-url", a.URL, "-compare", b.URL, "-rounds", "2", "-c", "2",
		"-d", "100ms", "-warmup", "20ms", "-H", "X-API-Key: k1", "-json")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var c comparison
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatalf("-json output is not JSON: %v\n%s", err, out)
	}
	if len(c.Rounds) != 2 || c.Median.Throughput <= 0 || servedA.Load() == 0 || servedB.Load() == 0 {
		t.Fatalf("comparison %+v; served A %d B %d", c, servedA.Load(), servedB.Load())
	}
	if !strings.Contains(errOut, "round 2/2 B") {
		t.Errorf("no progress lines on stderr: %q", errOut)
	}
}

func TestRun_ExitStatus(t *testing.T) {
	srv, _ := backend(t, "b1")
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"bad flag", []string{"-nosuch"}, 2},
		{"bad header", []string{"-H", "no colon"}, 2},
		{"bad url", []string{"-url", "ftp://x/", "-d", "10ms"}, 2},
		{"stray argument", []string{"extra"}, 2},
		{"nothing answers", []string{"-url", "http://127.0.0.1:1/", "-d", "20ms", "-warmup", "0s"}, 1},
		{"help", []string{"-h"}, 0},
		// A window long enough that a busy machine cannot start the worker
		// only after it has closed, which would leave no answer at all.
		{"non-2xx still counts as answered", []string{"-url", srv.URL, "-d", "300ms", "-warmup", "0s", "-c", "1"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, _, errOut := runBench(t, tc.args...); code != tc.want {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.want, errOut)
			}
		})
	}
}

func TestFmtNS(t *testing.T) {
	for ns, want := range map[int64]string{
		999: "999ns", 1_500: "1.5µs", 123_456: "123µs", 1_234_567: "1.23ms", 2_500_000_000: "2.5s",
	} {
		if got := fmtNS(ns); got != want {
			t.Errorf("fmtNS(%d) = %q, want %q", ns, got, want)
		}
	}
}
