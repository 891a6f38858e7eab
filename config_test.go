package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

const minimalConfig = `{"backends": [{"url": "http://127.0.0.1:9001"}]}`

func TestParseConfig_Defaults(t *testing.T) {
	cfg, err := ParseConfig([]byte(minimalConfig), Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	want := defaultConfig()
	want.Backends = []BackendConfig{{URL: "http://127.0.0.1:9001"}}
	if cfg.Listen != ":8080" || cfg.Algorithm != "round-robin" || cfg.Retries != 2 ||
		cfg.Timeouts.Shutdown.D() != 15*time.Second || cfg.RateLimit.Capacity != 100 ||
		cfg.Admin.Listen != "127.0.0.1:9090" || !slices.Equal(cfg.Backends, want.Backends) {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
}

func TestParseConfig_ShippedFileIsValid(t *testing.T) {
	cfg, err := LoadConfig("config.json", Overrides{})
	if err != nil {
		t.Fatalf("config.json: %v", err)
	}
	if len(cfg.Backends) != 3 || !cfg.RateLimit.Enabled || cfg.HealthCheck.Interval.D() != 2*time.Second {
		t.Fatalf("config.json read as %+v", cfg)
	}
}

func TestParseConfig_OverridesWin(t *testing.T) {
	cfg, err := ParseConfig([]byte(minimalConfig), Overrides{Listen: "127.0.0.1:7000", Backends: "http://a:1, http://b:2"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:7000" || len(cfg.Backends) != 2 || cfg.Backends[1].URL != "http://b:2" {
		t.Fatalf("overrides not applied: listen %q backends %+v", cfg.Listen, cfg.Backends)
	}
	_, err = ParseConfig([]byte(minimalConfig), Overrides{Backends: "127.0.0.1:9001"})
	wantProblems(t, err, `flag -backends[0].url: "127.0.0.1:9001" has no http:// or https:// scheme`)
	if want := `flag -backends[0].url: "127.0.0.1:9001" has no http:// or https:// scheme`; (&ConfigError{Source: "config.json", Problems: err.(*ConfigError).Problems}).Error() != want {
		t.Fatalf("a flag's problem is blamed on the file: %v", err)
	}
}

func wantProblems(t *testing.T, err error, want ...string) {
	t.Helper()
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("error = %v, want a *ConfigError", err)
	}
	if !slices.Equal(ce.Problems, want) {
		t.Fatalf("problems:\n  %s\nwant:\n  %s", strings.Join(ce.Problems, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestParseConfig_ReportsEveryProblemWithItsPath(t *testing.T) {
	tests := []struct {
		name string
		json string
		want []string
	}{
		{"unknown fields, all of them", `{"backends": [{"url": "http://a:1", "wieght": 2}], "listne": ":1"}`, []string{
			"backends[0].wieght: unknown field (known: name, url, weight)",
			"listne: unknown field (known: access_log, access_log_query, admin, algorithm, backends, health_check, listen, log_format, max_header_bytes, rate_limit, retries, runtime, timeouts, tls)",
		}},
		{"backend URL without scheme or host", `{"backends": [{"url": "127.0.0.1:9001"}, {"url": "http://"}, {"url": ""}]}`, []string{
			`backends[0].url: "127.0.0.1:9001" has no http:// or https:// scheme`,
			`backends[1].url: "http://" has no host`,
			"backends[2].url: missing (want e.g. http://127.0.0.1:9001)",
		}},
		{"backend URL with a path", `{"backends": [{"url": "http://a:1/api"}]}`, []string{
			`backends[0].url: "http://a:1/api" has a path, query or fragment; give only scheme, host and port (requests keep their own path)`,
		}},
		{"duplicate backend", `{"backends": [{"url": "http://a:1"}, {"url": "http://A:1/"}]}`, []string{
			"backends[1].url: http://A:1/ duplicates backends[0] (both are http://a:1)",
		}},
		{"duplicate backends spelt apart", `{"backends": [
			{"url": "http://127.0.0.1:19001"}, {"url": "http://127.0.0.1:019001"},
			{"url": "http://b"}, {"url": "HTTP://B.:80"},
			{"url": "https://c"}, {"url": "https://c:443"}, {"url": "http://c:443"},
			{"url": "http://[::1]:9"}, {"url": "http://[0:0::1]:09"},
			{"url": "http://[::ffff:10.0.0.1]:9"}, {"url": "http://10.0.0.1:9"}]}`, []string{
			"backends[1].url: http://127.0.0.1:019001 duplicates backends[0] (both are http://127.0.0.1:19001)",
			"backends[3].url: HTTP://B.:80 duplicates backends[2] (both are http://b:80)",
			"backends[5].url: https://c:443 duplicates backends[4] (both are https://c:443)",
			"backends[8].url: http://[0:0::1]:09 duplicates backends[7] (both are http://[::1]:9)",
			"backends[10].url: http://10.0.0.1:9 duplicates backends[9] (both are http://10.0.0.1:9)",
		}},
		{"negative weight", `{"backends": [{"url": "http://a:1", "weight": -1}]}`, []string{
			"backends[0].weight: must be between 1 and 1000 (0 or absent means 1), got -1",
		}},
		{"no backends", `{"backends": []}`, []string{"backends: at least one backend is needed"}},
		{"unknown algorithm", `{"algorithm": "random", "backends": [{"url": "http://a:1"}]}`, []string{
			`algorithm: unknown algorithm "random" (want round-robin, weighted-round-robin or least-connections)`,
		}},
		{"non-positive intervals", `{"backends": [{"url": "http://a:1"}], "health_check": {"interval": "0s", "timeout": "-1s"}}`, []string{
			"health_check.interval: must be more than 0, got 0s",
			"health_check.timeout: must be more than 0, got -1s",
		}},
		{"unparsable durations", `{"backends": [{"url": "http://a:1"}], "timeouts": {"idle": "5 minutes", "shutdown": 15}}`, []string{
			`timeouts.idle: "5 minutes" is not a duration (use a number and a unit: 500ms, 2s, 1m)`,
			"timeouts.shutdown: want a duration string such as \"5s\", got number 15",
		}},
		{"wrong types", `{"backends": {"url": "http://a:1"}, "retries": "two", "access_log": "yes"}`, []string{
			"access_log: want true or false, got string \"yes\"",
			"backends: want a list, got an object",
			"retries: want a whole number, got string \"two\"",
		}},
		{"rate limit settings", `{"backends": [{"url": "http://a:1"}], "rate_limit": {"capacity": 0, "refill_rate": -1, "trusted_proxies": ["10.0.0.0/8", "nope"], "key_header": "X Key"}}`, []string{
			"rate_limit.capacity: must be between 1 and 8388608, got 0",
			"rate_limit.refill_rate: must be more than 0 and at most 1e9 tokens per second, got -1",
			`rate_limit.key_header: "X Key" is not a valid header name`,
			`rate_limit.trusted_proxies[1]: "nope" is neither an address nor a CIDR network`,
		}},
		{"trusted proxies with host bits", `{"backends": [{"url": "http://a:1"}], "rate_limit": {"trusted_proxies": ["10.0.0.1/8", "10.0.0.0/8", "192.0.2.7", "2001:db8::1/64"]}}`, []string{
			`rate_limit.trusted_proxies[0]: "10.0.0.1/8" has host bits set: did you mean 10.0.0.0/8 (the network) or 10.0.0.1/32 (the one address)?`,
			`rate_limit.trusted_proxies[3]: "2001:db8::1/64" has host bits set: did you mean 2001:db8::/64 (the network) or 2001:db8::1/128 (the one address)?`,
		}},
		{"listen addresses", `{"listen": "8080", "backends": [{"url": "http://a:1"}], "admin": {"listen": ":9090"}}`, []string{
			`listen: want host:port or :port, got "8080"`,
			"admin.listen: name the address to listen on, e.g. 127.0.0.1:9090 (an empty host listens on every interface)",
		}},
		{"repeated fields", "{\"backends\": [{\"url\": \"http://a:1\", \"url\": \"http://b:1\"}],\n" +
			"\"rate_limit\": {\"capacity\": 5, \"refill_rate\": 1,\n  \"capacit\\u0079\": 500}}", []string{
			"backends[0].url: given twice, at line 1, column 16 and at line 1, column 37; say it once (JSON readers differ on which one counts)",
			"rate_limit.capacity: given twice, at line 2, column 16 and at line 3, column 3; say it once (JSON readers differ on which one counts)",
		}},
		{"not JSON", "{\n  \"listen\": \":8080\",\n}", []string{
			"not valid JSON: line 3, column 1: invalid character '}' looking for beginning of object key string",
		}},
		{"not an object", `[1, 2]`, []string{"(top level): want an object, got a list"}},
		{"empty file", "  \n", []string{`the file is empty (want a JSON object such as {"backends": [{"url": "http://127.0.0.1:9001"}]})`}},
		{"cut short", `{"backends": [{"url": "http://a:1"`, []string{"not valid JSON: the file ends in the middle of a value (cut short?)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.json), Overrides{})
			wantProblems(t, err, tt.want...)
		})
	}
}

// TestParseConfig_NumbersOutOfRangeSayTheRange: a number outside its
// field's range is refused with the range, however it is written, and
// advice names only values that pass.
func TestParseConfig_NumbersOutOfRangeSayTheRange(t *testing.T) {
	for _, tc := range []struct{ fields, want string }{
		{`"rate_limit": {"refill_rate": 2e9}`, "rate_limit.refill_rate: must be more than 0 and at most 1e9 tokens per second, got 2000000000"},
		{`"rate_limit": {"refill_rate": 1e400}`, "rate_limit.refill_rate: must be more than 0 and at most 1e9 tokens per second, got 1e400"},
		{`"rate_limit": {"capacity": 1e30}`, "rate_limit.capacity: must be between 1 and 8388608, got 1e30"},
		{`"rate_limit": {"capacity": -99999999999999999999}`, "rate_limit.capacity: must be between 1 and 8388608, got -99999999999999999999"},
		{`"rate_limit": {"max_clients": 1e30}`, "rate_limit.max_clients: must be 1 or more, and at most 9223372036854775807, got 1e30"},
		{`"rate_limit": {"capacity": 5e0}`, "rate_limit.capacity: write 5e0 as 5, without a fraction or exponent"},
		{`"rate_limit": {"capacity": 2.5}`, "rate_limit.capacity: want a whole number, got number 2.5"},
		{`"max_header_bytes": 2e7`, "max_header_bytes: must be between 4096 and 16777216, got 2e7"},
		{`"max_header_bytes": 20000000`, "max_header_bytes: must be between 4096 and 16777216, got 20000000"},
		{`"rate_limit": {"capacity": 8388608, "refill_rate": 1e9, "refill_interval": "1s"}`,
			"rate_limit.capacity: 8388608 is less than one refill (refill_rate 1e+09 x refill_interval 1s = 1e+09 tokens), so the bucket would drop the surplus " +
				"and admit only about 8.38861e+06 a second: shorten rate_limit.refill_interval to at most 8ms or lower refill_rate to at most 8388600 (capacity is at most 8388608)"},
	} {
		_, err := ParseConfig([]byte(`{"backends": [{"url": "http://a:1"}], `+tc.fields+`}`), Overrides{})
		wantProblems(t, err, tc.want)
	}
}

// TestNumRanges_CoverEveryNumericField: every number in Config has the
// range validate checks and shapeOf names, and no range is left over.
func TestNumRanges_CoverEveryNumericField(t *testing.T) {
	seen := map[string]bool{}
	var walk func(path string, typ reflect.Type)
	walk = func(path string, typ reflect.Type) {
		switch typ.Kind() {
		case reflect.Struct:
			for f := range typ.Fields() {
				name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
				walk(joinPath(path, name), f.Type)
			}
		case reflect.Slice:
			walk(path+"[]", typ.Elem())
		case reflect.Int, reflect.Int64, reflect.Float64:
			if typ == durationType {
				return
			}
			seen[path] = true
			if _, ok := numRanges[path]; !ok {
				t.Errorf("%s has no range in numRanges", path)
			}
		}
	}
	walk("", reflect.TypeFor[Config]())
	for path := range numRanges {
		if !seen[path] {
			t.Errorf("numRanges has %s, which is no numeric field", path)
		}
	}
}

func TestLoadConfig_NamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lb.json")
	os.WriteFile(path, []byte(`{"backends": [{"url": "ftp://a"}]}`), 0o644)
	_, err := LoadConfig(path, Overrides{})
	if err == nil || err.Error() != path+`: backends[0].url: "ftp://a" has no http:// or https:// scheme` {
		t.Fatalf("error = %v", err)
	}
	os.WriteFile(path, []byte(`{"backends": [{"url": "http://a:1"}], "retries": 1, "retries": 3}`), 0o644)
	_, err = LoadConfig(path, Overrides{})
	if err == nil || !strings.HasPrefix(err.Error(), path+": retries: given twice, at line 1, column 39 and at line 1, column 53;") {
		t.Fatalf("repeated field: %v", err)
	}
	_, err = LoadConfig(filepath.Join(t.TempDir(), "missing.json"), Overrides{})
	if err == nil || !strings.Contains(err.Error(), "config file: open ") {
		t.Fatalf("missing file error = %v", err)
	}
}

// FuzzParseConfig feeds arbitrary bytes to the parser: it must never
// panic, and whatever it accepts must satisfy the invariants the balancer
// relies on.
func FuzzParseConfig(f *testing.F) {
	seed, _ := os.ReadFile("config.json")
	f.Add(seed)
	f.Add([]byte(minimalConfig))
	f.Add([]byte(`{"backends": [{"url": "http://a:1", "weight": 3}], "algorithm": "least-connections"}`))
	f.Add([]byte(`{"timeouts": {"idle": "1h"}, "rate_limit": {"refill_rate": 0.1}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data, Overrides{})
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("error is not a ConfigError with problems: %v", err)
			}
			return
		}
		if len(cfg.Backends) == 0 || cfg.HealthCheck.Interval <= 0 || cfg.RateLimit.Capacity < 1 ||
			!(cfg.RateLimit.RefillRate > 0) || cfg.Retries < 0 {
			t.Fatalf("accepted an invalid config: %+v", cfg)
		}
		for _, b := range cfg.Backends {
			if checkBackendURL(b.URL) != "" {
				t.Fatalf("accepted backend %q", b.URL)
			}
		}
	})
}

func TestParseConfig_RefusesNetHTTPFrontServer(t *testing.T) {
	cfg := `{"backends": [{"url": "http://127.0.0.1:9001"}], "runtime": {"fast_http1": false}}`
	_, err := ParseConfig([]byte(cfg), Overrides{})
	wantProblems(t, err, "runtime.fast_http1: false is no longer possible: HTTP/1.1 is always served by the balancer's own strict server, "+
		"because net/http's server accepts request framing a proxy must refuse (see Protocol strictness in the README); remove the setting")
	if _, err := ParseConfig([]byte(`{"backends": [{"url": "http://127.0.0.1:9001"}], "runtime": {"fast_http1": true}}`), Overrides{}); err != nil {
		t.Fatalf("a file that still says fast_http1 true: %v", err)
	}
}

// TestListenClash: two listeners clash on one port when they share an
// address or either takes every address, as Go's Listen does on Linux
// (each pair below was tried with net.Listen).
func TestListenClash(t *testing.T) {
	for _, tc := range []struct {
		a, b  string
		clash bool
	}{
		{"127.0.0.1:8080", "127.0.0.1:8080", true},
		{":8080", "127.0.0.1:8080", true},
		{"127.0.0.1:8080", ":8080", true},
		{"0.0.0.0:8080", "[::1]:8080", true},
		{"[::]:8080", "127.0.0.1:8080", true},
		{"localhost:8080", "127.0.0.1:8080", true},
		{"LOCALHOST:8080", "localhost:8080", true},
		{"[::ffff:127.0.0.1]:8080", "127.0.0.1:8080", true},
		{":http", ":80", true},
		{"127.0.0.1:8080", "127.0.0.2:8080", false},
		{"localhost:8080", "[::1]:8080", false},
		{"127.0.0.1:8080", "127.0.0.1:8081", false},
		{"127.0.0.1:0", "127.0.0.1:0", false}, // the system picks two ports
		{":8080", "", false},                  // off
	} {
		if _, _, got := listenClash(tc.a, tc.b); got != tc.clash {
			t.Errorf("listenClash(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.clash)
		}
	}
}

// TestParseConfig_ListenersOnOnePortAreRefused: a clash the file shows is a
// configuration error naming both fields, not a failure to start.
func TestParseConfig_ListenersOnOnePortAreRefused(t *testing.T) {
	for _, tc := range []struct{ fields, want string }{
		{`"listen": "127.0.0.1:9090"`,
			"admin.listen: 127.0.0.1:9090 clashes with listen (127.0.0.1:9090): both want port 9090; give each its own port"},
		{`"listen": ":9090"`,
			"admin.listen: 127.0.0.1:9090 clashes with listen (:9090): both want port 9090, and a listener with no host, 0.0.0.0 or [::] takes its port on every address; give each its own port"},
		{`"listen": ":8443", "tls": {"cert_file": "c.pem", "key_file": "k.pem", "redirect_http": "0.0.0.0:8443"}`,
			"tls.redirect_http: 0.0.0.0:8443 clashes with listen (:8443): both want port 8443; give each its own port"},
		{`"admin": {"listen": "127.0.0.1:80"}, "tls": {"cert_file": "c.pem", "key_file": "k.pem", "redirect_http": ":80"}`,
			"tls.redirect_http: :80 clashes with admin.listen (127.0.0.1:80): both want port 80, and a listener with no host, 0.0.0.0 or [::] takes its port on every address; give each its own port"},
	} {
		_, err := ParseConfig([]byte(`{"backends": [{"url": "http://a:1"}], `+tc.fields+`}`), Overrides{})
		wantProblems(t, err, tc.want)
	}
	// The same through the command line: exit 2 before listening.
	path := filepath.Join(t.TempDir(), "config.json")
	os.WriteFile(path, []byte(`{"backends": [{"url": "http://127.0.0.1:9"}], "admin": {"listen": "127.0.0.1:9090"}}`), 0o644)
	var stderr strings.Builder
	if code := run([]string{"-config", path, "-listen", "127.0.0.1:9090"}, io.Discard, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), "admin.listen: 127.0.0.1:9090 clashes with listen (127.0.0.1:9090)") {
		t.Fatalf("exit %d, %q; want 2 naming both", code, stderr.String())
	}
}

// TestParseConfig_KeyHeaderMustIdentifyAClient: key_header may not name a
// field HTTP or the balancer consumes or rewrites, or Cookie, in any case.
func TestParseConfig_KeyHeaderMustIdentifyAClient(t *testing.T) {
	for _, tc := range []struct {
		header, why string // why "" : accepted
	}{
		{"X-API-Key", ""},
		{"Authorization", ""},
		{"x-client-id", ""},
		{"Host", "it names the site asked for"},
		{"HOST", "it names the site asked for"},
		{"content-length", "it frames the request body"},
		{"Cookie", "it holds every cookie at once"},
		{"Connection", "it is a hop-by-hop field"},
		{"te", "it is a hop-by-hop field"},
		{"Transfer-Encoding", "it is a hop-by-hop field"},
		{"Proxy-Authorization", "it is a hop-by-hop field"},
		{"X-Forwarded-For", "it is a forwarding field the balancer sets or drops"},
		{"forwarded", "it is a forwarding field the balancer sets or drops"},
		{"X-Real-IP", "it is a forwarding field the balancer sets or drops"},
	} {
		_, err := ParseConfig([]byte(`{"backends": [{"url": "http://a:1"}], "rate_limit": {"key_header": "`+tc.header+`"}}`), Overrides{})
		if tc.why == "" {
			if err != nil {
				t.Errorf("key_header %s: %v, want accepted", tc.header, err)
			}
			continue
		}
		want := fmt.Sprintf("rate_limit.key_header: %q cannot tell clients apart: %s", tc.header, tc.why)
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("key_header %s: %v, want %q...", tc.header, err, want)
		}
	}
}

// TestLoadConfig_ClientsFileNeedsItsDirectory: a clients file may be
// absent (no client has limits of its own yet), but not its directory:
// every admin change would fail to be saved.
func TestLoadConfig_ClientsFileNeedsItsDirectory(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "plain"), nil, 0o644)
	for _, tc := range []struct{ clientsFile, missing string }{
		{"absent.json", ""},
		{"nodir/clients.json", "nodir"},
		{"plain/clients.json", "plain"},
	} {
		path := filepath.Join(dir, "config.json")
		os.WriteFile(path, []byte(`{"backends": [{"url": "http://127.0.0.1:9"}], "rate_limit": {"clients_file": "`+tc.clientsFile+`"}}`), 0o644)
		var stdout, stderr strings.Builder
		code := run([]string{"-config", path, "-check-config"}, &stdout, &stderr)
		if tc.missing == "" {
			if code != 0 {
				t.Errorf("clients_file %s: exit %d, %s; want 0", tc.clientsFile, code, stderr.String())
			}
			continue
		}
		want := fmt.Sprintf("%s: rate_limit.clients_file: %s: the directory %s does not exist or is no directory",
			path, filepath.Join(dir, tc.clientsFile), filepath.Join(dir, tc.missing))
		if code != 2 || !strings.HasPrefix(stderr.String(), want) {
			t.Errorf("clients_file %s: exit %d, %q; want 2 and %q", tc.clientsFile, code, stderr.String(), want)
		}
	}
}
