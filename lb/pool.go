package lb

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"time"

	"stdlb/lb/h1"
)

// Config is the balancer's configuration in plain Go values; the JSON file
// and its defaults live in package main. Zero durations and thresholds take
// the defaults documented on each field.
type Config struct {
	Backends  []BackendConfig
	Algorithm string // AlgorithmRoundRobin when empty
	// Retries is how many other backends a request may be retried on when
	// that is safe (see Balancer).
	Retries     int
	HealthCheck HealthCheck
	// DialTimeout bounds connecting to a backend; default 2s.
	DialTimeout time.Duration
	// ResponseTimeout bounds the wait for a backend's response headers; past
	// it the client gets 504. Default 30s. Bodies may stream for longer.
	ResponseTimeout time.Duration
	// ReadBodyTimeout bounds each wait for more of a request body, so a
	// client that stops sending mid-body cannot hold a connection and a
	// backend connection open; default 30s. (http.Server.ReadTimeout would
	// bound the whole request, and cancel long streaming answers with it.)
	ReadBodyTimeout time.Duration
	// WriteTimeout bounds each wait for the client to take more of the
	// answer, like nginx's send_timeout: a client that stops reading cannot
	// hold its connection, a backend connection and an in-flight slot;
	// default 60s. It bounds the wait between writes, not the whole answer,
	// so long streams go on.
	WriteTimeout time.Duration
	// AccessLog turns on one log line per request.
	AccessLog bool
	// AccessLogOmitQuery leaves the query string out of access-log lines,
	// for privacy: it may carry tokens or personal data.
	AccessLogOmitQuery bool
	// TrustedProxies are the peers whose X-Forwarded-* headers are believed.
	TrustedProxies TrustedProxies
}

// BackendConfig is one backend in Config.
type BackendConfig struct {
	URL    *url.URL // scheme and host; no path
	Weight int      // share for weighted policies; below 1 counts as 1
	// Name is what logs, status and metrics call the backend; empty means
	// the URL. Names must differ.
	Name string
}

// HealthCheck configures active health checks.
type HealthCheck struct {
	Path               string        // default "/healthz"
	Interval           time.Duration // between rounds; default 2s
	Timeout            time.Duration // per probe; default 1s
	HealthyThreshold   int           // consecutive passes to come back; default 2
	UnhealthyThreshold int           // consecutive failures to go down; default 3
}

func (c *Config) setDefaults() {
	if c.Algorithm == "" {
		c.Algorithm = AlgorithmRoundRobin
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 2 * time.Second
	}
	if c.ResponseTimeout <= 0 {
		c.ResponseTimeout = 30 * time.Second
	}
	if c.ReadBodyTimeout <= 0 {
		c.ReadBodyTimeout = 30 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 60 * time.Second
	}
	h := &c.HealthCheck
	if h.Path == "" {
		h.Path = "/healthz"
	}
	if h.Interval <= 0 {
		h.Interval = 2 * time.Second
	}
	if h.Timeout <= 0 {
		h.Timeout = time.Second
	}
	if h.HealthyThreshold <= 0 {
		h.HealthyThreshold = 2
	}
	if h.UnhealthyThreshold <= 0 {
		h.UnhealthyThreshold = 3
	}
}

// pool is one immutable generation of the configuration: the backends in
// use, the policy over them and the settings that go with them. Reload
// builds a new pool and swaps it in atomically; a request keeps the pool it
// started with to the end.
type pool struct {
	cfg      Config
	backends []*Backend
	weights  []int
	policy   Policy
	timeouts h1.Timeouts // for every request to the backends
}

// newPool builds the pool for cfg, keeping the Backends (health, counters
// and idle connections) of old that it still lists.
func newPool(cfg Config, old *pool) (*pool, error) {
	cfg.setDefaults()
	p := &pool{cfg: cfg}
	kept := map[string]*Backend{} // by URL
	if old != nil {
		for _, b := range old.backends {
			kept[b.URL.String()] = b
		}
	}
	seen := map[string]bool{} // URLs and names
	var errs []error
	for i, bc := range cfg.Backends {
		if bc.URL == nil || bc.URL.Host == "" || (bc.URL.Scheme != "http" && bc.URL.Scheme != "https") {
			errs = append(errs, fmt.Errorf("lb: backends[%d]: want an http:// or https:// URL with a host", i))
			continue
		}
		name := bc.URL.String()
		if seen[name] {
			errs = append(errs, fmt.Errorf("lb: backends[%d]: %s is listed twice", i, name))
			continue
		}
		seen[name] = true
		if bc.Name != "" && bc.Name != name {
			if seen[bc.Name] {
				errs = append(errs, fmt.Errorf("lb: backends[%d]: the name %q is taken", i, bc.Name))
				continue
			}
			seen[bc.Name] = true
			name = bc.Name
		}
		b := kept[bc.URL.String()]
		if b == nil || b.name != name {
			b = NewBackend(bc.URL)
			b.name = name
		}
		p.backends = append(p.backends, b)
		p.weights = append(p.weights, max(bc.Weight, 1))
	}
	policy, err := NewPolicy(cfg.Algorithm, p.backends, p.weights)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	p.policy = policy
	// backend_response bounds the wait for an answer's head and, as nginx's
	// proxy_read_timeout does, each silence in the middle of its body.
	p.timeouts = h1.Timeouts{Dial: cfg.DialTimeout, Response: cfg.ResponseTimeout, ExpectContinue: time.Second, BodyIdle: cfg.ResponseTimeout}
	return p, nil
}

// TrustedProxies is a set of networks whose X-Forwarded-* headers are
// believed. The zero value trusts nobody.
type TrustedProxies []netip.Prefix

// Contains reports whether a is inside one of the trusted networks.
func (t TrustedProxies) Contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
