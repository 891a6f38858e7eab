package lb

import (
	"math"
	"sync/atomic"
	"time"
)

// statusCounts counts answers by status code, 100 to 599, with atomic
// counters so recording on the request path takes no lock. A code out of
// that range (a backend may send 999) is counted as 599.
type statusCounts [500]atomic.Uint64

func (c *statusCounts) add(code int) {
	if code < 100 || code > 599 {
		code = 599
	}
	c[code-100].Add(1)
}

// snapshot returns the non-zero counts by code.
func (c *statusCounts) snapshot() map[int]uint64 {
	m := map[int]uint64{}
	for i := range c {
		if n := c[i].Load(); n > 0 {
			m[i+100] = n
		}
	}
	return m
}

// durationBounds are the upper bounds, in seconds, of the request duration
// histogram: Prometheus's default buckets, which suit a proxy whose answers
// range from sub-millisecond to the backend timeout.
var durationBounds = [...]float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// durationHistogram counts request durations in durationBounds buckets,
// lock-free: one atomic add for the bucket, one for the sum.
type durationHistogram struct {
	counts [len(durationBounds) + 1]atomic.Uint64 // last: above every bound
	sumNs  atomic.Uint64
}

func (h *durationHistogram) observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(durationBounds) && s > durationBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(uint64(max(d, 0)))
}

// HistogramSnapshot is a histogram in Prometheus's terms: cumulative counts
// for each upper bound (the last bound is +Inf), their sum and their count.
type HistogramSnapshot struct {
	Bounds     []float64 // seconds; the last is +Inf
	Cumulative []uint64
	Sum        float64 // seconds
	Count      uint64
}

func (h *durationHistogram) snapshot() HistogramSnapshot {
	s := HistogramSnapshot{Bounds: append(durationBounds[:len(durationBounds):len(durationBounds)], math.Inf(1))}
	var total uint64
	for i := range h.counts {
		total += h.counts[i].Load()
		s.Cumulative = append(s.Cumulative, total)
	}
	s.Count = total
	s.Sum = float64(h.sumNs.Load()) / 1e9
	return s
}

// Metrics is a snapshot of the balancer's counters for an exporter.
type Metrics struct {
	Backends []BackendMetrics
	// Local counts answers the balancer made without reaching a backend
	// (503 no backend, 429 and 400 from the admission hook), by status.
	Local    map[int]uint64
	Retries  uint64 // requests sent again to another backend
	Upgrades int64  // upgraded connections open now
	Duration HistogramSnapshot
}

// BackendMetrics is one backend's share of Metrics.
type BackendMetrics struct {
	Name         string // the URL when none is configured
	URL          string
	Healthy      bool
	InFlight     int64
	Failures     uint64         // failed attempts: refused, reset, timed out, broken off
	ByStatus     map[int]uint64 // answers by status code; 499 when the client went away
	ProbesPassed uint64
	ProbesFailed uint64
}

// Metrics returns the counters of every backend in the configuration in
// use and the balancer's own.
func (b *Balancer) Metrics() Metrics {
	p := b.pool.Load()
	m := Metrics{
		Local:    b.local.snapshot(),
		Retries:  b.retries.Load(),
		Upgrades: b.upgrades.Load(),
		Duration: b.durations.snapshot(),
	}
	for _, be := range p.backends {
		m.Backends = append(m.Backends, BackendMetrics{
			Name:         be.name,
			URL:          be.URL.String(),
			Healthy:      be.healthy.Load(),
			InFlight:     be.inFlight.Load(),
			Failures:     be.failures.Load(),
			ByStatus:     be.byStatus.snapshot(),
			ProbesPassed: be.probesPassed.Load(),
			ProbesFailed: be.probesFailed.Load(),
		})
	}
	return m
}
