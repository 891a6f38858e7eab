package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeLimitsConfig writes a config for backend with the admin API behind
// the token STDLB_TEST_ADMIN_TOKEN and rate_limit set to rateLimit (a JSON
// object's members), clients.json beside it.
func writeLimitsConfig(t *testing.T, path, backend, rateLimit string) {
	t.Helper()
	data := fmt.Sprintf(`{"listen": "127.0.0.1:0", "backends": [{"url": %q}],
		"health_check": {"interval": "20ms", "timeout": "2s"},
		"rate_limit": {"enabled": true, %s},
		"admin": {"listen": "127.0.0.1:0", "token_env": "STDLB_TEST_ADMIN_TOKEN"}}`, backend, rateLimit)
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// policy returns the RateLimit-Policy of an answer to GET / from r.
func policy(t *testing.T, r *runningApp) string {
	t.Helper()
	resp, _ := getBody(t, "http://"+r.Addr()+"/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %d", resp.StatusCode)
	}
	return resp.Header.Get("RateLimit-Policy")
}

// TestReload_LimitsMustFitTheRefillIntervalInUse: refill_interval changes
// only on restart, so a reload's limits must fit the interval that runs.
// Capacity 2 at 10/s fits the file's new 100ms, but at the 1s in use each
// tick's 10 tokens would meet a bucket of 2 and a client would get 2 a
// second: the reload is refused with every problem (the default's and a
// listed client's), each naming its fields and the restart, and the old
// limits stay.
func TestReload_LimitsMustFitTheRefillIntervalInUse(t *testing.T) {
	be := backendNamed(t, "a")
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	clients := filepath.Join(dir, "clients.json")
	t.Setenv("STDLB_TEST_ADMIN_TOKEN", "s3cret")
	writeLimitsConfig(t, path, be.URL, `"capacity": 5, "refill_rate": 1, "refill_interval": "1s"`)
	os.WriteFile(clients, []byte(`{"clients": {"k-1": {"capacity": 5, "refill_rate": 1}}}`), 0o644)
	r := startApp(t, path)

	inUse := "with rate_limit.refill_interval 1s in use until a restart applies the file's 100ms: "
	defaultProblem := "rate_limit.capacity: " + inUse + "2 is less than one refill (refill_rate 10 x refill_interval 1s = 10 tokens)"
	clientProblem := "rate_limit.clients_file: clients file " + clients + ": " + inUse + `clients["k-1"].capacity: 3 is less than one refill`
	for _, tc := range []struct {
		name, limits, clients string
		want                  []string
	}{
		{"the default", `"capacity": 2, "refill_rate": 10`, `{"k-1": {"capacity": 5, "refill_rate": 1}}`, []string{defaultProblem}},
		{"a listed client", `"capacity": 5, "refill_rate": 1`, `{"k-1": {"capacity": 3, "refill_rate": 10}}`, []string{clientProblem}},
		{"both at once", `"capacity": 2, "refill_rate": 10`, `{"k-1": {"capacity": 3, "refill_rate": 10}}`, []string{defaultProblem, clientProblem}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeLimitsConfig(t, path, be.URL, tc.limits+`, "refill_interval": "100ms"`)
			os.WriteFile(clients, []byte(`{"clients": `+tc.clients+`}`), 0o644)
			code, out := adminDo(t, "POST", "http://"+r.AdminAddr()+"/reload", "s3cret", "")
			problems := fmt.Sprint(out["problems"])
			for _, want := range tc.want {
				if !strings.Contains(problems, want) {
					t.Errorf("problems lack %q", want)
				}
			}
			if code != http.StatusUnprocessableEntity || t.Failed() {
				t.Fatalf("reload: %d %s", code, problems)
			}
			if got := r.cfg.Load().RateLimit.Capacity; got != 5 {
				t.Fatalf("after the refused reload: capacity %d, want the old 5", got)
			}
			if got := policy(t, r); got != `"default";q=5;w=5` {
				t.Fatalf("after the refused reload: RateLimit-Policy %s, want the old limits", got)
			}
		})
	}
}

