package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"stdlb/bucket"
)

// Config is the schema of config.json. Every field has a default (see
// defaultConfig) so a file need only say what differs; unknown fields are
// an error so a typo cannot silently fall back to a default.
type Config struct {
	Listen         string          `json:"listen"`
	Algorithm      string          `json:"algorithm"`
	Backends       []BackendConfig `json:"backends"`
	HealthCheck    HealthConfig    `json:"health_check"`
	Retries        int             `json:"retries"`
	Timeouts       TimeoutsConfig  `json:"timeouts"`
	MaxHeaderBytes int             `json:"max_header_bytes"`
	AccessLog      bool            `json:"access_log"`
	AccessLogQuery bool            `json:"access_log_query"` // false: log paths without their query strings
	LogFormat      string          `json:"log_format"`
	RateLimit      RateLimitConfig `json:"rate_limit"`
	Admin          AdminConfig     `json:"admin"`
	Runtime        RuntimeConfig   `json:"runtime"`
	TLS            TLSConfig       `json:"tls"`
}

// BackendConfig is one entry of "backends".
type BackendConfig struct {
	URL    string `json:"url"`
	Weight int    `json:"weight"`
	// Name is what logs, /status, metrics and the status page call the
	// backend; empty means its URL.
	Name string `json:"name,omitempty"`
}

// HealthConfig is "health_check".
type HealthConfig struct {
	Path               string   `json:"path"`
	Interval           Duration `json:"interval"`
	Timeout            Duration `json:"timeout"`
	HealthyThreshold   int      `json:"healthy_threshold"`
	UnhealthyThreshold int      `json:"unhealthy_threshold"`
}

// TimeoutsConfig is "timeouts".
type TimeoutsConfig struct {
	ReadHeader      Duration `json:"read_header"`
	ReadBody        Duration `json:"read_body"`
	Write           Duration `json:"write"`
	Idle            Duration `json:"idle"`
	BackendDial     Duration `json:"backend_dial"`
	BackendResponse Duration `json:"backend_response"`
	Shutdown        Duration `json:"shutdown"`
}

// RateLimitConfig is "rate_limit".
type RateLimitConfig struct {
	Enabled          bool     `json:"enabled"`
	Capacity         int64    `json:"capacity"`
	RefillRate       float64  `json:"refill_rate"`
	RefillInterval   Duration `json:"refill_interval"`
	KeyHeader        string   `json:"key_header"`
	MaxKeyLength     int      `json:"max_key_length"`
	TrustedProxies   []string `json:"trusted_proxies"`
	ClientsFile      string   `json:"clients_file"`
	MaxClients       int      `json:"max_clients"`
	IdleTimeout      Duration `json:"idle_timeout"`
	HeadersOnAdmit   bool     `json:"headers_on_admit"`
	UnlistedKeysByIP bool     `json:"unlisted_keys_by_ip"`
	Instances        int      `json:"instances"`
	IPv6Prefix       int      `json:"ipv6_prefix"`
}

// AdminConfig is "admin".
type AdminConfig struct {
	Listen   string `json:"listen"`
	TokenEnv string `json:"token_env"`
}

// RuntimeConfig is "runtime": Go runtime knobs that trade memory for CPU.
type RuntimeConfig struct {
	// GOGC is the garbage collector's target percentage (Go's GOGC), default
	// 200; 0 keeps the runtime's own (100). The GOGC environment variable,
	// when set, wins.
	GOGC int `json:"gogc"`
	// MemoryLimit is a soft heap limit such as "512MiB" (Go's GOMEMLIMIT);
	// "" keeps the runtime's own setting.
	MemoryLimit string `json:"memory_limit"`
	// FastHTTP1 is kept so that files which set it still load: HTTP/1.1
	// is always served by h1.Server, and false is refused. (It used to
	// hand every connection to net/http's server, which accepts request
	// framing a proxy must refuse.)
	FastHTTP1 bool `json:"fast_http1"`
}

// defaultConfig is the one place defaults live. Loading decodes the file
// over it, so a key the file leaves out keeps its value here.
func defaultConfig() Config {
	return Config{
		Listen:    ":8080",
		Algorithm: "round-robin",
		HealthCheck: HealthConfig{
			Path: "/healthz", Interval: Seconds(2), Timeout: Seconds(1),
			HealthyThreshold: 2, UnhealthyThreshold: 3,
		},
		Retries: 2,
		Timeouts: TimeoutsConfig{
			ReadHeader: Seconds(5), ReadBody: Seconds(30), Write: Seconds(60), Idle: Seconds(60),
			BackendDial: Seconds(2), BackendResponse: Seconds(30), Shutdown: Seconds(15),
		},
		MaxHeaderBytes: 64 << 10,
		AccessLog:      true,
		AccessLogQuery: true,
		LogFormat:      "text",
		RateLimit: RateLimitConfig{
			Capacity: 100, RefillRate: 50, RefillInterval: Duration(100 * time.Millisecond),
			KeyHeader: "X-API-Key", MaxKeyLength: 256,
			ClientsFile: "clients.json", MaxClients: 1_000_000, IdleTimeout: Duration(10 * time.Minute),
			HeadersOnAdmit: true, Instances: 1, IPv6Prefix: bucket.DefaultIPv6Prefix,
		},
		Admin: AdminConfig{Listen: "127.0.0.1:9090", TokenEnv: "LB_ADMIN_TOKEN"},
		// A proxy's live heap is small and its garbage is per-request
		// buffers, so the collector runs often at Go's default of 100;
		// doubling the target measured 5% more throughput (bench/RESULTS.md).
		Runtime: RuntimeConfig{GOGC: 200, FastHTTP1: true},
		TLS:     TLSConfig{MinVersion: "1.2"},
	}
}

