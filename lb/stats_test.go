package lb

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"
	"unsafe"
)

func TestBalancer_CountsBytesLatencyAndRetriesPerBackend(t *testing.T) {
	echo := namedBackend(t, "echo", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, r.Body)
	}))
	dead := "http://" + closedAddr(t)
	bal := newBalancer(t, testConfig(t, dead, echo.URL), &logBuffer{})
	lb := startBalancer(t, bal)
	// Round robin sends one of the first two to the dead backend, which
	// refuses it: retried on echo, and the dead one is marked down.
	for range 3 {
		resp, err := lb.Client().Post(lb.URL+"/echo", "text/plain", strings.NewReader("ten bytes!"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "ten bytes!" {
			t.Fatalf("answer %q", body)
		}
	}
	m := bal.Metrics()
	d, e := m.Backends[0], m.Backends[1]
	if d.Retries != 1 || d.BytesSent != 0 || d.BytesReceived != 0 || d.Duration.Count != 0 || d.StateChanges != 1 || d.Healthy {
		t.Errorf("dead backend: %+v; want 1 retry, no bytes, no answers, 1 state change, down", d)
	}
	if e.Retries != 0 || e.BytesSent != 30 || e.BytesReceived != 30 || e.Duration.Count != 3 || e.StateChanges != 0 {
		t.Errorf("echo backend: retries %d, sent %d, received %d, answers %d, changes %d; want 0, 30, 30, 3, 0",
			e.Retries, e.BytesSent, e.BytesReceived, e.Duration.Count, e.StateChanges)
	}
	if e.Duration.Sum <= 0 || e.Duration.Sum > m.Duration.Sum {
		t.Errorf("echo's latency sum %v, want above 0 and at most the balancer's %v", e.Duration.Sum, m.Duration.Sum)
	}
	st := bal.Status()
	if st[1].BytesSent != 30 || st[1].BytesReceived != 30 || st[0].Retries != 1 || st[0].StateChanges != 1 {
		t.Errorf("Status = %+v", st)
	}
}

func TestBalancer_BalancersOwnAnswersStayOutOfBackendCounts(t *testing.T) {
	a := namedBackend(t, "a", nil)
	bal := newBalancer(t, testConfig(t, a.URL), &logBuffer{})
	lb := startBalancer(t, bal)
	bal.pool.Load().backends[0].healthy.Store(false)
	resp, _ := get(t, lb.Client(), lb.URL+"/") // 503: no healthy backend
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d", resp.StatusCode)
	}
	m := bal.Metrics()
	if m.Refused.Count != 1 || m.Duration.Count != 0 || m.Backends[0].Duration.Count != 0 || m.Backends[0].BytesReceived != 0 {
		t.Fatalf("refused %d, proxied %d, backend answers %d, bytes %d; want the 503 counted as refused only",
			m.Refused.Count, m.Duration.Count, m.Backends[0].Duration.Count, m.Backends[0].BytesReceived)
	}
	if got := bal.stats.errors5xx.Load(); got != 1 {
		t.Fatalf("5xx answers %d, want 1", got)
	}
}

// at returns the instant s seconds after a fixed start.
func at(s float64) time.Time {
	return time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC).Add(time.Duration(s * float64(time.Second)))
}

// answer records n answers of backend be with the given status and
// latency, as record does for a proxied request.
func answer(b *Balancer, be *Backend, n int, status int, latency time.Duration) {
	for range n {
		be.byStatus.add(status)
		be.stats.latency.observe(latency)
		b.durations.observe(latency)
		if status >= 500 {
			b.stats.errors5xx.Add(1)
		}
	}
}

