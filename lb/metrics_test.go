package lb

import (
	"net/http"
	"testing"
	"time"
)

func TestBalancer_MetricsCountAnswersByBackendAndStatus(t *testing.T) {
	a := namedBackend(t, "a", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	}))
	dead := "http://" + closedAddr(t)
	bal := newBalancer(t, testConfig(t, a.URL, dead), &logBuffer{})
	lb := startBalancer(t, bal)
	get(t, lb.Client(), lb.URL+"/")    // a: 200
	get(t, lb.Client(), lb.URL+"/")    // dead refuses, retried on a: 200
	get(t, lb.Client(), lb.URL+"/tea") // a: 418
	bal.pool.Load().backends[0].healthy.Store(false)
	get(t, lb.Client(), lb.URL+"/") // nobody healthy: 503

	m := bal.Metrics()
	if got := m.Backends[0].ByStatus; len(got) != 2 || got[200] != 2 || got[418] != 1 {
		t.Fatalf("backend a by status = %v, want 200:2 418:1", got)
	}
	if got := m.Backends[1]; got.Failures != 1 || len(got.ByStatus) != 0 || got.Healthy {
		t.Fatalf("refusing backend = %+v, want 1 failure, no answers, down", got)
	}
	if m.Local[503] != 1 || m.Retries != 1 {
		t.Fatalf("local answers %v, retries %d; want 503:1 and 1 retry", m.Local, m.Retries)
	}
	d := m.Duration
	if d.Count != 3 || d.Cumulative[len(d.Cumulative)-1] != 3 || d.Sum <= 0 {
		t.Fatalf("duration histogram = %+v, want the 3 proxied answers", d)
	}
	if r := m.Refused; r.Count != 1 || r.Cumulative[len(r.Cumulative)-1] != 1 {
		t.Fatalf("refused histogram = %+v, want the 503", r)
	}
}

func TestDurationHistogram_Buckets(t *testing.T) {
	var h durationHistogram
	for _, d := range []time.Duration{time.Millisecond, 5 * time.Millisecond, 7 * time.Millisecond, 2 * time.Second, time.Minute} {
		h.observe(d)
	}
	s := h.snapshot()
	// le=0.005 holds 1ms and exactly 5ms; le=0.01 adds 7ms; 2s lands in
	// le=2.5; a minute only in +Inf.
	want := map[float64]uint64{0.005: 2, 0.01: 3, 1: 3, 2.5: 4, 10: 4}
	for i, b := range s.Bounds {
		if n, ok := want[b]; ok && s.Cumulative[i] != n {
			t.Errorf("le=%v: %d, want %d", b, s.Cumulative[i], n)
		}
	}
	if s.Count != 5 || s.Cumulative[len(s.Cumulative)-1] != 5 {
		t.Fatalf("count %d, +Inf %d, want 5", s.Count, s.Cumulative[len(s.Cumulative)-1])
	}
	if s.Sum < 62 || s.Sum > 62.02 {
		t.Fatalf("sum %v, want 62.013", s.Sum)
	}
}
