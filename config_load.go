package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"

	"stdlb/bucket"
)

// loadConfig reads the configuration at path ("" for none: the defaults
// and the overrides alone), then checks what it depends on beyond its own
// text: the environment (the admin token rule), the clients file, and the
// TLS certificate and key. Every problem found, in the file and beyond,
// comes back in one *ConfigError, so that one run shows an operator the
// whole list. It returns the certificate it loaded, nil without TLS.
//
// running is the limiter a reload would apply the file to, nil at start.
// Its refill interval, instances and IPv6 prefix change only on restart,
// so a reload's limits are checked against them as well as against the
// file's own: limits that fit only the file's interval would lose refill
// until a restart.
func loadConfig(path string, over Overrides, running *bucket.Config) (*Config, *certificate, error) {
	var cfg *Config
	var err error
	if path == "" {
		cfg, err = ParseConfig([]byte("{}"), over)
	} else {
		cfg, err = LoadConfig(path, over)
	}
	var ce *ConfigError
	if err != nil && !errors.As(err, &ce) {
		return nil, nil, err
	}
	checked := cfg
	if ce != nil {
		checked = ce.decoded
	}
	if checked == nil {
		return nil, nil, err // not JSON, or no file: nothing more to read
	}
	more := startOnlyProblems(checked)
	if running != nil && !ce.reported("rate_limit.capacity") && !ce.reported("rate_limit.refill_rate") {
		more = append(more, runningLimitProblems(checked.RateLimit, *running)...)
	}
	if !ce.reported("rate_limit.clients_file") {
		more = append(more, clientsFileProblems(checked, path, running)...)
	}
	var cert *certificate
	if checked.TLS.Enabled() && !ce.reported("tls.") {
		var ps []string
		cert, ps = loadCertificate(checked.TLS, path)
		more = append(more, ps...)
	}
	if len(more) == 0 {
		return cfg, cert, err
	}
	if ce == nil {
		ce = &ConfigError{Source: path}
	}
	ce.Problems = append(ce.Problems, more...)
	return nil, nil, ce
}

// reported reports whether one of e's problems concerns a field whose path
// starts with prefix. A nil e has none.
func (e *ConfigError) reported(prefix string) bool {
	if e == nil {
		return false
	}
	for _, p := range e.Problems {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}

// startOnlyProblems checks what depends on the environment rather than the
// file: an admin API reachable from other machines must have a token, and
// a token must be one a request can present.
func startOnlyProblems(cfg *Config) []string {
	if cfg.Admin.Listen == "" {
		return nil
	}
	token := os.Getenv(cfg.Admin.TokenEnv)
	switch {
	case token == "" && !isLoopback(cfg.Admin.Listen):
		return []string{fmt.Sprintf(
			"admin.listen: %s is reachable from other machines, so the admin API needs a token: set %s (admin.token_env) or listen on 127.0.0.1",
			cfg.Admin.Listen, cfg.Admin.TokenEnv)}
	case strings.TrimSpace(token) != token:
		// credential trims what follows "Bearer ", as HTTP readers trim
		// a field value: such a token could never match (an env file
		// with CRLF lines leaves a "\r").
		return []string{fmt.Sprintf("admin.token_env: %s begins or ends with whitespace, which a Bearer token loses (the header's value is trimmed), "+
			"so /clients and /reload could never be used; remove it", cfg.Admin.TokenEnv)}
	case strings.ContainsFunc(token, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }):
		return []string{fmt.Sprintf("admin.token_env: %s holds a control character, which no HTTP header can carry; remove it", cfg.Admin.TokenEnv)}
	}
	return nil
}

// minTokenLen is the shortest admin token taken without a warning.
const minTokenLen = 16

// configWarnings lists what in cfg is allowed but probably a mistake, one
// line each with its field, for the log at start and on reload and for
// -check-config.
func configWarnings(cfg *Config) []string {
	var out []string
	if token := os.Getenv(cfg.Admin.TokenEnv); cfg.Admin.Listen != "" && token != "" && utf8.RuneCountInString(token) < minTokenLen {
		out = append(out, fmt.Sprintf("admin.token_env: %s is %s long; a token shorter than %d is easier to guess: "+
			"set a longer one (head -c 16 /dev/urandom | base64) and restart", cfg.Admin.TokenEnv, plural(utf8.RuneCountInString(token), "character"), minTokenLen))
	}
	for i, s := range cfg.RateLimit.TrustedProxies {
		if p, err := parsePrefix(s); err == nil && p.Bits() == 0 {
			out = append(out, fmt.Sprintf("rate_limit.trusted_proxies[%d]: %s trusts every peer: any client can name its own address "+
				"in X-Forwarded-For and escape its rate limit; list only your proxies' addresses", i, s))
		}
	}
	return out
}

