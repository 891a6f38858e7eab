package lb

import (
	"crypto/tls"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"stdlb/lb/h1"
)

// Backend is one upstream server: its address and its live state. The
// balancer creates Backends from Config and keeps a Backend (and so its
// health and counters) across reloads for as long as its URL and name stay
// in the configuration. All methods are safe for concurrent use.
type Backend struct {
	// URL is the backend's base URL: scheme and host, no path.
	URL *url.URL
	// name is what logs, status and metrics call the backend: its
	// configured name, else URL.String(). Fixed for the Backend's life: a
	// reload that renames a backend makes a new Backend.
	name string
	// addr is the host:port to dial.
	addr string
	// client holds keep-alive connections to the backend; they belong to
	// the backend so they survive reloads that keep it.
	client *h1.Client
	// logDiscard throttles the lines about connections dropped for bytes
	// the backend sent unasked.
	logDiscard throttle

	// The hot path reads and writes these without a lock: each is an
	// independent counter or flag.
	healthy  atomic.Bool  // false: policies skip this backend
	inFlight atomic.Int64 // requests being proxied to it right now
	requests atomic.Uint64
	failures atomic.Uint64
	byStatus statusCounts

	probesPassed atomic.Uint64
	probesFailed atomic.Uint64

	stats backendStats // latency, bytes, retries, samples (stats.go)

	// mu guards the health bookkeeping below, written by the active checker
	// and by passive marks; it spans several fields that change together.
	mu         sync.Mutex
	okStreak   int // consecutive passed probes
	failStreak int // consecutive failed probes
	lastCheck  time.Time
	lastErr    string
	changedAt  time.Time
}

// NewBackend returns a healthy backend for u, which must have a scheme and
// host and no path.
func NewBackend(u *url.URL) *Backend {
	b := &Backend{URL: u, name: u.String(), addr: u.Host}
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		b.addr = net.JoinHostPort(u.Hostname(), port)
	}
	b.client = h1.NewClient(b.addr)
	if u.Scheme == "https" {
		b.client.TLS = &tls.Config{ServerName: u.Hostname()}
	}
	b.healthy.Store(true)
	b.changedAt = time.Now()
	return b
}

// Name returns the backend's configured name, or its URL as text when it
// has none.
func (b *Backend) Name() string { return b.name }

// Healthy reports whether policies may send requests to b.
func (b *Backend) Healthy() bool { return b.healthy.Load() }

// InFlight returns the number of requests being proxied to b now.
func (b *Backend) InFlight() int64 { return b.inFlight.Load() }

// transition describes a change of a backend's health, for logging after
// the lock is released.
type transition struct {
	changed bool
	healthy bool
	streak  int // the consecutive results that caused the change
}

// recordProbe notes one active check result and flips the backend's state
// once the threshold of consecutive results in the new direction is reached.
// reason is err in words for the status page.
func (b *Backend) recordProbe(err error, reason string, now time.Time, healthyThreshold, unhealthyThreshold int) transition {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lastCheck = now
	if err == nil {
		b.lastErr = ""
		b.okStreak++
		b.failStreak = 0
		if !b.healthy.Load() && b.okStreak >= healthyThreshold {
			b.healthy.Store(true)
			b.changedAt = now
			b.stats.stateChanges.Add(1)
			return transition{changed: true, healthy: true, streak: b.okStreak}
		}
		return transition{healthy: b.healthy.Load()}
	}
	b.lastErr = reason
	b.failStreak++
	b.okStreak = 0
	if b.healthy.Load() && b.failStreak >= unhealthyThreshold {
		b.healthy.Store(false)
		b.changedAt = now
		b.stats.stateChanges.Add(1)
		return transition{changed: true, healthy: false, streak: b.failStreak}
	}
	return transition{healthy: b.healthy.Load()}
}

// markDown takes b out of rotation at once after a connection failure (a
// passive check). Only active checks bring it back. It reports whether b
// was healthy before.
func (b *Backend) markDown(reason string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lastErr = reason
	b.okStreak = 0
	if !b.healthy.Load() {
		return false
	}
	b.healthy.Store(false)
	b.changedAt = now
	b.stats.stateChanges.Add(1)
	return true
}

// BackendStatus is a snapshot of one backend for the admin API. Requests
// and Failures count proxied attempts (a failure: refused, reset, timed
// out, broken off); FailedChecksInARow counts active health checks.
type BackendStatus struct {
	Name               string    `json:"name"` // the URL when none is configured
	URL                string    `json:"url"`
	Healthy            bool      `json:"healthy"`
	Weight             int       `json:"weight"`
	InFlight           int64     `json:"in_flight"`
	Requests           uint64    `json:"requests"`
	Failures           uint64    `json:"failures"`
	FailedChecksInARow int       `json:"failed_checks_in_a_row"`
	LastCheck          time.Time `json:"last_check,omitzero"`
	LastError          string    `json:"last_error,omitempty"`
	StateSince         time.Time `json:"state_since"`
	BackendTraffic
}

// status returns b's snapshot; weight comes from the pool that holds b.
func (b *Backend) status(weight int) BackendStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	return BackendStatus{
		Name:               b.name,
		URL:                b.URL.String(),
		Healthy:            b.healthy.Load(),
		Weight:             weight,
		InFlight:           b.inFlight.Load(),
		Requests:           b.requests.Load(),
		Failures:           b.failures.Load(),
		FailedChecksInARow: b.failStreak,
		LastCheck:          b.lastCheck,
		LastError:          b.lastErr,
		StateSince:         b.changedAt,
	}
}

// closeIdle closes the idle connections of a backend leaving the
// configuration, and those its requests in flight give back later.
func (b *Backend) closeIdle() { b.client.Close() }
