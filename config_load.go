package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"stdlb/bucket"
)

// loadConfig reads the configuration at path ("" for none: the defaults
// and the overrides alone), then checks what it depends on beyond its own
// text: the environment (the admin token rule), the clients file, and the
// TLS certificate and key. Every problem found, in the file and beyond,
// comes back in one *ConfigError, so that one run shows an operator the
// whole list. It returns the certificate it loaded, nil without TLS.
func loadConfig(path string, over Overrides) (*Config, *certificate, error) {
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
	if !ce.reported("rate_limit.clients_file") {
		more = append(more, clientsFileProblems(checked, path)...)
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
// file: an admin API reachable from other machines must have a token.
func startOnlyProblems(cfg *Config) []string {
	if cfg.Admin.Listen == "" || os.Getenv(cfg.Admin.TokenEnv) != "" || isLoopback(cfg.Admin.Listen) {
		return nil
	}
	return []string{fmt.Sprintf(
		"admin.listen: %s is reachable from other machines, so the admin API needs a token: set %s (admin.token_env) or listen on 127.0.0.1",
		cfg.Admin.Listen, cfg.Admin.TokenEnv)}
}

// clientsFileProblems reads the clients file cfg names and returns one
// problem for each bad entry, each naming the file.
func clientsFileProblems(cfg *Config, configPath string) []string {
	if cfg.RateLimit.ClientsFile == "" {
		return nil
	}
	path := clientsPath(cfg, configPath)
	if _, err := bucket.CheckClientsFile(path, bucket.New(limiterConfig(cfg, nil))); err != nil {
		// One problem a line, each naming the file.
		prefix := "clients file " + path + ": "
		var out []string
		for line := range strings.SplitSeq(err.Error(), "\n") {
			out = append(out, "rate_limit.clients_file: "+prefix+strings.TrimPrefix(line, prefix))
		}
		return out
	}
	return nil
}

// fieldLines turns err, one problem a line, into problems of field.
func fieldLines(field string, err error) []string {
	var out []string
	for line := range strings.SplitSeq(err.Error(), "\n") {
		out = append(out, field+": "+line)
	}
	return out
}