// clientsFileProblems reads the clients file cfg names and returns one
// problem for each bad entry, each naming the file. On a reload (running
// not nil) the entries must fit the running limiter too. A file that may
// be absent must be in a directory that exists: the admin API writes it
// there.
func clientsFileProblems(cfg *Config, configPath string, running *bucket.Config) []string {
	if cfg.RateLimit.ClientsFile == "" {
		return nil
	}
	path := clientsPath(cfg, configPath)
	if dir := filepath.Dir(path); !isDir(dir) {
		return []string{fmt.Sprintf("rate_limit.clients_file: %s: the directory %s does not exist or is no directory, "+
			"so no admin change could be saved; create it or correct the path", path, dir)}
	}
	lc := limiterConfig(cfg, nil)
	prefix := "rate_limit.clients_file: clients file " + path + ": "
	var out []string
	seen := clientsProblems(path, lc)
	for _, p := range seen {
		out = append(out, prefix+p)
	}
	if running == nil {
		return out
	}
	if note := notYetRunning(cfg.RateLimit, *running); note != "" {
		lc.RefillInterval, lc.Instances, lc.IPv6Prefix = running.RefillInterval, running.Instances, running.IPv6Prefix
		for _, p := range clientsProblems(path, lc) {
			if !slices.Contains(seen, p) {
				out = append(out, prefix+"with "+note+": "+p)
			}
		}
	}
	return out
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// clientsProblems checks the clients file at path for a limiter of lc and
// returns its problems, one per bad entry, without the file's name.
func clientsProblems(path string, lc bucket.Config) []string {
	_, err := bucket.CheckClientsFile(path, bucket.New(lc))
	if err == nil {
		return nil
	}
	prefix := "clients file " + path + ": "
	var out []string
	for line := range strings.SplitSeq(err.Error(), "\n") {
		out = append(out, strings.TrimPrefix(line, prefix))
	}
	return out
}

// runningLimitProblems checks a reloaded configuration's default limits
// against the running limiter's refill interval and instances, which only
// a restart changes (validate has checked them against the file's).
func runningLimitProblems(rl RateLimitConfig, running bucket.Config) []string {
	running.IPv6Prefix = rl.IPv6Prefix // no bearing on limits
	note := notYetRunning(rl, running)
	lim := bucket.Limits{Capacity: rl.Capacity, RefillRate: rl.RefillRate}
	if note == "" || lim.Validate() != nil {
		return nil // the file's settings run, or validate has reported the limits
	}
	err := lim.ValidateFor(running.RefillInterval, running.Instances)
	if err == nil {
		return nil
	}
	field, msg, _ := strings.Cut(err.Error(), ": ")
	return []string{fmt.Sprintf("rate_limit.%s: with %s: %s", field, note, msg)}
}

// notYetRunning says which of the limiter settings that need a restart
// differ between rl and the running limiter, or "" when none does, e.g.
// "rate_limit.refill_interval 1s in use until a restart applies the
// file's 100ms".
func notYetRunning(rl RateLimitConfig, running bucket.Config) string {
	var diff []string
	if d := rl.RefillInterval.D(); d != running.RefillInterval {
		diff = append(diff, fmt.Sprintf("rate_limit.refill_interval %s in use until a restart applies the file's %s", running.RefillInterval, d))
	}
	if rl.Instances != running.Instances {
		diff = append(diff, fmt.Sprintf("rate_limit.instances %d in use until a restart applies the file's %d", running.Instances, rl.Instances))
	}
	if rl.IPv6Prefix != running.IPv6Prefix {
		diff = append(diff, fmt.Sprintf("rate_limit.ipv6_prefix %d in use until a restart applies the file's %d", running.IPv6Prefix, rl.IPv6Prefix))
	}
	return strings.Join(diff, " and ")
}

// fieldLines turns err, one problem a line, into problems of field.
func fieldLines(field string, err error) []string {
	var out []string
	for line := range strings.SplitSeq(err.Error(), "\n") {
		out = append(out, field+": "+line)
	}
	return out
}
