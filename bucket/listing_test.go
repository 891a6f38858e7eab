package bucket

import (
	"fmt"
	"testing"
)

// TestLimiter_ListedClientsKeepTheirLimitsWhenFull: with the table full
// of clients that cannot be evicted, listed clients arriving afterwards are
// judged by their own limits, strict or generous, never by the overflow
// bucket's default.
func TestLimiter_ListedClientsKeepTheirLimitsWhenFull(t *testing.T) {
	l := New(Config{Default: Limits{Capacity: 1, RefillRate: 0.001}, MaxClients: 10})
	l.SetLimits("strict", Limits{Capacity: 2, RefillRate: 0.001})
	l.SetLimits("partner", Limits{Capacity: 50, RefillRate: 0.001})
	for i := range 30 { // 10 fill the table, each with its token spent; 20 overflow
		l.Take(fmt.Sprint("flood-", i))
	}
	if s := l.Stats(); s.Overflowed == 0 {
		t.Fatalf("the table never filled: %+v", s)
	}
	for key, want := range map[string]int{"strict": 2, "partner": 50} {
		admitted := 0
		for range 60 {
			if d := l.Take(key); d.Allowed {
				admitted++
			} else if d.Limit != int64(want) {
				t.Fatalf("%s refused with limit %d, want its own %d", key, d.Limit, want)
			}
		}
		if admitted != want {
			t.Errorf("listed %s with capacity %d after the table filled: %d of 60 admitted", key, want, admitted)
		}
	}
}

func TestLimiter_SetLimitsAppliesAtOnce(t *testing.T) {
	l := New(Config{Default: Limits{Capacity: 10, RefillRate: 0.001}})
	l.Allow("c") // 9 left
	l.SetLimits("c", Limits{Capacity: 3, RefillRate: 0.001})
	if d := l.Take("c"); d.Limit != 3 || d.Remaining != 2 || !d.Override {
		t.Fatalf("after lowering capacity to 3: %+v, want limit 3, 2 left", d)
	}
	l.SetLimits("c", Limits{Capacity: 20, RefillRate: 0.001})
	if d := l.Take("c"); d.Limit != 20 || d.Remaining != 1 {
		t.Fatalf("after raising capacity to 20: %+v, want the 2 tokens kept, 1 left", d)
	}
	l.ClearLimits("c")
	if d := l.Take("c"); d.Limit != 10 || d.Remaining != 0 || d.Override {
		t.Fatalf("after ClearLimits: %+v, want the default, 0 left", d)
	}
	if got := l.Stats().Overrides; got != 0 {
		t.Fatalf("Overrides = %d, want 0", got)
	}
}

func TestLimiter_SetDefaultAppliesAtOnce(t *testing.T) {
	l := New(Config{Default: Limits{Capacity: 10, RefillRate: 0.001}})
	l.SetLimits("own", Limits{Capacity: 10, RefillRate: 0.001})
	l.Allow("c")
	l.SetDefault(Limits{Capacity: 4, RefillRate: 0.001})
	l.SetDefault(Limits{Capacity: 10, RefillRate: 0.001})
	if d := l.Take("c"); d.Limit != 10 || d.Remaining != 3 {
		t.Fatalf("after the default went to 4 and back: %+v, want 3 left", d)
	}
	l.SetDefault(Limits{Capacity: 4, RefillRate: 0.001})
	if d := l.Take("own"); d.Limit != 10 || d.Remaining != 9 {
		t.Fatalf("a client with its own limits: %+v, want untouched by SetDefault", d)
	}
	if d := l.Take("new"); d.Limit != 4 || d.Remaining != 3 {
		t.Fatalf("a new client: %+v, want the new default", d)
	}
}

func TestLimiter_SetOverridesReplacesTheSet(t *testing.T) {
	l := New(Config{Default: Limits{Capacity: 5, RefillRate: 1}})
	l.SetOverrides(map[string]Limits{"a": {1, 1}, "b": {2, 1}})
	l.Allow("a")
	l.SetOverrides(map[string]Limits{"b": {3, 1}, "c": {7, 1}})
	for key, want := range map[string]int64{"a": 5, "b": 3, "c": 7, "d": 5} {
		if d := l.Take(key); d.Limit != want {
			t.Errorf("%s: Limit = %d, want %d", key, d.Limit, want)
		}
	}
	if got := l.Stats().Overrides; got != 2 {
		t.Fatalf("Overrides = %d, want 2", got)
	}
}

func TestLimiter_KeyKindsAreSeparate(t *testing.T) {
	l := New(Config{Default: Limits{Capacity: 1, RefillRate: 0.001}})
	if !l.TakeKind(KeyAPI, "192.0.2.1").Allowed {
		t.Fatal("API key 192.0.2.1 refused")
	}
	if !l.Allow("192.0.2.1") {
		t.Fatal("IP 192.0.2.1 refused: an API key spent its tokens")
	}
}
