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
}

func (a *app) status() statusReport {
	cfg := a.cfg.Load()
	st := a.limit.limiter.Stats()
	started := a.bal.Started()
	return statusReport{
		Version:       version(),
		Started:       started.UTC().Truncate(time.Second),
		UptimeSeconds: int64(time.Since(started).Seconds()),
		Algorithm:     cfg.Algorithm,
		Backends:      a.bal.Status(),
		Limiter: limiterStatus{
			Enabled: cfg.RateLimit.Enabled, Clients: st.Clients, MaxClients: st.MaxClients, Overrides: st.Overrides, Listed: st.Overrides,
			Admitted: st.Admitted, Rejected: st.Rejected, Evictions: st.Evictions, Overflowed: st.Overflowed,
		},
	}
}

func (a *app) serveStatus(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(a.status())
}
