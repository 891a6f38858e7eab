package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// reloadOutcome is what a successful reload changed: the reload's log line
// and the answer to POST /reload.
type reloadOutcome struct {
	Config string `json:"config"`
	// Changed lists the field paths whose values differ from the
	// configuration in use before ("retries", "backends[1].weight").
	Changed []string `json:"changed"`
	// NeedsRestart lists changed settings that only a restart applies; the
	// balancer keeps the values it started with.
	NeedsRestart []string `json:"needs_restart"`
	// Backends names the backends in use now.
	Backends []string `json:"backends"`
	// ClientsWithOwnLimits counts the clients file's entries, re-read too.
	ClientsWithOwnLimits int `json:"clients_with_own_limits"`
	// Certificate describes the TLS certificate in use, re-read too; empty
	// without TLS.
	Certificate string `json:"certificate,omitempty"`
	// Warnings lists what the configuration allows but is probably a
	// mistake (see configWarnings); also logged.
	Warnings []string `json:"warnings,omitempty"`
}

// reload re-reads the configuration file, the clients file and the TLS
// certificate, and applies them. source says who asked ("SIGHUP", "POST
// /reload from ...") for the log. A bad file changes nothing: the error
// lists every problem, they are logged, and the running configuration
// stays. Reloads are serialised, so SIGHUP and POST /reload may race.
func (a *app) reload(source string) (reloadOutcome, error) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	old := a.cfg.Load()
	cfg, cert, err := loadConfig(a.path, a.over, &a.limit.fixed)
	if err == nil {
		err = a.limit.reload(cfg, a.path)
	}
	if err == nil {
		err = a.bal.Apply(lbConfig(cfg))
	}
	if err != nil {
		a.logRejected(source, err)
		return reloadOutcome{}, err
	}
	out := reloadOutcome{
		Config:               a.path,
		Changed:              configDiff(old, cfg),
		NeedsRestart:         append(append([]string{}, restartOnly(a.initial, cfg)...), a.limit.restartOnly(cfg)...),
		ClientsWithOwnLimits: a.limit.limiter.Stats().Overrides,
		Warnings:             configWarnings(cfg),
	}
	for _, b := range a.bal.Status() {
		out.Backends = append(out.Backends, b.Name)
	}
	if cert != nil && a.certs != nil {
		a.certs.set(cert)
		out.Certificate = cert.describe()
	}
	for _, s := range out.NeedsRestart {
		a.log.Warn("reload: " + s + " changes only on restart; keeping the value the balancer started with")
	}
	for _, w := range out.Warnings {
		a.log.Warn("reload: " + w)
	}
	applyRuntime(cfg.Runtime)
	a.cfg.Store(cfg)
	a.reloads.succeeded(time.Now())
	attrs := []any{"by", source, "config", a.path, "changed", out.Changed,
		"clients_with_own_limits", out.ClientsWithOwnLimits}
	if out.Certificate != "" {
		attrs = append(attrs, "certificate", out.Certificate)
	}
	a.log.Info("configuration reloaded", attrs...)
	return out, nil
}

// problems returns err as the list of lines an operator reads: a
// ConfigError's problems (with the file), else err itself.
func problems(err error) []string {
	var ce *ConfigError
	if errors.As(err, &ce) {
		out := make([]string, len(ce.Problems))
		for i := range ce.Problems {
			out[i] = (&ConfigError{Source: ce.Source, Problems: ce.Problems[i : i+1]}).Error()
		}
		return out
	}
	return []string{err.Error()}
}

func (a *app) logRejected(source string, err error) {
	a.reloads.failed.Add(1)
	for _, p := range problems(err) {
		a.log.Error("reload rejected: "+p, "by", source)
	}
	a.log.Error("reload rejected: keeping the running configuration", "config", a.path, "by", source)
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
		{"tls", initial.TLS.Enabled() != cfg.TLS.Enabled()},
		{"tls.min_version", initial.TLS.MinVersion != cfg.TLS.MinVersion},
		{"tls.redirect_http", initial.TLS.RedirectHTTP != cfg.TLS.RedirectHTTP},
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
	out := []string{}
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