// Duration is a time.Duration written in JSON as a Go duration string
// ("1.5s", "100ms").
type Duration time.Duration

// Seconds returns n seconds as a Duration.
func Seconds(n int) Duration { return Duration(time.Duration(n) * time.Second) }

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalJSON reads a duration string. A malformed one leaves d as it
// was: checkShape reports it with its field path, and returning an error
// here would stop encoding/json from decoding the rest of the file, whose
// problems the operator also wants to see.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		if v, err := time.ParseDuration(s); err == nil {
			*d = Duration(v)
		}
	}
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// ConfigError lists every problem found in a configuration, one per line,
// each starting with the field path it concerns.
type ConfigError struct {
	Source   string // the file, for the message
	Problems []string
	// decoded is what could be read of a file with problems, so that the
	// checks of the files it names can run too; nil when unreadable.
	decoded *Config
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		if e.Source != "" && !strings.HasPrefix(p, "flag ") {
			b.WriteString(e.Source + ": ")
		}
		b.WriteString(p)
	}
	return b.String()
}

// Overrides are the command-line settings that win over the file.
type Overrides struct {
	Listen   string // -listen
	Backends string // -backends, comma-separated URLs
}

// LoadConfig reads the file at path, applies the overrides and validates
// the result. Any problem, in the file or the overrides, comes back in one
// *ConfigError.
func LoadConfig(path string, o Overrides) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &ConfigError{Problems: []string{fmt.Sprintf("config file: %v", err)}}
	}
	cfg, err := ParseConfig(data, o)
	if ce, ok := err.(*ConfigError); ok {
		ce.Source = path
	}
	return cfg, err
}

// ParseConfig decodes data over the defaults, applies the overrides and
// validates the result.
func ParseConfig(data []byte, o Overrides) (*Config, error) {
	cfg := defaultConfig()
	var problems []string
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw any
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &ConfigError{Problems: []string{`the file is empty (want a JSON object such as {"backends": [{"url": "http://127.0.0.1:9001"}]})`}}
	}
	if err := dec.Decode(&raw); err == io.ErrUnexpectedEOF {
		return nil, &ConfigError{Problems: []string{"not valid JSON: the file ends in the middle of a value (cut short?)"}}
	} else if err != nil {
		return nil, &ConfigError{Problems: []string{"not valid JSON: " + jsonErrorWithLine(data, err)}}
	}
	if end := dec.InputOffset(); len(bytes.TrimSpace(data[end:])) > 0 {
		next := end + int64(len(data[end:])-len(bytes.TrimLeft(data[end:], " \t\r\n")))
		line, col := position(data, next+1)
		return nil, &ConfigError{Problems: []string{fmt.Sprintf(
			"not valid JSON: line %d, column %d: more after the end of the object (one JSON object per file)", line, col)}}
	}
	problems = repeatedFields(data, problems)
	problems = checkShape("", raw, &cfg, problems)
	// Decode even when the shape is wrong: encoding/json skips fields of the
	// wrong type and fills in the rest, so validate can still report the
	// problems in the fields that were right.
	if err := json.Unmarshal(data, &cfg); err != nil && len(problems) == 0 {
		problems = append(problems, err.Error())
	}
	if o.Listen != "" {
		cfg.Listen = o.Listen
	}
	if o.Backends != "" {
		cfg.Backends = nil
		for u := range strings.SplitSeq(o.Backends, ",") {
			cfg.Backends = append(cfg.Backends, BackendConfig{URL: strings.TrimSpace(u)})
		}
	}
	for _, p := range cfg.validate(problems) {
		// A problem in a value the command line gave is the flag's, not the
		// file's.
		switch {
		case o.Backends != "" && strings.HasPrefix(p, "backends"):
			p = "flag -" + p
		case o.Listen != "" && strings.HasPrefix(p, "listen:"):
			p = "flag -" + p
		}
		problems = append(problems, p)
	}
	if len(problems) > 0 {
		return nil, &ConfigError{Problems: problems, decoded: &cfg}
	}
	return &cfg, nil
}

// jsonErrorWithLine puts the line and column of a syntax error in front of
// it, both counted from 1 as editors do, the column in characters.
func jsonErrorWithLine(data []byte, err error) string {
	se, ok := err.(*json.SyntaxError)
	if !ok {
		return err.Error()
	}
	line, col := position(data, se.Offset)
	return fmt.Sprintf("line %d, column %d: %v", line, col, err)
}

// position returns the line and column of the byte at offset-1: a
// json.SyntaxError's Offset counts the bytes read up to and including the
// one that was wrong.
func position(data []byte, offset int64) (line, col int) {
	before := data[:max(0, min(int(offset)-1, len(data)))]
	lineStart := bytes.LastIndexByte(before, '\n') + 1
	return bytes.Count(before, []byte("\n")) + 1, utf8.RuneCount(before[lineStart:]) + 1
}