// TestReload_RateLimitPolicySaysWhatRuns: a reload that changes capacity
// and refill_interval applies the capacity at once and the interval on
// restart; the RateLimit-Policy window is the one the limiter runs: 30
// tokens at 2/s in 20-token ticks of 10s fill in 20s (at the file's 1s
// they would fill in 15s).
func TestReload_RateLimitPolicySaysWhatRuns(t *testing.T) {
	be := backendNamed(t, "a")
	path := filepath.Join(t.TempDir(), "config.json")
	t.Setenv("STDLB_TEST_ADMIN_TOKEN", "s3cret")
	writeLimitsConfig(t, path, be.URL, `"capacity": 25, "refill_rate": 2, "refill_interval": "10s"`)
	r := startApp(t, path)
	if got := policy(t, r); got != `"default";q=25;w=20` {
		t.Fatalf("RateLimit-Policy at start: %s", got)
	}
	writeLimitsConfig(t, path, be.URL, `"capacity": 30, "refill_rate": 2, "refill_interval": "1s"`)
	code, out := adminDo(t, "POST", "http://"+r.AdminAddr()+"/reload", "s3cret", "")
	if code != http.StatusOK || fmt.Sprint(out["needs_restart"]) != "[rate_limit.refill_interval]" {
		t.Fatalf("reload: %d %v, want 200 naming refill_interval as needing a restart", code, out)
	}
	if got := policy(t, r); got != `"default";q=30;w=20` {
		t.Fatalf("RateLimit-Policy after the reload: %s, want q=30;w=20", got)
	}
}

// TestApp_WarnsWhenEveryPeerIsTrusted: trusted_proxies 0.0.0.0/0 or ::/0
// lets any client choose its X-Forwarded-For, and so its bucket. It is
// allowed (a balancer behind a cloud load balancer may need it) but said
// at start, on reload (in the log and the answer) and by -check-config.
func TestApp_WarnsWhenEveryPeerIsTrusted(t *testing.T) {
	be := backendNamed(t, "a")
	path := filepath.Join(t.TempDir(), "config.json")
	t.Setenv("STDLB_TEST_ADMIN_TOKEN", "s3cret")
	writeLimitsConfig(t, path, be.URL, `"trusted_proxies": ["192.0.2.1", "0.0.0.0/0"]`)
	var stdout, stderr strings.Builder
	if code := run([]string{"-config", path, "-check-config"}, &stdout, &stderr); code != 0 ||
		!strings.Contains(stderr.String(), path+": warning: rate_limit.trusted_proxies[1]: 0.0.0.0/0 trusts every peer") {
		t.Fatalf("-check-config: exit %d, stderr %q; want 0 and the warning", code, stderr.String())
	}
	r := startApp(t, path)
	if logs := r.logs.String(); !strings.Contains(logs, `level=WARN msg="rate_limit.trusted_proxies[1]: 0.0.0.0/0 trusts every peer: any client can name its own address in X-Forwarded-For and escape its rate limit`) {
		t.Fatalf("no warning at start:\n%s", logs)
	}
	writeLimitsConfig(t, path, be.URL, `"trusted_proxies": ["::/0"]`)
	code, out := adminDo(t, "POST", "http://"+r.AdminAddr()+"/reload", "s3cret", "")
	if code != http.StatusOK || !strings.Contains(fmt.Sprint(out["warnings"]), "rate_limit.trusted_proxies[0]: ::/0 trusts every peer") {
		t.Fatalf("reload: %d %v; want 200 with the warning", code, out)
	}
	if logs := r.logs.String(); !strings.Contains(logs, `level=WARN msg="reload: rate_limit.trusted_proxies[0]: ::/0 trusts every peer`) {
		t.Fatalf("no warning on reload:\n%s", logs)
	}
}