func TestSampler_RatesAndQuantilesOverTheLastMinute(t *testing.T) {
	bal := newBalancer(t, testConfig(t, "http://10.0.0.1:80", "http://10.0.0.2:80"), &logBuffer{})
	a := bal.pool.Load().backends[0]
	bal.sample(at(0))
	answer(bal, a, 90, 200, 800*time.Microsecond) // (0.5 ms, 1 ms]
	if tr := a.stats.traffic(a, at(0.9)); tr.Rates != (Rates{}) {
		t.Errorf("figures over 0.9 s: %+v, want none so short a time after the first sample", tr.Rates)
	}
	answer(bal, a, 10, 503, 40*time.Millisecond) // (25 ms, 50 ms]
	bal.local.add(429)
	bal.stats.refused.observe(time.Microsecond)
	bal.sample(at(5))

	tr := a.stats.traffic(a, at(10)) // nothing new since 5 s
	want := Rates{WindowSeconds: 10, RequestsPerSecond: 10, Responses5xxPerSecond: 1,
		LatencyP50: 0.000778, LatencyP99: 0.0475} // 0.5 + 0.5 × 50/90 ms; 25 + 25 × 9/10 ms
	if tr.Rates != want || tr.Responses5xx != 10 {
		t.Errorf("traffic = %+v\nwant %+v and 10 5xx", tr, want)
	}
	total := bal.trafficAt(at(10))
	if total.Total.RequestsPerSecond != 10.1 || total.Total.Responses5xxPerSecond != 1 || total.Total.LatencyP99 != 0.0475 {
		t.Errorf("total = %+v, want 101 answers and 10 5xx over 10 s", total.Total)
	}
	if total.Refused.RequestsPerSecond != 0.1 || total.Refused.Responses5xxPerSecond != 0 {
		t.Errorf("refused = %+v, want 1 answer over 10 s", total.Refused)
	}
	b := bal.pool.Load().backends[1]
	if tr := b.stats.traffic(b, at(10)); tr.RequestsPerSecond != 0 || tr.LatencyP50 != 0 || tr.WindowSeconds != 10 {
		t.Errorf("idle backend = %+v, want no answers over 10 s", tr)
	}

	h := bal.History()
	if len(h.Times) != 1 || h.Times[0] != at(5).UnixMilli() || len(h.Backends) != 2 {
		t.Fatalf("history times %v, %d backends; want one point at 5 s", h.Times, len(h.Backends))
	}
	p := h.Backends[0]
	if p.RequestsPerSecond[0] != 20 || p.Responses5xxPerSecond[0] != 2 || math.Abs(float64(p.LatencyP99[0])-0.0475) > 1e-6 {
		t.Errorf("backend point = %+v, want 20/s, 2/s, p99 47.5 ms", p.SeriesHistory)
	}
	if q := h.Backends[1].LatencyP99[0]; !math.IsNaN(float64(q)) {
		t.Errorf("idle backend's p99 = %v, want NaN (no answers)", q)
	}
}

func TestSampler_WindowSlidesAndHistoryKeepsTenMinutes(t *testing.T) {
	bal := newBalancer(t, testConfig(t, "http://10.0.0.1:80"), &logBuffer{})
	a := bal.pool.Load().backends[0]
	for i := range 150 { // 12.5 minutes, 5 s apart, one answer per interval
		bal.sample(at(5 * float64(i)))
		answer(bal, a, 1, 200, time.Millisecond)
	}
	// The window is the last 12 intervals, from the sample at 685 s (137
	// answers then) to now (150).
	if tr := a.stats.traffic(a, at(745)); tr.WindowSeconds != 60 || tr.RequestsPerSecond != round(13.0/60, 1e3) {
		t.Errorf("traffic = %+v, want 13 answers over 60 s", tr.Rates)
	}
	if tr := a.stats.traffic(a, at(745.5)); tr.WindowSeconds != 60.5 {
		t.Errorf("half a second later the window is %v s, want 60.5", tr.WindowSeconds)
	}
	h := bal.History()
	if len(h.Times) != historyLen || h.Times[0] != at(5*30).UnixMilli() || h.Times[historyLen-1] != at(5*149).UnixMilli() {
		t.Fatalf("%d times from %v to %v; want %d, from 150 s to 745 s", len(h.Times), h.Times[0], h.Times[len(h.Times)-1], historyLen)
	}
	if len(h.Total.RequestsPerSecond) != historyLen || h.Total.RequestsPerSecond[0] != 0.2 {
		t.Errorf("total points %v", h.Total.RequestsPerSecond)
	}

	// A backend added now starts its history now, aligned at the end.
	cfg := testConfig(t, "http://10.0.0.1:80", "http://10.0.0.2:80")
	if err := bal.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	bal.sample(at(750))
	bal.sample(at(755))
	h = bal.History()
	if n := len(h.Backends[1].RequestsPerSecond); n != 1 || len(h.Backends[0].RequestsPerSecond) != historyLen {
		t.Errorf("new backend has %d points, want 1; the old one %d", n, len(h.Backends[0].RequestsPerSecond))
	}
}

