package main

// End-to-end tests of the admin listener's guards, through the whole app.

import (
	"strings"
	"testing"
)

// TestAdmin_RefusesForeignHostOnLoopback: DNS rebinding sends a foreign
// Host to the loopback admin listener; it is refused, loopback names are not.
// Refused tokens are logged once, not per request.
func TestAdmin_RefusesForeignHostOnLoopback(t *testing.T) {
	t.Setenv("STDLB_TEST_ADMIN_TOKEN", "s3cret")
	r := startAbuseApp(t, `, "admin": {"listen": "127.0.0.1:0", "token_env": "STDLB_TEST_ADMIN_TOKEN"}`, backendNamed(t, "a").URL)
	for host, want := range map[string]int{"evil.example": 403, "evil.example:9090": 403, "localhost": 200,
		"127.0.0.1:9090": 200, "[::1]:9090": 200, "LOCALHOST.": 200} {
		resp, _ := rawExchange(t, r.AdminAddr(), "GET /status HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
		if resp.StatusCode != want {
			t.Errorf("Host %s: %d, want %d", host, resp.StatusCode, want)
		}
	}
	for range 20 {
		adminDo(t, "GET", "http://"+r.AdminAddr()+"/clients", "wrong", "")
	}
	if n := strings.Count(r.logs.String(), "missing or wrong token"); n != 1 {
		t.Fatalf("20 refused tokens logged %d times, want once", n)
	}
}
