package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

func adminDo(t *testing.T, method, url, token, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestAdmin_ClientsNeedTheToken(t *testing.T) {
	a := backendNamed(t, "a")
	path := filepath.Join(t.TempDir(), "config.json")
	writeConfig(t, path, `, "admin": {"listen": "127.0.0.1:0", "token_env": "STDLB_TEST_ADMIN_TOKEN"}`, a.URL)

	t.Setenv("STDLB_TEST_ADMIN_TOKEN", "")
	r := startApp(t, path)
	code, body := adminDo(t, "GET", "http://"+r.AdminAddr()+"/clients", "", "")
	if code != 403 || !strings.Contains(body["error"].(string), "STDLB_TEST_ADMIN_TOKEN") {
		t.Fatalf("no token configured: %d %v, want 403 saying which variable to set", code, body)
	}
	r.stop()

	t.Setenv("STDLB_TEST_ADMIN_TOKEN", "s3cret")
	r = startApp(t, path)
	base := "http://" + r.AdminAddr()
	for _, tok := range []string{"", "wrong", "s3cret2", "s3cre"} {
		if code, body := adminDo(t, "GET", base+"/clients", tok, ""); code != 401 || body["error"] == nil {
			t.Fatalf("token %q: %d %v, want 401 with a JSON error", tok, code, body)
		}
		if code, _ := adminDo(t, "PUT", base+"/clients/k1", tok, `{"capacity": 1, "refill_rate": 1}`); code != 401 {
			t.Fatalf("PUT with token %q: %d, want 401", tok, code)
		}
	}
	if code, body := adminDo(t, "GET", base+"/clients", "s3cret", ""); code != 200 || body["clients"] == nil {
		t.Fatalf("right token: %d %v", code, body)
	}
	if code, _ := adminDo(t, "GET", base+"/clients", "Bearer s3cret", ""); code != 401 {
		t.Fatalf("a doubled scheme: %d, want 401", code)
	}
	req, _ := http.NewRequest("GET", base+"/clients", nil)
	req.Header.Set("Authorization", "bearer s3cret") // the scheme is case-insensitive (RFC 9110)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("lower-case scheme: %v %v", resp, err)
	}
	for _, p := range []string{"/clients/..", "/clients/.", "/clients//x"} {
		req, _ := http.NewRequest("PUT", base+p, strings.NewReader(`{"capacity": 1, "refill_rate": 1}`))
		req.URL.Opaque = "//" + r.AdminAddr() + p // keep the path as it is
		req.Header.Set("Authorization", "Bearer s3cret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("PUT %s: %d %s, want a 400 JSON error", p, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	if code, _ := adminDo(t, "GET", base+"/healthz", "", ""); code != 200 {
		t.Fatalf("/healthz without a token: %d, want 200", code)
	}
	if code, body := adminDo(t, "GET", base+"/status", "", ""); code != 200 || body["backends"] == nil {
		t.Fatalf("/status on loopback without a token: %d %v", code, body)
	}
}

// TestRateLimit_EndToEnd drives the whole chain: a per-client limit set
// through the admin API is written to the clients file, applies at once to
// proxied requests, and a rejected request never reaches the backend.
func TestRateLimit_EndToEnd(t *testing.T) {
	var reached atomic.Int64
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" { // the balancer's own probes come at any time
			reached.Add(1)
		}
		io.WriteString(w, "ok")
	}))
	defer backend.Close()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	writeConfig(t, path, `, "rate_limit": {"enabled": true, "capacity": 100, "refill_rate": 0.001, "clients_file": "limits.json"},
		"admin": {"listen": "127.0.0.1:0", "token_env": "STDLB_TEST_ADMIN_TOKEN"}`, backend.URL)
	t.Setenv("STDLB_TEST_ADMIN_TOKEN", "s3cret")
	r := startApp(t, path)

	code, body := adminDo(t, "PUT", "http://"+r.AdminAddr()+"/clients/partner-7", "s3cret", `{"capacity": 2, "refill_rate": 0.5}`)
	if code != 200 {
		t.Fatalf("PUT: %d %v", code, body)
	}
	saved, err := os.ReadFile(filepath.Join(dir, "limits.json.log")) // folded into limits.json a second later
	if err != nil || !strings.Contains(string(saved), `"partner-7"`) {
		t.Fatalf("clients change log after PUT: %q, %v", saved, err)
	}

	get := func() *http.Response {
		req, _ := http.NewRequest("GET", "http://"+r.Addr()+"/", nil)
		req.Header.Set("X-API-Key", "partner-7")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for i := range 2 {
		if resp := get(); resp.StatusCode != 200 || resp.Header.Get("RateLimit") == "" {
			t.Fatalf("request %d within the client's capacity: %d, RateLimit %q", i+1, resp.StatusCode, resp.Header.Get("RateLimit"))
		}
	}
	before := reached.Load()
	resp := get()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "2" ||
		resp.Header.Get("RateLimit-Policy") != `"client";q=2;w=4` {
		t.Fatalf("over the limit: %d Retry-After %q RateLimit-Policy %q", resp.StatusCode,
			resp.Header.Get("Retry-After"), resp.Header.Get("RateLimit-Policy"))
	}
	if reached.Load() != before {
		t.Fatal("a rejected request reached the backend")
	}
	r.app.access.Flush()
	if !strings.Contains(r.access.String(), "status=429") || !strings.Contains(r.access.String(), "limited=true") ||
		strings.Contains(r.access.String(), "partner-7") {
		t.Fatalf("access log should show the 429 and the limit, never the key:\n%s", r.access)
	}
}

// TestAdmin_AuditLogNamesWhatChanged reads the balancer's own log after
// admin changes: the client as it is keyed, however the request spelled
// it, and a bulk replace as such, with what it did; API keys never in
// clear.
func TestAdmin_AuditLogNamesWhatChanged(t *testing.T) {
	r := startAdminApp(t)
	base := "http://" + r.AdminAddr()
	if code, body := adminDo(t, "PUT", base+"/clients/2001:DB8::5%2F64", "s3cret", `{"capacity": 2, "refill_rate": 1}`); code != 200 {
		t.Fatalf("PUT: %d %v", code, body)
	}
	if code, body := adminDo(t, "PUT", base+"/clients", "s3cret", `{"clients": {"partner-7": {"capacity": 2, "refill_rate": 1}}}`); code != 200 {
		t.Fatalf("bulk PUT: %d %v", code, body)
	}
	for _, want := range []string{
		`msg="admin: PUT client limits" client=2001:db8::/64 capacity=2 refill_rate=1 status=200`,
		`msg="admin: PUT client limits (bulk replace)" added=1 changed=0 removed=1 clients=1 status=200`,
	} {
		waitUntil(t, "the audit line "+want, func() bool { return strings.Contains(r.logs.String(), want) })
	}
	if strings.Contains(r.logs.String(), "partner-7") {
		t.Fatalf("an API key in clear in the log:\n%s", r.logs)
	}
}
