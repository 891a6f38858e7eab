package bucket

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// logBuf collects log output from any goroutine.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *logBuf) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *logBuf) lines(substr string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for line := range strings.Lines(w.b.String()) {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}

func newLogged(cfg Config) (*Limiter, *logBuf) {
	w := &logBuf{}
	cfg.Logger = slog.New(slog.NewTextHandler(w, nil))
	return New(cfg), w
}

// tableSize counts the live buckets in l's tables (listed clients apart),
// to check the clients counter.
func tableSize(l *Limiter) int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += countLive(&sh.ip) + countLive(&sh.str[KeyIP]) + countLive(&sh.str[KeyAPI])
		sh.mu.Unlock()
	}
	return n
}

func countLive[K comparable](x *index[K]) int {
	n := 0
	t := x.tab.Load()
	for i := range t.slots {
		if t.slots[i].state.Load()&live != 0 {
			n++
		}
	}
	return n
}

func ticks(l *Limiter, n int) {
	for range n {
		l.Tick()
	}
}

func TestLimiter_EvictsFullIdleBuckets(t *testing.T) {
	// Refill fills a bucket in one tick; idle for 10 ticks means evicted.
	l := New(Config{Default: Limits{Capacity: 1, RefillRate: 10}, IdleTimeout: time.Second})
	l.SetLimits("slow", Limits{Capacity: 1, RefillRate: 0.001}) // stays below full
	for i := range 100 {
		l.Allow(fmt.Sprint("idle-", i))
	}
	l.Allow("slow")
	for range 30 {
		l.Tick()
		l.Allow("busy")
	}
	if got := l.Stats().Clients; got != 1 {
		t.Fatalf("Clients = %d after 30 ticks, want 1 (busy; slow is listed, outside the count)", got)
	}
	if got, want := l.Stats().Evictions, uint64(100); got != want {
		t.Fatalf("Evictions = %d, want %d", got, want)
	}
	if got := tableSize(l); got != 1 {
		t.Fatalf("table holds %d buckets, want 1", got)
	}
	if l.Allow("slow") {
		t.Fatal("slow was admitted: its bucket was evicted while not full")
	}
}

func TestLimiter_NoEvictionBeforeIdleTimeout(t *testing.T) {
	l := New(Config{Default: Limits{Capacity: 1, RefillRate: 10}, IdleTimeout: time.Second})
	l.Allow("a")
	ticks(l, 9) // full after one, idle 9 of the 10 ticks needed
	if got := l.Stats().Clients; got != 1 {
		t.Fatalf("Clients = %d, want 1: evicted before idle_timeout", got)
	}
}

func TestLimiter_OverflowWhenFullAndNothingEvictable(t *testing.T) {
	l, logs := newLogged(Config{Default: Limits{Capacity: 1, RefillRate: 0.001}, MaxClients: 10})
	for i := range 10 {
		if d := l.Take(fmt.Sprint("c", i)); !d.Allowed || d.Shared {
			t.Fatalf("client %d: %+v, want admitted on its own bucket", i, d)
		}
	}
	// The table is full of half-used buckets: new clients share one bucket.
	if d := l.Take("new-1"); !d.Allowed || !d.Shared {
		t.Fatalf("new-1: %+v, want admitted by the shared overflow bucket", d)
	}
	for i := range 5 {
		if d := l.Take(fmt.Sprint("new-x", i)); d.Allowed || !d.Shared {
			t.Fatalf("new-x%d: %+v, want rejected by the spent overflow bucket", i, d)
		}
	}
	s := l.Stats()
	if s.Clients != 10 || s.Overflowed != 6 || tableSize(l) != 10 {
		t.Fatalf("Stats = %+v, table %d; want 10 clients, 6 overflowed", s, tableSize(l))
	}
	if got := logs.lines("client table full"); len(got) != 0 {
		t.Fatalf("logged per request: %q", got)
	}
	l.Tick()
	l.Take("new-2")
	l.Tick()
	if got := logs.lines("client table full"); len(got) != 1 || !strings.Contains(got[0], "overflowed=6") {
		t.Fatalf("want one table-full line counting 6 requests, got %q", got)
	}
	l.Take("new-3")
	ticks(l, int(l.minuteTicks)-2)
	if got := logs.lines("client table full"); len(got) != 1 {
		t.Fatalf("logged again within a minute: %q", got)
	}
	ticks(l, 1)
	if got := logs.lines("client table full"); len(got) != 2 || !strings.Contains(got[1], "overflowed=2") {
		t.Fatalf("want a second line a minute later counting 2, got %q", got)
	}
	// Known clients keep their own buckets throughout.
	if d := l.Take("c0"); d.Shared {
		t.Fatal("a known client was sent to the overflow bucket")
	}
}

