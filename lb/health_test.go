package lb

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// switchable is a backend whose /healthz fails while failing is set, and
// which counts the probes it has seen.
type switchable struct {
	srv     *httptest.Server
	failing atomic.Bool
	probes  atomic.Int64
}

func newSwitchable(t *testing.T) *switchable {
	s := &switchable{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			s.probes.Add(1)
			if s.failing.Load() {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
		}
		w.Write([]byte("ok"))
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func TestHealthCheck_ThresholdsAndOneLogLinePerChange(t *testing.T) {
	s := newSwitchable(t)
	logs := &logBuffer{}
	cfg := testConfig(t, s.srv.URL)
	cfg.HealthCheck.UnhealthyThreshold = 3
	cfg.HealthCheck.HealthyThreshold = 2
	b := newBalancer(t, cfg, logs)
	be := b.pool.Load().backends[0]
	runHealthChecks(t, b)

	waitFor(t, "first probes", func() bool { return s.probes.Load() >= 2 })
	if !be.Healthy() {
		t.Fatal("a backend passing its checks is marked down")
	}

	before := s.probes.Load()
	s.failing.Store(true)
	waitFor(t, "backend down", func() bool { return !be.Healthy() })
	// A probe in flight when failing was set may have passed, so at least
	// UnhealthyThreshold failed probes came after it.
	if n := s.probes.Load() - before; n < 3 {
		t.Fatalf("backend went down after %d probes, want at least 3 (unhealthy_threshold)", n)
	}
	seen := s.probes.Load()
	waitFor(t, "more failed probes", func() bool { return s.probes.Load() >= seen+3 })
	if n := logs.count("down: 3 failed health checks: /healthz answered 503"); n != 1 {
		t.Fatalf("want exactly one down line after repeated failures, got %d:\n%s", n, logs)
	}

	before = s.probes.Load()
	s.failing.Store(false)
	waitFor(t, "backend up", func() bool { return be.Healthy() })
	if n := s.probes.Load() - before; n < 2 {
		t.Fatalf("backend came back after %d probes, want at least 2 (healthy_threshold)", n)
	}
	seen = s.probes.Load()
	waitFor(t, "more passed probes", func() bool { return s.probes.Load() >= seen+3 })
	if n := logs.count("up: 2 passed health checks"); n != 1 {
		t.Fatalf("want exactly one up line, got %d:\n%s", n, logs)
	}
	if st := b.Status()[0]; !st.Healthy || st.FailedChecksInARow != 0 || st.LastCheck.IsZero() {
		t.Fatalf("status after recovery = %+v", st)
	}
}

func TestProbe_CapsAndDrainsBody(t *testing.T) {
	stopped := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(stopped)
		chunk := []byte(strings.Repeat("x", 4096))
		for {
			if _, err := w.Write(chunk); err != nil {
				return // the prober hung up after its cap
			}
		}
	}))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	hc := HealthCheck{Path: "/healthz", Timeout: 5 * time.Second}
	start := time.Now()
	if err := probe(context.Background(), client, mustURL(t, srv.URL), hc); err != nil {
		t.Fatalf("probe of a 200 with an endless body: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("probe took %v: the body was not capped", d)
	}
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("backend still writing: the probe did not close the connection")
	}
}

func TestProbe_TimesOut(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	hc := HealthCheck{Path: "/healthz", Timeout: 50 * time.Millisecond}
	err := probe(context.Background(), http.DefaultClient, mustURL(t, srv.URL), hc)
	if err == nil {
		t.Fatal("probe of a hanging backend succeeded")
	}
	if got := probeReason(err, hc.Timeout); got != "no answer within 50ms" {
		t.Fatalf("reason = %q, want %q", got, "no answer within 50ms")
	}
}
