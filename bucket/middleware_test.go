package bucket

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

// newGate returns a Gate whose client IP is always ip.
func newGate(lim Limits, ip string) *Gate {
	return &Gate{
		Limiter:   New(Config{Default: lim}),
		KeyHeader: "X-API-Key",
		MaxKeyLen: 16,
		ClientIP:  func(*http.Request) netip.Addr { return netip.MustParseAddr(ip) },
	}
}

func TestGate_ClientKey(t *testing.T) {
	tests := []struct {
		name       string
		keyHeader  string
		header     []string // values of X-API-Key
		wantKind   KeyKind
		wantKey    string
		wantStatus int
	}{
		{"API key present", "X-API-Key", []string{"k-123"}, KeyAPI, "k-123", 0},
		{"header name in any case", "x-api-key", []string{"k-123"}, KeyAPI, "k-123", 0},
		{"no API key: the IP", "X-API-Key", nil, KeyIP, "2001:db8::7", 0},
		{"empty API key: the IP", "X-API-Key", []string{""}, KeyIP, "2001:db8::7", 0},
		{"at the length bound", "X-API-Key", []string{strings.Repeat("k", 16)}, KeyAPI, strings.Repeat("k", 16), 0},
		{"over-long API key", "X-API-Key", []string{strings.Repeat("k", 17)}, KeyAPI, "", http.StatusBadRequest},
		{"keyed by IP only", "", []string{"k-123"}, KeyIP, "2001:db8::7", 0},
		// HTTP/2 may carry spaces and tabs around a value, which the backend
		// client trims (found by an attacker's review: each padding was a
		// fresh bucket for one key). Other spaces (U+00A0) reach the
		// backend as they are, and so make another key.
		{"spaces and tabs around the key", "X-API-Key", []string{" \tk-123\t "}, KeyAPI, "k-123", 0},
		{"only spaces: the IP", "X-API-Key", []string{"  "}, KeyIP, "2001:db8::7", 0},
		{"a no-break space is part of the key", "X-API-Key", []string{"k-123\u00a0"}, KeyAPI, "k-123\u00a0", 0},
		{"a list on one line", "X-API-Key", []string{"k-123, k-456"}, KeyAPI, "", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGate(Limits{Capacity: 5, RefillRate: 1}, "2001:db8::7")
			g.KeyHeader = tt.keyHeader
			called := false
			next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true })
			r := httptest.NewRequest("GET", "/", nil)
			for _, v := range tt.header {
				r.Header.Add("X-API-Key", v)
			}
			w := httptest.NewRecorder()
			v := g.Check(w, r)
			key := v.Key
			if v.Kind == KeyIP {
				key = v.Addr.String()
			}
			if v.Kind != tt.wantKind || key != tt.wantKey || v.Status != tt.wantStatus {
				t.Fatalf("Check = %+v, want kind %v key %q status %d", v, tt.wantKind, tt.wantKey, tt.wantStatus)
			}
			g.Wrap(next).ServeHTTP(httptest.NewRecorder(), r)
			if called != (tt.wantStatus == 0) {
				t.Fatalf("next called = %v, want %v", called, tt.wantStatus == 0)
			}
			if tt.wantStatus == http.StatusBadRequest {
				var body struct{ Error string }
				if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != 400 || !strings.Contains(body.Error, "X-API-Key header") {
					t.Fatalf("answer %d %q (%v), want 400 with a JSON error", w.Code, w.Body, err)
				}
			}
		})
	}
}

func TestGate_RejectsWith429(t *testing.T) {
	g := newGate(Limits{Capacity: 1, RefillRate: 0.5}, "192.0.2.1") // a token every 2s
	calls := 0
	h := g.Wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { calls++ }))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if calls != 1 {
		t.Fatalf("next called %d times, want 1: the rejected request went through", calls)
	}
	want := map[string]string{
		"Retry-After":      "2",
		"Ratelimit-Policy": `"default";q=1;w=2`,
		"Ratelimit":        `"default";r=0;t=2`,
		"Content-Type":     "application/json",
	}
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429", w.Code)
	}
	for k, v := range want {
		if got := w.Header().Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	var body map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", w.Body, err)
	}
	if body["error"] != "rate limit exceeded" || body["retry_after"] != 2.0 || len(body) != 2 {
		t.Fatalf("body = %v, want error and retry_after 2", body)
	}
}