func TestLimiter_FullTableEvictsAFullBucketForANewClient(t *testing.T) {
	l := New(Config{Default: Limits{Capacity: 1, RefillRate: 10}, MaxClients: 2})
	l.Allow("a")
	l.Allow("b")
	l.Tick() // both full again: evicting either loses nothing
	if d := l.Take("c"); d.Shared || !d.Allowed {
		t.Fatalf("c: %+v, want its own bucket in place of an evicted full one", d)
	}
	if s := l.Stats(); s.Clients != 2 || s.Evictions != 1 {
		t.Fatalf("Stats = %+v, want 2 clients, 1 eviction", s)
	}
}

func TestLimiter_FloodOfDistinctKeysStaysBounded(t *testing.T) {
	const max = 500
	l := New(Config{Default: Limits{Capacity: 2, RefillRate: 20}, MaxClients: max, IdleTimeout: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	tick := make(chan time.Time)
	wg.Go(func() { l.RunTicks(ctx, tick) })
	var flood sync.WaitGroup
	for g := range 8 {
		flood.Go(func() {
			for i := range 3000 {
				l.Allow(fmt.Sprintf("%d-%d", g, i))
				if n := l.Stats().Clients; n > max {
					t.Errorf("Clients = %d, over the bound %d", n, max)
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { flood.Wait(); close(done) }()
loop:
	for {
		select {
		case tick <- time.Time{}: // keep refilling and evicting meanwhile
		case <-done:
			break loop
		}
	}
	cancel()
	wg.Wait()
	if n, size := l.Stats().Clients, tableSize(l); n > max || n != size {
		t.Fatalf("Clients = %d, table %d: want equal and at most %d", n, size, max)
	}
}

func TestLimiter_RunTicksStepsInjectedTicks(t *testing.T) {
	l := New(Config{Default: Limits{Capacity: 100, RefillRate: 10}}) // 1 token a tick
	drain(l, "c")
	ctx, cancel := context.WithCancel(t.Context())
	tick := make(chan time.Time)
	errc := make(chan error, 1)
	go func() { errc <- l.RunTicks(ctx, tick) }()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// In ms: 500 makes up for two missed fires; a stall of 10s is made up
	// for only up to 16 ticks.
	for _, at := range []time.Duration{0, 100, 200, 500, 600, 10_600} {
		tick <- t0.Add(at * time.Millisecond)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("RunTicks = %v, want context.Canceled", err)
	}
	if got := drain(l, "c"); got != 7+16 {
		t.Fatalf("%d tokens after ticks worth 23, want 23", got)
	}
}

func TestLimiter_RunReturnsWhenContextEnds(t *testing.T) {
	l := New(Config{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := l.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
}

func TestLimiter_InstancesShareTheLimits(t *testing.T) {
	l := New(Config{Default: Limits{Capacity: 10, RefillRate: 4}, RefillInterval: time.Second, Instances: 3})
	l.SetLimits("vip", Limits{Capacity: 30, RefillRate: 30})
	admitted := func(key string) int {
		n := 0
		for l.Allow(key) {
			n++
		}
		return n
	}
	if n := admitted("10.0.0.1"); n != 4 { // ceil(10/3)
		t.Fatalf("default capacity 10 over 3 instances: admitted %d, want 4", n)
	}
	if n := admitted("vip"); n != 10 {
		t.Fatalf("override capacity 30 over 3 instances: admitted %d, want 10", n)
	}
	l.Tick() // one second: 4/3 tokens for the default, 10 for vip
	if n := admitted("10.0.0.1"); n != 1 {
		t.Fatalf("after one second at 4/s shared by 3: admitted %d, want 1", n)
	}
	if n := admitted("vip"); n != 10 {
		t.Fatalf("vip after one second at 30/s shared by 3: admitted %d, want 10", n)
	}
}
