package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"stdlb/lb"
)

// app is one running balancer: the listeners, the servers and the
// long-running goroutines, owned by serve.
type app struct {
	path string
	over Overrides
	log  *slog.Logger

	// cfg is the configuration in use; reload swaps it.
	cfg atomic.Pointer[Config]
	// initial is the configuration at start: what restart-only settings
	// keep meaning whatever reloads have read since.
	initial *Config

	access *bufferedWriter
	page   *template.Template
	bal    *lb.Balancer
	limit  *rateLimit

	conns     connCounts   // the proxy listener's client connections
	reloads   reloadCounts // reloads by result, for /metrics
	limitRate limiterRates // the limiter's last minute, for /status

	ln, adminLn net.Listener
	srv         frontServer
	admin       *http.Server

	// hardCtx is the base context of every request. Cancelling it after the
	// drain period closes what Shutdown does not wait for: upgraded
	// (WebSocket) connections and requests still running.
	hardCtx    context.Context
	hardCancel context.CancelFunc
}

// frontServer serves the proxy's listener: lb.Server, or net/http's server
// alone when runtime.fast_http1 is off.
type frontServer interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// newApp builds everything and opens the listeners, so that a port already
// in use is reported before the process claims to be up. It starts no
// goroutine.
func newApp(cfg *Config, path string, over Overrides, logger *slog.Logger, access *bufferedWriter) (*app, error) {
	a := &app{path: path, over: over, log: logger, access: access, page: newPageTemplate(), initial: cfg}
	a.cfg.Store(cfg)
	a.reloads.lastOK.Store(time.Now().Unix())
	applyRuntime(cfg.Runtime)

	limit, err := newRateLimit(cfg, path, logger)
	if err != nil {
		return nil, err
	}
	a.limit = limit
	a.bal, err = lb.New(lbConfig(cfg), lb.Options{Logger: logger, AccessWriter: access,
		AccessJSON: cfg.LogFormat == "json", Admit: limit.admit})
	if err != nil {
		return nil, &ConfigError{Problems: []string{err.Error()}}
	}

	a.hardCtx, a.hardCancel = context.WithCancel(context.Background())
	front := &http.Server{
		Handler:           a.bal,
		ReadHeaderTimeout: cfg.Timeouts.ReadHeader.D(),
		IdleTimeout:       cfg.Timeouts.Idle.D(),
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return a.hardCtx },
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	a.srv = front
	if cfg.Runtime.FastHTTP1 {
		a.srv = lb.NewServer(front)
	}
	if a.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	a.ln = a.conns.count(a.ln) // beneath any TLS listener: lb.Server tells *tls.Conn apart
	if cfg.Admin.Listen != "" {
		a.admin = &http.Server{
			Handler:           newAdmin(a),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second, // admin requests are small and nothing streams
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       time.Minute,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		}
		if a.adminLn, err = net.Listen("tcp", cfg.Admin.Listen); err != nil {
			a.ln.Close()
			return nil, fmt.Errorf("admin: listen on %s: %w", cfg.Admin.Listen, err)
		}
	}
	return a, nil
}

// Addr returns the address the proxy listens on.
func (a *app) Addr() string { return a.ln.Addr().String() }

// AdminAddr returns the admin API's address, or "" when it is off.
func (a *app) AdminAddr() string {
	if a.adminLn == nil {
		return ""
	}
	return a.adminLn.Addr().String()
}

