package main

import (
	"testing"
	"time"
)

func TestLimiterRates_OverTheLastMinute(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	var r limiterRates
	if w, _, _ := r.rates(decisions{at: at(0)}); w != 0 {
		t.Fatalf("window %v without a sample, want 0", w)
	}
	r.add(decisions{at: at(0)})
	if w, _, _ := r.rates(decisions{at: at(0).Add(500 * time.Millisecond), admitted: 5}); w != 0 {
		t.Fatalf("window %v half a second after the first sample, want none", w)
	}
	for i := 1; i <= 20; i++ { // 100 s, 10 admitted and 2 rejected a second
		r.add(decisions{at: at(5 * i), admitted: uint64(50 * i), rejected: uint64(10 * i)})
	}
	// The oldest sample kept is from 40 s (12 intervals before 100 s).
	w, adm, rej := r.rates(decisions{at: at(103), admitted: 1030, rejected: 206})
	if w != 63 || adm != 10 || rej != 2 {
		t.Fatalf("rates = %v s, %v/s admitted, %v/s rejected; want 63 s, 10, 2", w, adm, rej)
	}
}
