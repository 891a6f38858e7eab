package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"stdlb/bucket"
	"stdlb/lb"
)

// rateLimit wires the bucket package into the balancer: one Limiter and
// one Store for the process's life, and a Gate rebuilt on reload (a Gate's
// settings are fixed once it is in use) and swapped in atomically. The
// limiter and the store exist even when rate limiting is off, so a reload
// can turn it on and the admin API can edit the clients file either way.
type rateLimit struct {
	log     *slog.Logger
	limiter *bucket.Limiter
	store   *bucket.Store
	// fixed is the part of the configuration only a restart changes.
	fixed bucket.Config

	// gate is nil while rate limiting is off.
	gate atomic.Pointer[bucket.Gate]
	// trusted is read by the gate's ClientIP on every request; reload
	// swaps it.
	trusted atomic.Pointer[lb.TrustedProxies]
	// logKeys: compute a loggable tag of API keys only when the access log
	// will print it.
	logKeys atomic.Bool
}

// clientsPath resolves the clients file against the config file's
// directory, so the balancer finds it whatever directory it is started in.
func clientsPath(cfg *Config, configPath string) string {
	if filepath.IsAbs(cfg.RateLimit.ClientsFile) {
		return cfg.RateLimit.ClientsFile
	}
	return filepath.Join(filepath.Dir(configPath), cfg.RateLimit.ClientsFile)
}

// describeClientsFile says what the clients file holds, for -check-config
// (loadConfig has reported any problem in it).
func describeClientsFile(cfg *Config, configPath string) string {
	path := clientsPath(cfg, configPath)
	if _, err := os.Stat(path); err != nil {
		return "clients file " + path + " absent: no client has limits of its own yet"
	}
	n, err := bucket.CheckClientsFile(path, bucket.New(limiterConfig(cfg, nil)))
	if err != nil {
		return "clients file " + path + " unreadable"
	}
	return fmt.Sprintf("clients file %s: %d with limits of their own", path, n)
}

// limiterConfig is the bucket.Config of cfg.
func limiterConfig(cfg *Config, logger *slog.Logger) bucket.Config {
	rl := cfg.RateLimit
	return bucket.Config{
		Default:        bucket.Limits{Capacity: rl.Capacity, RefillRate: rl.RefillRate},
		RefillInterval: rl.RefillInterval.D(),
		MaxClients:     rl.MaxClients,
		IdleTimeout:    rl.IdleTimeout.D(),
		IPv6Prefix:     rl.IPv6Prefix,
		Instances:      rl.Instances,
		Logger:         logger,
	}
}

func newRateLimit(cfg *Config, configPath string, logger *slog.Logger) (*rateLimit, error) {
	r := &rateLimit{log: logger}
	r.fixed = limiterConfig(cfg, logger)
	r.limiter = bucket.New(r.fixed)
	store, err := bucket.OpenStore(clientsPath(cfg, configPath), r.limiter)
	if err != nil {
		return nil, &ConfigError{Problems: fieldLines("rate_limit.clients_file", err)}
	}
	r.store = store
	r.configure(cfg)
	return r, nil
}

// configure applies the reloadable settings of cfg.
func (r *rateLimit) configure(cfg *Config) {
	rl := cfg.RateLimit
	t := trustedProxies(cfg)
	r.trusted.Store(&t)
	r.logKeys.Store(cfg.AccessLog)
	r.limiter.SetDefault(bucket.Limits{Capacity: rl.Capacity, RefillRate: rl.RefillRate})
	if !rl.Enabled {
		r.gate.Store(nil)
		return
	}
	r.gate.Store(&bucket.Gate{
		Limiter:          r.limiter,
		KeyHeader:        rl.KeyHeader,
		MaxKeyLen:        rl.MaxKeyLength,
		ClientIP:         r.clientIP,
		HeadersOnAdmit:   rl.HeadersOnAdmit,
		UnlistedKeysByIP: rl.UnlistedKeysByIP,
	})
}

func (r *rateLimit) clientIP(req *http.Request) netip.Addr {
	ip, _, _ := r.trusted.Load().ClientIP(req)
	return ip
}

// admit is the balancer's admission hook.
func (r *rateLimit) admit(w http.ResponseWriter, req *http.Request) lb.Admission {
	g := r.gate.Load()
	if g == nil {
		return lb.Admission{Allowed: true}
	}
	v := g.Check(w, req)
	a := lb.Admission{Allowed: v.Allowed, Limited: v.Status == http.StatusTooManyRequests, KeyKind: v.Kind.String()}
	if v.Kind == bucket.KeyAPI && r.logKeys.Load() {
		a.Key = bucket.KeyTag(v.Key)
	}
	return a
}

// start runs the limiter's ticker and the clients file's compaction until
// ctx ends.
func (r *rateLimit) start(ctx context.Context, wg *sync.WaitGroup) {
	wg.Go(func() { r.limiter.Run(ctx) })
	wg.Go(func() { r.store.Run(ctx) })
}

// reload applies cfg's rate-limit settings and re-reads the clients file.
// A bad clients file is an error and changes nothing.
func (r *rateLimit) reload(cfg *Config, configPath string) error {
	if p := clientsPath(cfg, configPath); p != r.store.Path() {
		return &ConfigError{Problems: []string{fmt.Sprintf(
			"rate_limit.clients_file: moving it (%s to %s) needs a restart", r.store.Path(), p)}}
	}
	if err := r.store.Reload(); err != nil {
		return &ConfigError{Problems: fieldLines("rate_limit.clients_file", err)}
	}
	r.configure(cfg)
	return nil
}

// restartOnly names rate-limit settings that differ from those the limiter
// was built with but need a restart.
func (r *rateLimit) restartOnly(cfg *Config) []string {
	rl := cfg.RateLimit
	var out []string
	if rl.RefillInterval.D() != r.fixed.RefillInterval {
		out = append(out, "rate_limit.refill_interval")
	}
	if rl.MaxClients != r.fixed.MaxClients {
		out = append(out, "rate_limit.max_clients")
	}
	if rl.IdleTimeout.D() != r.fixed.IdleTimeout {
		out = append(out, "rate_limit.idle_timeout")
	}
	if rl.Instances != r.fixed.Instances {
		out = append(out, "rate_limit.instances")
	}
	if rl.IPv6Prefix != r.fixed.IPv6Prefix {
		out = append(out, "rate_limit.ipv6_prefix")
	}
	return out
}
