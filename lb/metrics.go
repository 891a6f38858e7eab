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

// durationBounds are the upper bounds of the request duration histograms,
// in nanoseconds: the 1-2.5-5 steps of Prometheus's default buckets, from a
// quarter of a millisecond (a backend on the same host) to the default
// backend response timeout. The steps below 5 ms are what a proxy's
// answers mostly take, and where the status page's quantiles need them.
var durationBounds = [...]int64{
	250e3, 500e3, 1e6, 2.5e6, 5e6, 10e6, 25e6, 50e6, 100e6, 250e6, 500e6,
	1e9, 2.5e9, 5e9, 10e9, 30e9,
}

// nBuckets is the number of counters of a histogram: one per bound, and
// one for what lies above every bound.
const nBuckets = len(durationBounds) + 1

// durationHistogram counts request durations in durationBounds buckets,
// lock-free: one atomic add for the bucket, one for the sum.
type durationHistogram struct {
	counts [nBuckets]atomic.Uint64 // last: above every bound
	sumNs  atomic.Uint64
}

func (h *durationHistogram) observe(d time.Duration) {
	i := 0
	for i < len(durationBounds) && int64(d) > durationBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(uint64(max(d, 0)))
}

// load copies the per-bucket counts (not cumulative) into dst.
func (h *durationHistogram) load(dst *[nBuckets]uint64) {
	for i := range h.counts {
		dst[i] = h.counts[i].Load()
	}
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
	s := HistogramSnapshot{Bounds: make([]float64, 0, nBuckets), Cumulative: make([]uint64, 0, nBuckets)}
	for _, ns := range durationBounds {
		s.Bounds = append(s.Bounds, float64(ns)/1e9)
	}
	s.Bounds = append(s.Bounds, math.Inf(1))
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
	// Duration is the time from a request's arrival to the end of its
	// answer, for requests that went to a backend (502 and 504 included);
	// Refused is the same for the answers counted in Local.
	Duration HistogramSnapshot
	Refused  HistogramSnapshot
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
	// Duration is the time from sending a request to this backend (its
	// last attempt, when there were retries) to the end of the answer.
	Duration HistogramSnapshot
	// BytesSent counts request body bytes forwarded to the backend;
	// BytesReceived, response body bytes it sent that reached the client.
	BytesSent, BytesReceived uint64
	// Retries counts requests that failed here and were sent to another
	// backend.
	Retries uint64
	// StateChanges counts the backend's moves between up and down;
	// StateSince is when the last one happened, or when the backend joined
	// the configuration if it never changed.
	StateChanges uint64
	StateSince   time.Time
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
		Refused:  b.stats.refused.snapshot(),
	}
	for _, be := range p.backends {
		s := &be.stats
		m.Backends = append(m.Backends, BackendMetrics{
			Name:          be.name,
			URL:           be.URL.String(),
			Healthy:       be.healthy.Load(),
			InFlight:      be.inFlight.Load(),
			Failures:      be.failures.Load(),
			ByStatus:      be.byStatus.snapshot(),
			ProbesPassed:  be.probesPassed.Load(),
			ProbesFailed:  be.probesFailed.Load(),
			Duration:      s.latency.snapshot(),
			BytesSent:     s.bytesSent.Load(),
			BytesReceived: s.bytesReceived.Load(),
			Retries:       s.retries.Load(),
			StateChanges:  s.stateChanges.Load(),
			StateSince:    be.stateSince(),
		})
	}
	return m
}