func TestGate_RetryAfterIsAtLeastOneSecond(t *testing.T) {
	g := newGate(Limits{Capacity: 1, RefillRate: 100}, "192.0.2.1") // refills within a tick
	g.Check(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	w := httptest.NewRecorder()
	if v := g.Check(w, httptest.NewRequest("GET", "/", nil)); v.Status != 429 {
		t.Fatalf("Check = %+v, want 429", v)
	}
	if got := w.Header().Get("Retry-After"); got != "1" {
		t.Fatalf("Retry-After = %q, want 1", got)
	}
}

func TestGate_HeadersOnAdmit(t *testing.T) {
	for _, on := range []bool{false, true} {
		g := newGate(Limits{Capacity: 10, RefillRate: 2}, "192.0.2.1")
		g.Limiter.SetLimits("k-1", Limits{Capacity: 4, RefillRate: 2})
		g.HeadersOnAdmit = on
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("X-API-Key", "k-1")
		w := httptest.NewRecorder()
		g.Check(w, r)
		policy, state := w.Header().Get("RateLimit-Policy"), w.Header().Get("RateLimit")
		if !on && (policy != "" || state != "") {
			t.Fatalf("HeadersOnAdmit false: got %q, %q", policy, state)
		}
		if on && (policy != `"client";q=4;w=2` || state != `"client";r=3;t=1`) {
			t.Fatalf("HeadersOnAdmit true: got %q, %q", policy, state)
		}
	}
}

func TestGate_AdmittedPathAllocatesNothing(t *testing.T) {
	g := newGate(Limits{Capacity: MaxCapacity, RefillRate: 1}, "192.0.2.1")
	for _, key := range []string{"", "k-1"} {
		r := httptest.NewRequest("GET", "/", nil)
		if key != "" {
			r.Header.Set("X-API-Key", key)
		}
		w := &discardWriter{h: http.Header{}}
		g.Check(w, r)
		allocs := testing.AllocsPerRun(1000, func() {
			if !g.Check(w, r).Allowed {
				t.Fatal("refused")
			}
		})
		if allocs != 0 {
			t.Errorf("key %q: %v allocations per admitted request, want 0", key, allocs)
		}
	}
}

func TestKeyTag(t *testing.T) {
	a, b := KeyTag("sk-live-1"), KeyTag("sk-live-2")
	if len(a) != 8 || a == b || a != KeyTag("sk-live-1") || strings.Contains(a, "sk") {
		t.Fatalf("KeyTag = %q, %q: want 8 stable hex digits that differ", a, b)
	}
	v := Verdict{Kind: KeyAPI, Key: "sk-live-1"}
	if v.LogKey() != a {
		t.Fatalf("LogKey = %q, want the tag %q", v.LogKey(), a)
	}
	if v := (Verdict{Kind: KeyIP, Addr: netip.MustParseAddr("192.0.2.1")}); v.LogKey() != "192.0.2.1" {
		t.Fatalf("LogKey of an IP = %q", v.LogKey())
	}
}

// TestGate_UnlistedKeysByIP: with UnlistedKeysByIP, a client that sends a
// fresh made-up API key with every request gets no fresh bucket: it is
// limited by its IP, and the table does not grow; a listed key stands alone.
// Without it, every key has its own bucket, as the contract says.
func TestGate_UnlistedKeysByIP(t *testing.T) {
	for _, byIP := range []bool{true, false} {
		g := newGate(Limits{Capacity: 3, RefillRate: 1}, "198.51.100.9")
		g.UnlistedKeysByIP = byIP
		g.Limiter.SetLimits("listed", Limits{Capacity: 10, RefillRate: 1})
		admitted := 0
		for i := range 10 {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("X-API-Key", fmt.Sprintf("made-up-%d", i))
			if v := g.Check(httptest.NewRecorder(), r); v.Allowed {
				admitted++
				if byIP && (v.Kind != KeyIP || v.Addr.String() != "198.51.100.9") {
					t.Fatalf("unlisted key verdict %+v, want keyed by IP", v)
				}
			}
		}
		want, clients := 10, 10
		if byIP {
			want, clients = 3, 1
		}
		if st := g.Limiter.Stats(); admitted != want || st.Clients != clients || st.Admitted != uint64(want) {
			t.Fatalf("UnlistedKeysByIP=%v: 10 invented keys from one IP: admitted %d, %d clients tracked, Stats.Admitted %d; want %d, %d, %d",
				byIP, admitted, st.Clients, st.Admitted, want, clients, want)
		}
		for i := range 10 {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("X-API-Key", "listed")
			if !g.Check(httptest.NewRecorder(), r).Allowed {
				t.Fatalf("UnlistedKeysByIP=%v: listed key refused at request %d of its 10", byIP, i+1)
			}
		}
	}
}

// TestLimiter_ListedIPIsNotAnAPIKey: limits given to an IP address apply
// to that address only; sending the address as an API key borrows nothing.
func TestLimiter_ListedIPIsNotAnAPIKey(t *testing.T) {
	l := New(Config{Default: Limits{Capacity: 2, RefillRate: 0.001}})
	l.SetLimits("2001:DB8::1", Limits{Capacity: 50, RefillRate: 1})
	if d := l.TakeKind(KeyIP, "2001:db8::1"); !d.Override || d.Limit != 50 {
		t.Fatalf("the listed address (canonical form): %+v, want its own limit of 50", d)
	}
	if d := l.TakeKind(KeyAPI, "2001:db8::1"); d.Override || d.Limit != 2 {
		t.Fatalf("the address sent as an API key: %+v, want the default limit of 2", d)
	}
	l.SetLimits("partner-7", Limits{Capacity: 9, RefillRate: 1})
	if d := l.TakeKind(KeyAPI, "partner-7"); !d.Override || d.Limit != 9 {
		t.Fatalf("an API key's own limits: %+v", d)
	}
}