// serve runs until ctx ends, re-reading the configuration on every value
// from hup, then drains: it stops accepting, waits up to timeouts.shutdown
// for in-flight requests and upgraded connections, closes whatever is left
// and stops the background goroutines. It returns nil after a clean stop.
func (a *app) serve(ctx context.Context, hup <-chan os.Signal) error {
	cfg := a.cfg.Load()
	bgCtx, bgCancel := context.WithCancel(context.Background())
	var bg sync.WaitGroup
	bg.Go(func() { a.bal.RunHealthChecks(bgCtx) })
	bg.Go(func() { a.bal.RunSampler(bgCtx) })
	bg.Go(func() { a.limitRate.run(bgCtx, a.limit.limiter) })
	bg.Go(func() { a.access.Run(bgCtx, 100*time.Millisecond) })
	a.limit.start(bgCtx, &bg)

	errc := make(chan error, 2)
	go func() { errc <- a.srv.Serve(a.ln) }()
	if a.admin != nil {
		go func() { errc <- a.admin.Serve(a.adminLn) }()
	}
	a.log.Info("listening", "addr", a.Addr(), "admin", a.AdminAddr(), "config", a.path,
		"backends", len(cfg.Backends), "algorithm", cfg.Algorithm, "rate_limit", cfg.RateLimit.Enabled,
		"clients_file", a.limit.store.Path(), "clients_with_own_limits", a.limit.limiter.Stats().Overrides, "version", version)

	var serveErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-hup:
			a.reload()
		case err := <-errc:
			serveErr = err
			break loop
		}
	}

	cfg = a.cfg.Load()
	grace := cfg.Timeouts.Shutdown.D()
	a.log.Info("shutting down: no new connections; waiting for in-flight requests", "grace", grace)
	drainCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	start := time.Now()
	err := a.srv.Shutdown(drainCtx)
	if err == nil {
		err = a.bal.WaitUpgrades(drainCtx)
	}
	if err != nil {
		a.log.Warn("drain period over: closing remaining connections", "after", time.Since(start).Round(time.Millisecond),
			"upgraded", a.bal.Upgrades())
	}
	a.hardCancel()
	a.srv.Close()
	if a.admin != nil {
		a.admin.Close()
	}
	bgCancel()
	bg.Wait()
	a.access.Flush() // lines of requests that ended after the flusher stopped
	a.log.Info("stopped", "drained_in", time.Since(start).Round(time.Millisecond))
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}

// reload re-reads the configuration file. A bad file changes nothing: every
// problem is logged and the running configuration stays.
func (a *app) reload() {
	old := a.cfg.Load()
	cfg, err := LoadConfig(a.path, a.over)
	if err == nil {
		err = checkStartOnly(cfg)
	}
	if err != nil {
		a.logRejected(err)
		return
	}
	if err := a.limit.reload(cfg, a.path); err != nil {
		a.logRejected(err)
		return
	}
	if err := a.bal.Apply(lbConfig(cfg)); err != nil {
		a.logRejected(err)
		return
	}
	for _, s := range append(restartOnly(a.initial, cfg), a.limit.restartOnly(cfg)...) {
		a.log.Warn("reload: " + s + " changes only on restart; keeping the value the balancer started with")
	}
	applyRuntime(cfg.Runtime)
	a.cfg.Store(cfg)
	a.reloads.succeeded(time.Now())
	a.log.Info("configuration reloaded", "config", a.path, "changed", configDiff(old, cfg),
		"clients_with_own_limits", a.limit.limiter.Stats().Overrides)
}

func (a *app) logRejected(err error) {
	a.reloads.failed.Add(1)
	var ce *ConfigError
	if errors.As(err, &ce) {
		for _, p := range ce.Problems {
			a.log.Error("reload rejected: " + p)
		}
	} else {
		a.log.Error("reload rejected: " + err.Error())
	}
	a.log.Error("reload rejected: keeping the running configuration", "config", a.path)
}

// restartOnly names the settings that differ between the configuration
// the balancer started with and cfg but are fixed once listening.
func restartOnly(initial, cfg *Config) []string {
	var out []string
	for _, c := range []struct {
		name    string
		changed bool
	}{
		{"listen", initial.Listen != cfg.Listen},
		{"admin", initial.Admin != cfg.Admin},
		{"timeouts.read_header", initial.Timeouts.ReadHeader != cfg.Timeouts.ReadHeader},
		{"timeouts.idle", initial.Timeouts.Idle != cfg.Timeouts.Idle},
		{"max_header_bytes", initial.MaxHeaderBytes != cfg.MaxHeaderBytes},
		{"log_format", initial.LogFormat != cfg.LogFormat},
		{"runtime.fast_http1", initial.Runtime.FastHTTP1 != cfg.Runtime.FastHTTP1},
	} {
		if c.changed {
			out = append(out, c.name)
		}
	}
	return out
}

