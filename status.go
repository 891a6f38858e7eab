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
	Enabled    bool   `json:"enabled"`
	Clients    int    `json:"clients"`
	MaxClients int    `json:"max_clients"`
	Overrides  int    `json:"overrides"`
	Admitted   uint64 `json:"admitted"`
	Rejected   uint64 `json:"rejected"`
	Evictions  uint64 `json:"evictions"`
	Overflowed uint64 `json:"overflowed"`
}

func (a *app) status() statusReport {
	cfg := a.cfg.Load()
	st := a.limit.limiter.Stats()
	started := a.bal.Started()
	return statusReport{
		Version:       version,
		Started:       started.UTC().Truncate(time.Second),
		UptimeSeconds: int64(time.Since(started).Seconds()),
		Algorithm:     cfg.Algorithm,
		Backends:      a.bal.Status(),
		Limiter: limiterStatus{
			Enabled: cfg.RateLimit.Enabled, Clients: st.Clients, MaxClients: st.MaxClients, Overrides: st.Overrides,
			Admitted: st.Admitted, Rejected: st.Rejected, Evictions: st.Evictions, Overflowed: st.Overflowed,
		},
		Traffic: a.bal.Traffic(),
	}
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
