package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"stdlb/lb"
	"stdlb/lb/h1"
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
	// reloadMu serialises reloads, which come from SIGHUP (serve's
	// goroutine) and POST /reload (the admin server's).
	reloadMu sync.Mutex

	access *bufferedWriter
	page   *template.Template
	bal    *lb.Balancer
	limit  *rateLimit
	// certs is the certificate the listener presents, nil without TLS;
	// reload swaps it.
	certs *certStore

	conns     connCounts   // the proxy listener's client connections
	reloads   reloadCounts // reloads by result, for /metrics
	limitRate limiterRates // the limiter's last minute, for /status

	ln, adminLn net.Listener
	srv         frontServer
	admin       *http.Server
	// redirect answers plain HTTP on tls.redirect_http with a 308 to
	// https; nil when off.
	redirect   *http.Server
	redirectLn net.Listener

	// drainEvery is how often the drain logs what it is waiting for.
	drainEvery time.Duration

	// hardCtx is the base context of every request. Cancelling it after the
	// drain period closes what Shutdown does not wait for: upgraded
	// (WebSocket) connections and requests still running.
	hardCtx    context.Context
	hardCancel context.CancelFunc
}

// frontServer serves the proxy's listener: h1.Server.
type frontServer = *h1.Server

// newApp builds everything and opens the listeners, so that a port already
// in use is reported before the process claims to be up. cert is the
// certificate loadConfig read, nil without TLS. It starts no goroutine.
func newApp(cfg *Config, cert *certificate, path string, over Overrides, logger *slog.Logger, access *bufferedWriter) (*app, error) {
	a := &app{path: path, over: over, log: logger, access: access, page: newPageTemplate(), initial: cfg,
		drainEvery: 3 * time.Second}
	a.cfg.Store(cfg)
	a.reloads.lastOK.Store(time.Now().Unix())
	for _, w := range configWarnings(cfg) {
		logger.Warn(w)
	}
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
	var listenerTLS *tls.Config
	if cfg.TLS.Enabled() {
		if cert == nil {
			return nil, errors.New("tls: no certificate loaded") // loadConfig loads it
		}
		a.certs = &certStore{}
		a.certs.set(cert)
		listenerTLS = serverTLS(cfg.TLS, a.certs)
		// net/http's Serve sets up HTTP/2 only when its own TLSConfig offers
		// h2; the listener's config, built alike, does the handshakes.
		front.TLSConfig = serverTLS(cfg.TLS, a.certs)
	}
	a.srv = h1.NewServer(front)
	closeListeners := func() {
		for _, ln := range []net.Listener{a.ln, a.adminLn, a.redirectLn} {
			if ln != nil {
				ln.Close()
			}
		}
	}
	if a.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	a.ln = a.conns.count(a.ln) // beneath the TLS listener: h1.Server tells *tls.Conn apart
	if listenerTLS != nil {
		a.ln = tls.NewListener(a.ln, listenerTLS)
	}
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
			closeListeners()
			return nil, fmt.Errorf("admin: listen on %s: %w", cfg.Admin.Listen, err)
		}
	}
	if cfg.TLS.RedirectHTTP != "" {
		a.redirect = newRedirectServer(a.ln.Addr(), cfg, logger)
		if a.redirectLn, err = net.Listen("tcp", cfg.TLS.RedirectHTTP); err != nil {
			closeListeners()
			return nil, fmt.Errorf("tls.redirect_http: listen on %s: %w", cfg.TLS.RedirectHTTP, err)
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

// serve runs until ctx ends or a value comes from term, re-reading the
// configuration on every value from hup, then drains (see drain): a second
// value from term during the drain ends it at once. It returns nil after a
// clean stop, errInterrupted after a cut-short one.
func (a *app) serve(ctx context.Context, hup, term <-chan os.Signal) error {
	cfg := a.cfg.Load()
	bgCtx, bgCancel := context.WithCancel(context.Background())
	defer bgCancel()
	var bg sync.WaitGroup
	bg.Go(func() { a.bal.RunHealthChecks(bgCtx) })
	bg.Go(func() { a.bal.RunSampler(bgCtx) })
	bg.Go(func() { a.limitRate.run(bgCtx, a.limit.limiter) })
	bg.Go(func() { a.access.Run(bgCtx, 100*time.Millisecond) })
	a.limit.start(bgCtx, &bg)

	errc := make(chan error, 3)
	go func() { errc <- a.srv.Serve(a.ln) }()
	if a.admin != nil {
		go func() { errc <- a.admin.Serve(a.adminLn) }()
	}
	if a.redirect != nil {
		go func() { errc <- a.redirect.Serve(a.redirectLn) }()
	}
	attrs := []any{"addr", a.Addr(), "admin", a.AdminAddr(), "config", a.path,
		"backends", len(cfg.Backends), "algorithm", cfg.Algorithm, "rate_limit", cfg.RateLimit.Enabled,
		"clients_file", a.limit.store.Path(), "clients_with_own_limits", a.limit.limiter.Stats().Overrides, "version", version()}
	if a.certs != nil {
		attrs = append(attrs, "tls", "min "+cfg.TLS.MinVersion+", h2 and http/1.1", "certificate", a.certs.cur.Load().describe())
	}
	if a.redirectLn != nil {
		attrs = append(attrs, "redirect_http", a.redirectLn.Addr().String())
	}
	a.log.Info("listening", attrs...)

	var serveErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-term:
			break loop
		case <-hup:
			a.reload("SIGHUP")
		case err := <-errc:
			serveErr = err
			break loop
		}
	}

	err := a.drain(term)
	if errors.Is(err, errInterrupted) {
		bgCancel() // the background goroutines end on their own; no waiting
		a.access.Flush()
		return err
	}
	bgCancel()
	bg.Wait()
	a.access.Flush() // lines of requests that ended after the flusher stopped
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
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
		out.Backends = append(out.Backends, lb.BackendConfig{URL: u, Weight: b.Weight, Name: b.Name})
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