// configDiff lists the field paths whose values differ between old and
// cfg ("retries", "backends[1].weight"), for the reload log line.
func configDiff(old, cfg *Config) []string {
	flat := func(c *Config) map[string]string {
		m := map[string]string{}
		data, _ := json.Marshal(c)
		var v any
		json.Unmarshal(data, &v)
		flatten("", v, m)
		return m
	}
	a, b := flat(old), flat(cfg)
	var out []string
	for k, v := range b {
		if a[k] != v {
			out = append(out, k)
		}
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func flatten(path string, v any, out map[string]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			flatten(joinPath(path, k), e, out)
		}
	case []any:
		for i, e := range v {
			flatten(fmt.Sprintf("%s[%d]", path, i), e, out)
		}
	default:
		out[path] = fmt.Sprint(v)
	}
}

// checkStartOnly checks what depends on the environment rather than the
// file: an admin API reachable from other machines must have a token.
func checkStartOnly(cfg *Config) error {
	if cfg.Admin.Listen == "" || os.Getenv(cfg.Admin.TokenEnv) != "" {
		return nil
	}
	if isLoopback(cfg.Admin.Listen) {
		return nil
	}
	return &ConfigError{Problems: []string{fmt.Sprintf(
		"admin.listen: %s is reachable from other machines, so the admin API needs a token: set %s (admin.token_env) or listen on 127.0.0.1",
		cfg.Admin.Listen, cfg.Admin.TokenEnv)}}
}

// lbConfig translates the file's schema into the balancer's plain values.
// cfg has been validated, so parsing cannot fail here.
func lbConfig(cfg *Config) lb.Config {
	out := lb.Config{
		Algorithm: cfg.Algorithm,
		Retries:   cfg.Retries,
		HealthCheck: lb.HealthCheck{
			Path:               cfg.HealthCheck.Path,
			Interval:           cfg.HealthCheck.Interval.D(),
			Timeout:            cfg.HealthCheck.Timeout.D(),
			HealthyThreshold:   cfg.HealthCheck.HealthyThreshold,
			UnhealthyThreshold: cfg.HealthCheck.UnhealthyThreshold,
		},
		DialTimeout:     cfg.Timeouts.BackendDial.D(),
		ResponseTimeout: cfg.Timeouts.BackendResponse.D(),
		ReadBodyTimeout: cfg.Timeouts.ReadBody.D(),
		WriteTimeout:    cfg.Timeouts.Write.D(),
		AccessLog:       cfg.AccessLog,
		TrustedProxies:  trustedProxies(cfg),
	}
	out.AccessLogOmitQuery = !cfg.AccessLogQuery
	for _, b := range cfg.Backends {
		u, _ := url.Parse(b.URL)
		u.Path = ""
		out.Backends = append(out.Backends, lb.BackendConfig{URL: u, Weight: b.Weight})
	}
	return out
}

func trustedProxies(cfg *Config) lb.TrustedProxies {
	var t lb.TrustedProxies
	for _, s := range cfg.RateLimit.TrustedProxies {
		if p, err := parsePrefix(s); err == nil {
			t = append(t, p)
		}
	}
	return t
}

// applyRuntime sets the garbage collector's knobs from "runtime". The
// GOGC and GOMEMLIMIT environment variables, when set, win.
func applyRuntime(r RuntimeConfig) {
	if r.GOGC != 0 && os.Getenv("GOGC") == "" {
		debug.SetGCPercent(r.GOGC)
	}
	if r.MemoryLimit != "" && os.Getenv("GOMEMLIMIT") == "" {
		if n, err := parseBytes(r.MemoryLimit); err == nil {
			debug.SetMemoryLimit(n)
		}
	}
}
