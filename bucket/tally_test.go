package bucket

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func TestLimiter_RejectionSummaryOncePerMinute(t *testing.T) {
	l, logs := newLogged(Config{Default: Limits{Capacity: 1, RefillRate: 0.001}})
	const secret = "sk-live-do-not-log-me"
	for range 6 {
		l.TakeKind(KeyAPI, secret)
	}
	for range 4 {
		l.Allow("198.51.100.9")
	}
	ticks(l, int(l.minuteTicks)-1)
	if got := logs.lines("rejections"); len(got) != 0 {
		t.Fatalf("summary before the minute was up: %q", got)
	}
	l.Tick()
	got := logs.lines("rejections")
	if len(got) != 1 {
		t.Fatalf("want one summary line, got %q", got)
	}
	for _, want := range []string{"rejected=8", "clients=2", "key:" + KeyTag(secret) + "=5", "ip:198.51.100.9=3"} {
		if !strings.Contains(got[0], want) {
			t.Errorf("summary %q lacks %q", got[0], want)
		}
	}
	if strings.Contains(got[0], secret) {
		t.Fatalf("summary logs the API key verbatim: %q", got[0])
	}
	ticks(l, int(l.minuteTicks))
	if got := logs.lines("rejections"); len(got) != 1 {
		t.Fatalf("a summary for a quiet minute: %q", got)
	}
}

// TestLimiter_RejectionSummaryNamesTheHeavyClient: many clients rejected
// once each and one rejected often; the summary's total is exact and it
// names the heavy client first, though it keeps no table of all clients.
func TestLimiter_RejectionSummaryNamesTheHeavyClient(t *testing.T) {
	l, logs := newLogged(Config{Default: Limits{Capacity: 1, RefillRate: 0.001}})
	heavy := netip.MustParseAddr("198.51.100.77")
	l.AllowAddr(heavy)
	for i := range 1500 {
		k := fmt.Sprint("c", i)
		l.TakeKind(KeyAPI, k)
		l.TakeKind(KeyAPI, k) // rejected
		l.AllowAddr(heavy)    // rejected
	}
	ticks(l, int(l.minuteTicks))
	got := logs.lines("rejections")
	if len(got) != 1 || !strings.Contains(got[0], "rejected=3000 ") || !strings.Contains(got[0], `top="ip:198.51.100.77=`) {
		t.Fatalf("want 3000 rejections with 198.51.100.77 named first, got %q", got)
	}
	ticks(l, int(l.minuteTicks))
	if got := logs.lines("rejections"); len(got) != 1 {
		t.Fatalf("a summary for a quiet minute: %q", got)
	}
}

func TestLimiter_StatsCounts(t *testing.T) {
	l := New(Config{Default: Limits{Capacity: 2, RefillRate: 0.001}})
	for range 5 {
		l.Allow("c")
	}
	if s := l.Stats(); s.Admitted != 2 || s.Rejected != 3 || s.Clients != 1 {
		t.Fatalf("Stats = %+v, want 2 admitted, 3 rejected, 1 client", s)
	}
}

// TestLimiter_StatsCountEveryDecisionOfManyGoroutines: the counters are
// striped by goroutine, and their sums are exact however the goroutines
// share the stripes.
func TestLimiter_StatsCountEveryDecisionOfManyGoroutines(t *testing.T) {
	l := New(Config{Default: Limits{Capacity: 50, RefillRate: 10}})
	var admitted, rejected atomic.Uint64
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 2000 {
				key := netip.AddrFrom4([4]byte{10, 0, byte(g), byte(i % 7)})
				if l.AllowAddr(key) {
					admitted.Add(1)
				} else {
					rejected.Add(1)
				}
				if i%500 == 0 {
					l.Tick()
				}
			}
		})
	}
	wg.Wait()
	if s := l.Stats(); s.Admitted != admitted.Load() || s.Rejected != rejected.Load() || rejected.Load() == 0 {
		t.Fatalf("Stats = %d admitted, %d rejected; the goroutines saw %d and %d", s.Admitted, s.Rejected, admitted.Load(), rejected.Load())
	}
}

// TestLimiter_RejectionSummaryAddsUpAClientAcrossStripes: goroutines on
// different stripes rejecting one client name it once, with the sum.
func TestLimiter_RejectionSummaryAddsUpAClientAcrossStripes(t *testing.T) {
	l, logs := newLogged(Config{Default: Limits{Capacity: 1, RefillRate: 0.001}})
	a := netip.MustParseAddr("198.51.100.3")
	l.AllowAddr(a)
	k := keyOf(a, l.v6bits)
	h := hashAddr(l.aseed, k)
	s, _ := l.shards[h>>56].ip.tab.Load().find(h, k)
	for i, n := range []int{3, 4, 5} { // as three goroutines on three stripes would
		tl := &l.stripes[i*7].tally
		for range n {
			count(tl, &tl.ip, false, h, s)
		}
	}
	ticks(l, int(l.minuteTicks))
	got := logs.lines("rejections")
	if len(got) != 1 || !strings.Contains(got[0], `rejected=12 clients=1 top="ip:198.51.100.3=12" others=0`) {
		t.Fatalf("want one client named once with 12 rejections, got %q", got)
	}
}
