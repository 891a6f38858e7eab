package main

// End-to-end tests of the rate limits as configured: limits the limiter
// cannot honour are refused everywhere, listed clients keep their limits in a
// full table, and one client is one key. Through the whole app, on ports
// chosen by the system.

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// TestApp_SubTickCapacityIsRefused: capacity 1 at 50/s and 100ms ticks
// would admit 10 a second, not 50. The config, -check-config, a reload, the
// clients file and PUT /clients all refuse it and say what would work.
func TestApp_SubTickCapacityIsRefused(t *testing.T) {
	_, err := ParseConfig([]byte(`{"backends": [{"url": "http://127.0.0.1:9001"}],
		"rate_limit": {"capacity": 1, "refill_rate": 50, "refill_interval": "100ms"}}`), Overrides{})
	if err == nil || !strings.Contains(err.Error(), "rate_limit.capacity: 1 is less than one refill") ||
		!strings.Contains(err.Error(), "raise capacity to at least 5 or shorten rate_limit.refill_interval to at most 20ms") {
		t.Fatalf("config with capacity below a tick's refill: %v", err)
	}

	be := backendNamed(t, "a")
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	writeConfig(t, path, `, "rate_limit": {"enabled": true, "capacity": 10, "refill_rate": 50}`, be.URL)
	var stderr bytes.Buffer
	os.WriteFile(filepath.Join(dir, "clients.json"), []byte(`{"clients": {"k-1": {"capacity": 2, "refill_rate": 50}}}`), 0o600)
	if code := run([]string{"-config", path, "-check-config"}, io.Discard, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), `clients["k-1"].capacity: 2 is less than one refill`) {
		t.Fatalf("-check-config with a sub-tick client: exit %d, %q", code, stderr.String())
	}
	os.Remove(filepath.Join(dir, "clients.json"))

	t.Setenv("STDLB_TEST_ADMIN_TOKEN", "s3cret")
	writeConfig(t, path, `, "rate_limit": {"enabled": true, "capacity": 10, "refill_rate": 50},
		"admin": {"listen": "127.0.0.1:0", "token_env": "STDLB_TEST_ADMIN_TOKEN"}`, be.URL)
	r := startApp(t, path)
	code, body := adminDo(t, "PUT", "http://"+r.AdminAddr()+"/clients/k-1", "s3cret", `{"capacity": 1, "refill_rate": 50}`)
	if msg, _ := body["error"].(string); code != 400 || !strings.Contains(msg, "capacity: 1 is less than one refill") {
		t.Fatalf("PUT of a sub-tick client: %d %v, want 400 naming capacity", code, body)
	}
	if _, err := os.Stat(filepath.Join(dir, "clients.json.log")); err == nil {
		t.Fatal("a refused PUT wrote the change log")
	}
	writeConfig(t, path, `, "rate_limit": {"enabled": true, "capacity": 1, "refill_rate": 50},
		"admin": {"listen": "127.0.0.1:0", "token_env": "STDLB_TEST_ADMIN_TOKEN"}`, be.URL)
	r.hup <- os.Interrupt
	waitUntil(t, "the reload to be refused", func() bool {
		logs := r.logs.String()
		return strings.Contains(logs, "reload rejected: ") && strings.Contains(logs, "rate_limit.capacity: 1 is less than one refill")
	})
	if got := r.cfg.Load().RateLimit.Capacity; got != 10 {
		t.Fatalf("after a refused reload: capacity %d, want the old 10", got)
	}
}

// TestApp_ListedClientsKeepTheirLimitsWhenTheTableIsFull: a flood of new
// addresses fills max_clients; listed clients that arrive afterwards are
// judged by their own limits, a strict one by 2 and a generous one by 50,
// not by the spent overflow bucket with the default's 5.
func TestApp_ListedClientsKeepTheirLimitsWhenTheTableIsFull(t *testing.T) {
	be := backendNamed(t, "a")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "clients.json"), []byte(`{"clients": {
		"192.0.2.50": {"capacity": 2, "refill_rate": 0.01},
		"192.0.2.51": {"capacity": 50, "refill_rate": 0.01}}}`), 0o600)
	path := filepath.Join(dir, "config.json")
	writeConfig(t, path, `, "rate_limit": {"enabled": true, "capacity": 5, "refill_rate": 0.01,
		"trusted_proxies": ["127.0.0.1/32"], "max_clients": 100, "clients_file": "clients.json"}`, be.URL)
	r := startApp(t, path)
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	getAs := func(ip string) int {
		req, _ := http.NewRequest("GET", "http://"+r.Addr()+"/", nil)
		req.Header.Set("X-Forwarded-For", ip)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := next.Add(1); i <= 1000; i = next.Add(1) {
				getAs(fmt.Sprintf("10.1.%d.%d", i>>8, i&255))
			}
		})
	}
	wg.Wait()
	if st := readLimiterStatus(t, r); st.Overflowed == 0 || st.Clients > 100 {
		t.Fatalf("after the flood: %+v; want a full table (overflowed) of at most 100", st)
	}
	for _, c := range []struct {
		ip   string
		want int
	}{{"192.0.2.50", 2}, {"192.0.2.51", 50}} {
		admitted := 0
		for range 60 {
			if getAs(c.ip) == 200 {
				admitted++
			}
		}
		if admitted != c.want {
			t.Errorf("listed client %s with capacity %d after the flood: %d of 60 admitted", c.ip, c.want, admitted)
		}
	}
}

// TestApp_OneClientOneKey: a repeated API key header (two lines, or a list
// on one) is a 400 and never reaches the backend; addresses of one IPv6
// /64 share one bucket. (A spelling with '_' never reaches the limiter or
// the backend: TestBalancer_LeavesOutNamesWithUnderscores in lb.)
func TestApp_OneClientOneKey(t *testing.T) {
	var reached atomic.Int64
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			reached.Add(1)
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(be.Close)
	r := startAbuseApp(t, `, "rate_limit": {"enabled": true, "capacity": 3, "refill_rate": 0.01, "trusted_proxies": ["127.0.0.1/32"]}`, be.URL)
	for _, tc := range []struct{ name, fields, says string }{
		{"two X-API-Key headers", "X-API-Key: fresh-1\r\nX-API-Key: real\r\n", "repeated"},
		// What follows was found by an operator's review: each got a fresh
		// bucket, or none, while a backend could read the key it wanted.
		{"a list on one line", "X-API-Key: real, fresh-2\r\n", "holds a list"},
	} {
		resp, body := rawExchange(t, r.Addr(), "GET / HTTP/1.1\r\nHost: x\r\n"+tc.fields+"\r\n")
		if resp.StatusCode != 400 || !strings.Contains(body, tc.says) || reached.Load() != 0 {
			t.Fatalf("%s: %d %q, backend reached %d times; want 400 saying %q", tc.name, resp.StatusCode, body, reached.Load(), tc.says)
		}
	}
	admitted := 0
	for i := range 6 {
		resp, _ := rawExchange(t, r.Addr(), fmt.Sprintf("GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 2001:db8:7:7::%x\r\n\r\n", i+1))
		if resp.StatusCode == 200 {
			admitted++
		}
	}
	if admitted != 3 {
		t.Fatalf("six addresses of one /64 with capacity 3: %d admitted, want 3", admitted)
	}
}
