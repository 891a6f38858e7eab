package bucket

import (
	"fmt"
	"strings"
	"testing"
	"time"
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

// TestLimiter_TenSecondsAdmitCapacityPlusRateTimesTen: a client asking
// without pause for 10 s gets exactly C + R x 10, for rates that fill a
// bucket in one tick, in several, and in less than one.
func TestLimiter_TenSecondsAdmitCapacityPlusRateTimesTen(t *testing.T) {
	for _, lim := range []Limits{{100, 50}, {5, 50}, {1, 0.5}, {30, 3.3}, {1000, 999}} {
		l := New(Config{Default: lim})
		admitted := drain(l, "greedy")
		for range 100 { // 10 s of 100ms ticks
			l.Tick()
			admitted += drain(l, "greedy")
		}
		if want := int(float64(lim.Capacity) + lim.RefillRate*10); admitted != want {
			t.Errorf("%+v: %d admitted in 10 s, want %d", lim, admitted, want)
		}
	}
}

func TestLimits_ValidateForRefusesWhatCannotBeHonoured(t *testing.T) {
	tests := []struct {
		lim       Limits
		interval  time.Duration
		instances int
		want      string
	}{
		{Limits{5, 50}, 100 * time.Millisecond, 1, ""},
		{Limits{1, 50}, 100 * time.Millisecond, 1, "capacity: 1 is less than one refill (refill_rate 50 x refill_interval 100ms = 5 tokens), so the bucket would drop the surplus and admit only about 10 a second: raise capacity to at least 5 or shorten rate_limit.refill_interval to at most 20ms"},
		{Limits{1, 50}, 20 * time.Millisecond, 1, ""},
		{Limits{3, 50}, 100 * time.Millisecond, 2, "capacity: 3 is less than one refill"},
		{Limits{1, 1e-6}, 100 * time.Millisecond, 1, "refill_rate: 1e-06 is less than one millionth of a token per refill_interval (100ms); the smallest rate is 1e-05 a second"},
	}
	for _, tt := range tests {
		got := errString(tt.lim.ValidateFor(tt.interval, tt.instances))
		if tt.want == "" && got != "" || !strings.HasPrefix(got, tt.want) {
			t.Errorf("%+v at %v over %d: %q, want %q", tt.lim, tt.interval, tt.instances, got, tt.want)
		}
	}
}