func TestQuantile(t *testing.T) {
	var empty, one, top [nBuckets]uint64
	one[2] = 100 // (0.5 ms, 1 ms]
	top[nBuckets-1] = 5
	for _, c := range []struct {
		name string
		b    *[nBuckets]uint64
		q    float64
		want float64
	}{
		{"empty", &empty, 0.5, 0},
		{"median interpolates within the bucket", &one, 0.5, 0.00075},
		{"p99", &one, 0.99, 0.000995},
		{"above every bound reads as the highest", &top, 0.5, 30},
	} {
		if got := quantile(c.q, c.b); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%s: quantile(%v) = %v, want %v", c.name, c.q, got, c.want)
		}
	}
}

func TestValues_NaNIsNull(t *testing.T) {
	b, err := json.Marshal(Values{1, float32(math.NaN()), 0.25})
	if err != nil || string(b) != "[1,null,0.25]" {
		t.Fatalf("got %s, %v", b, err)
	}
}

func TestRunSampler_SamplesAtOnceAndStops(t *testing.T) {
	bal := newBalancer(t, testConfig(t, "http://10.0.0.1:80"), &logBuffer{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := bal.RunSampler(ctx); err != context.Canceled {
		t.Fatalf("RunSampler = %v, want context.Canceled", err)
	}
	bal.stats.mu.Lock()
	n := bal.stats.total.nRecent
	bal.stats.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d samples taken, want 1 before returning", n)
	}
}

// BenchmarkRecord answers: what does counting a finished request cost,
// before this package kept latency, bytes and 5xx per backend and now,
// with every core counting answers of one backend at once?
func BenchmarkRecord(b *testing.B) {
	bal, err := New(Config{Backends: []BackendConfig{{URL: mustURL(b, "http://10.0.0.1:80")}}}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	newEx := func() *exchange {
		ex := newExchange(bal)
		ex.pool, ex.cur, ex.start = bal.pool.Load(), 0, time.Now()
		ex.stats = reqStats{sent: ex.start, answered: true}
		ex.rw.bytes = 14
		return ex
	}
	for _, c := range []struct {
		name   string
		record func(ex *exchange)
	}{
		{"counting=before", func(ex *exchange) { // what finish did before
			ex.backend().byStatus.add(200)
			bal.durations.observe(800 * time.Microsecond)
		}},
		{"counting=now", func(ex *exchange) { bal.record(ex, 200, 800*time.Microsecond) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			ex := newEx()
			b.ReportAllocs()
			for b.Loop() {
				c.record(ex)
			}
		})
		b.Run(c.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				ex := newEx()
				for pb.Next() {
					c.record(ex)
				}
			})
		})
	}
}

// The sampler's memory is stated in window.go and bench/RESULTS.md.
func TestSeries_MemoryIsAFewKB(t *testing.T) {
	if n := unsafe.Sizeof(series{}); n > 3800 {
		t.Fatalf("a series is %d bytes, more than the 3.7 KB documented", n)
	}
}
