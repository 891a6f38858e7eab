package bucket

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// TestSweep_EvictsOnTimeWhateverWritersDo: the sweep passes over indexes
// whose due tick has not come without reading them; that must never delay a
// bucket that is due. Through a random stream of new and known clients, new
// default limits (which can make buckets full at once), listings and table
// growth, every bucket full and idle for IdleTimeout must be gone within two
// sweep cycles (one, unless a rebuild moved it behind the sweep), and no
// index may be left unread past the tick one of its buckets is due.
func TestSweep_EvictsOnTimeWhateverWritersDo(t *testing.T) {
	defaults := []Limits{{5, 0.01}, {1, 0.01}, {5, 10}, {2, 0.5}}
	for _, tc := range []struct {
		idle  time.Duration
		steps int
	}{
		{2 * time.Second, 6000}, // a cycle of 20 ticks reads an index in one go
		{time.Minute, 30000},    // 600 ticks: a few slots a tick, so a pass over an index spans ticks and rebuilds
	} {
		for seed := range uint64(3) {
			l := New(Config{Default: defaults[0], IdleTimeout: tc.idle})
			rng := rand.New(rand.NewPCG(seed, 10))
			next := 1000 // clients 0-999 come back; the others come once
			for range tc.steps {
				switch r := rng.IntN(1000); {
				case r < 300:
					l.AllowAddr(addr(rng.IntN(1000)))
				case r < 550:
					l.AllowAddr(addr(next))
					next++
				case r < 551:
					// New limits convert (and so rewrite) every bucket: a few
					// times a run, or nothing would ever be idle.
					l.SetDefault(defaults[rng.IntN(len(defaults))])
				case r < 580:
					l.SetLimits(addr(rng.IntN(next)).String(), Limits{3, 0.01})
				case r < 610:
					l.ClearLimits(addr(rng.IntN(next)).String())
				default:
					l.Tick()
					checkEvictedOnTime(t, l)
				}
			}
			if s := l.Stats(); s.Evictions < 100 {
				t.Fatalf("idle %v, seed %d: %d evicted; the test tested too little", tc.idle, seed, s.Evictions)
			}
		}
	}
}

// checkEvictedOnTime fails t if a bucket in l has been full and idle for
// IdleTimeout for more than two sweep cycles, or if an index's due tick, the
// tick before which the sweep leaves it unread, is later than the tick at
// which one of its buckets is due.
func checkEvictedOnTime(t *testing.T, l *Limiter) {
	t.Helper()
	now, p := l.now.Load(), l.def.Load()
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		x := &sh.ip
		slots := x.tab.Load().slots
		for j := range slots {
			st := slots[j].state.Load()
			if st&live == 0 {
				continue
			}
			last := now - elapsed(st, now)
			full := last + (p.cap-min(tokensOf(st), p.cap)+p.inc-1)/p.inc // first tick it is full
			due := max(last+l.idleTicks, full)
			if now > due+2*l.cycleTicks || x.due > due {
				sh.mu.Unlock()
				t.Fatalf("tick %d: %s full and idle since tick %d is still there (cycle %d ticks); its index is due at %d",
					now, slots[j].key.text(l.v6bits), due, l.cycleTicks, x.due)
			}
		}
		sh.mu.Unlock()
	}
}

// TestSweep_RebuildDuringAPassKeepsTheIndexDue: a pass that reads an index
// over several ticks can have its table rebuilt under it, here shrunk
// after evictions, so that a bucket it had not yet read lands behind it.
// The index's due tick must not then pass that bucket's.
func TestSweep_RebuildDuringAPassKeepsTheIndexDue(t *testing.T) {
	l := New(Config{Default: Limits{Capacity: 2, RefillRate: 10}, IdleTimeout: 2 * time.Second}) // full a tick after a take; idle after 20
	// A fixed layout, so that the setup below is always possible.
	l.aseed = [2]uint64{1, 3}
	sh := &l.shards[0]
	x := &sh.ip
	var as []netip.Addr // clients of shard 0's address index
	for i := 0; len(as) < 200; i++ {
		if hashAddr(l.aseed, key4(addr(i)))>>56 == 0 {
			as = append(as, addr(i))
		}
	}
	for _, a := range as[:23] { // a table of 32 slots
		l.AllowAddr(a)
	}
	ticks(l, 3*int(l.cycleTicks)) // all 23 evicted: tombstones
	if s := l.Stats(); s.Evictions != 23 || len(x.tab.Load().slots) != 32 {
		t.Fatalf("setup: %+v, table of %d", s, len(x.tab.Load().slots))
	}
	// B: a client that lands in the second half of the table, where the
	// rebuilt table of 16 slots cannot put it.
	slots := x.tab.Load().slots
	var b netip.Addr
	pos := -1
	for _, a := range as[23:] {
		h := hashAddr(l.aseed, key4(a))
		i := int(h & 31)
		for slots[i].state.Load() != 0 {
			i = (i + 1) & 31
		}
		if i >= 16 {
			b, pos = a, i
			break
		}
	}
	if pos < 0 {
		t.Fatal("setup: no client lands in the second half")
	}
	l.AllowAddr(b) // 24 of 32 slots used: no rebuild yet
	ticks(l, 5)
	// A pass that has read the slots before B's, by hand; then a new client
	// rebuilds the table; then the pass ends.
	l.maintMu.Lock()
	defer l.maintMu.Unlock()
	now := l.now.Load()
	l.m.shard, l.m.part, l.m.pos = 0, 0, 0
	sh.mu.Lock()
	x.due = 0 // as if a bucket were due: the pass reads
	budget := uint64(pos)
	sweepIndex(l, x, &budget, now)
	sh.mu.Unlock()
	for _, a := range as[23:] {
		if a != b && !l.HasLimits(KeyIP, a.String()) {
			l.AllowAddr(a) // a new client: a 25th slot is over 3/4, so a rebuild, to 16
			break
		}
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if len(x.tab.Load().slots) != 16 {
		t.Fatalf("setup: table of %d after the rebuild, want 16", len(x.tab.Load().slots))
	}
	budget = 1 << 20
	if !sweepIndex(l, x, &budget, now) {
		t.Fatal("the pass did not end")
	}
	k := key4(b)
	h := hashAddr(l.aseed, k)
	_, st := x.tab.Load().find(h, k)
	bDue := now - elapsed(st, now) + l.idleTicks
	if x.due > bDue {
		t.Fatalf("after the pass the index is due at tick %d, but %s, not read by it, is due at %d", x.due, b, bDue)
	}
}
