package main

import (
	"encoding/json"
	"net/http"
	"time"

	"stdlb/lb"
)

// statusReport is the JSON of GET /status.
type statusReport struct {
	Version       string             `json:"version"`
	Now           time.Time          `json:"now"` // the page measures "down 2m13s" from it, not the browser's clock
	Started       time.Time          `json:"started"`
	UptimeSeconds int64              `json:"uptime_seconds"`
	Algorithm     string             `json:"algorithm"`
	Backends      []lb.BackendStatus `json:"backends"`
	Limiter       limiterStatus      `json:"limiter"`
	// Traffic is the balancer-wide rates over the last minute; History,
	// with ?history=1, ten minutes of them and of each backend's.
	Traffic lb.Traffic  `json:"traffic"`
	History *lb.History `json:"history,omitempty"`
}

type limiterStatus struct {
	Enabled    bool `json:"enabled"`
	Clients    int  `json:"clients"`
	MaxClients int  `json:"max_clients"`
	Overrides  int  `json:"overrides"`
	// Listed is the clients of the clients file: they have buckets of their
	// own outside max_clients, so a full table never judges them by the
	// default limits.
	Listed     int    `json:"listed_outside_max_clients"`
	Admitted   uint64 `json:"admitted"`
	Rejected   uint64 `json:"rejected"`
	Evictions  uint64 `json:"evictions"`
	Overflowed uint64 `json:"overflowed"`
	// Decisions per second over the last minute; window 0: none yet.
	WindowSeconds     float64 `json:"window_seconds"`
	AdmittedPerSecond float64 `json:"admitted_per_second"`
	RejectedPerSecond float64 `json:"rejected_per_second"`
}

func (a *app) status() statusReport {
	cfg := a.cfg.Load()
	st := a.limit.limiter.Stats()
	started := a.bal.Started()
	now := time.Now()
	window, admitted, rejected := a.limitRate.rates(decisions{at: now, admitted: st.Admitted, rejected: st.Rejected})
	return statusReport{
		Version:       version(),
		Now:           now.UTC().Truncate(time.Millisecond),
		Started:       started.UTC().Truncate(time.Second),
		UptimeSeconds: int64(time.Since(started).Seconds()),
		Algorithm:     cfg.Algorithm,
		Backends:      a.bal.Status(),
		Limiter: limiterStatus{
			Enabled: cfg.RateLimit.Enabled, Clients: st.Clients, MaxClients: st.MaxClients, Overrides: st.Overrides, Listed: st.Overrides,
			Admitted: st.Admitted, Rejected: st.Rejected, Evictions: st.Evictions, Overflowed: st.Overflowed,
			WindowSeconds: window, AdmittedPerSecond: admitted, RejectedPerSecond: rejected,
		},
		Traffic: a.bal.Traffic(),
	}
}

// InFlight and Failures are the sums over the backends, for the page's
// totals row.
func (s statusReport) InFlight() (n int64) {
	for _, b := range s.Backends {
		n += b.InFlight
	}
	return n
}

func (s statusReport) Failures() (n uint64) {
	for _, b := range s.Backends {
		n += b.Failures
	}
	return n
}

func (a *app) serveStatus(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	report := a.status()
	if r.URL.Query().Get("history") == "1" {
		h := a.bal.History()
		report.History = &h
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(report)
}
