package bucket

import (
	"context"
	"log/slog"
	"math"
	"time"
)

// Maintenance bounds.
const (
	maxCycleTicks = 1 << 16 // every slot is swept within this many ticks, so tick differences never wrap
	maxCatchUp    = 16      // ticks one late ticker fire may make up for
	reclaimProbe  = 64      // slots looked at for room when the table is full
)

// maint is the state of the maintenance loop, guarded by Limiter.maintMu.
type maint struct {
	shard, part, pos int                // where the sweep goes on: shard, index (ip, str[0], str[1]), slot
	skipped          bool               // the pass over this index left slots unread: its due tick had not come
	passDue          uint64             // the least due of the buckets this pass has read
	debt             uint64             // slots the sweep owes, in cycleTicks-ths of a slot
	sinceSummary     uint64             // ticks since the last rejection summary
	rejSeen          [numStripes]uint64 // each stripe's rejected count at the last summary
	ovLogged         bool               // the current table-full episode has been logged
	ovLast           uint64             // tick of the last table-full log line
	ovSeen           uint64             // overflowed at that line
}

// Run refills the buckets every refill interval with the limiter's one
// time.Ticker, evicts idle buckets and logs the rejection summary, until ctx
// ends; it returns ctx.Err().
func (l *Limiter) Run(ctx context.Context) error {
	t := time.NewTicker(l.interval)
	defer t.Stop()
	return l.RunTicks(ctx, t.C)
}

// RunTicks is Run driven by ticks instead of a ticker, so tests can step
// through exact ticks. Each receive is one tick, plus up to 15 more when the
// times received show that earlier fires were missed (the receiver was
// late); a longer stall is not made up for, which errs on the strict side.
// It returns ctx.Err() when ctx ends, nil when ticks is closed.
func (l *Limiter) RunTicks(ctx context.Context, ticks <-chan time.Time) error {
	var base time.Time // time of the first tick counted from
	var counted int64  // ticks since base
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case t, ok := <-ticks:
			if !ok {
				return nil
			}
			n := int64(1)
			if base.IsZero() || t.Before(base) {
				base, counted = t, 0
			} else {
				counted++
				behind := (t.Sub(base) - time.Duration(counted)*l.interval) / l.interval
				if behind >= maxCatchUp {
					n, base, counted = maxCatchUp, t, 0
				} else if behind > 0 {
					n += int64(behind)
					counted += int64(behind)
				}
			}
			l.advance(uint64(n))
		}
	}
}

// Tick is one refill step, what each ticker fire does: it advances the
// limiter's clock by one tick, which refills every bucket at once (lazily,
// when it is next used), and sweeps a bounded slice of the table.
func (l *Limiter) Tick() { l.advance(1) }

type notice struct {
	level slog.Level
	msg   string
	attrs []slog.Attr
}

func (l *Limiter) advance(n uint64) {
	l.maintMu.Lock()
	now := l.now.Add(n)
	// Visit slots at the pace that visits every one within cycleTicks: at the
	// defaults (10m idle timeout, 100ms ticks) a million clients in about two
	// million slots cost some 350 slots a tick.
	l.m.debt += uint64(l.slots.Load()) * n
	l.sweep(l.m.debt/l.cycleTicks, now)
	l.m.debt %= l.cycleTicks
	if now%(maxCycleTicks) < n {
		// The overflow bucket belongs to no table; keep its stamp fresh too.
		refresh(&l.over.state, l.def.Load(), now)
	}
	notes := l.periodic(now, n)
	l.maintMu.Unlock()
	for _, nt := range notes {
		l.log.LogAttrs(context.Background(), nt.level, nt.msg, nt.attrs...)
	}
}

// sweep passes over budget slots from where the last sweep stopped, one
// shard's mutex at a time: it evicts buckets full and idle for IdleTimeout
// and rewrites those not written for staleTicks, so that no tick difference
// can wrap. An index whose due tick has not come is passed over at the same
// pace without reading a slot: with clients that are idle (not yet due for
// eviction, or slowly refilling) a tick costs a few comparisons, not the
// hundreds of cache misses of reading their slots. Caller holds maintMu.
func (l *Limiter) sweep(budget, now uint64) {
	m := &l.m
	for budget > 0 {
		sh := &l.shards[m.shard]
		sh.mu.Lock()
		var done bool
		switch m.part {
		case 0:
			done = sweepIndex(l, &sh.ip, &budget, now)
		default:
			done = sweepIndex(l, &sh.str[m.part-1], &budget, now)
		}
		sh.mu.Unlock()
		if done {
			m.pos = 0
			if m.part++; m.part == 3 {
				m.part, m.shard = 0, (m.shard+1)%numShards
			}
		}
	}
}

// never is a due tick that never comes.
const never = math.MaxUint64

// sweepIndex goes on with the pass over x from slot m.pos, spending at most
// *budget slots, and reports whether the pass reached the end of the table.
// While x's due tick has not come its slots are passed over unread. A pass
// that reads them works out, from each bucket it keeps, a tick before which
// that bucket cannot need the sweep; one that read the whole table leaves
// the least of them, or of the ticks writers announced meanwhile, as x's
// due. Since the pace is the same whether slots are read or not, a bucket
// due at tick E is read by E plus one cycle, as if every slot were read.
// Caller holds the shard's mutex.
func sweepIndex[K comparable](l *Limiter, x *index[K], budget *uint64, now uint64) bool {
	m := &l.m
	slots := x.tab.Load().slots
	if m.pos == 0 {
		m.skipped, m.passDue, x.lowered = false, never, never
	}
	end := len(slots)
	if m.pos < end && *budget < uint64(end-m.pos) {
		end = m.pos + int(*budget)
	}
	if m.pos < end {
		*budget -= uint64(end - m.pos)
		if x.due > now {
			m.skipped = true
		} else {
			m.passDue = min(m.passDue, sweepSlots(l, x, slots[m.pos:end], now))
		}
		m.pos = end
	}
	if m.pos < len(slots) {
		return false
	}
	if m.skipped { // the unread slots keep the bound they had
		x.due = min(x.due, m.passDue)
	} else {
		x.due = min(m.passDue, x.lowered)
	}
	return true
}

// sweepSlots sweeps slots, a part of x's table, and returns the least tick at
// which one of the buckets it keeps may need the sweep again: when it can
// be idle for IdleTimeout and full (a lower bound), or stale. Caller holds
// the shard's mutex.
func sweepSlots[K comparable](l *Limiter, x *index[K], slots []slot[K], now uint64) uint64 {
	def, idleTicks := l.def.Load(), l.idleTicks
	due := uint64(never)
	for i := range slots {
		s := &slots[i]
		st := s.state.Load()
		if st&live == 0 {
			if st == listed {
				due = min(due, sweepListed(x, s.key, now))
			}
			continue
		}
		idle := elapsed(st, now)
		if idle < idleTicks {
			due = min(due, now-idle+idleTicks)
			continue
		}
		switch t := topUp(st, def, now); {
		case t == def.cap && s.state.CompareAndSwap(st, tomb):
			x.live--
			l.clients.Add(-1)
			l.evictions.Add(1)
		case t == def.cap: // taken from meanwhile
			due = now
		case idle >= staleTicks:
			refresh(&s.state, def, now)
			due = min(due, now+idleTicks)
		default: // idle but not full: not before it can be
			due = min(due, now-idle+staleTicks, now+(def.cap-t)>>def.incShift)
		}
	}
	return due
}

// sweepListed rewrites the bucket of listed client key when it is stale and
// returns the tick at which it will be stale again. Listed buckets are never
// evicted. Caller holds the shard's mutex.
func sweepListed[K comparable](x *index[K], key K, now uint64) uint64 {
	b := (*x.listed.Load())[key]
	if b == nil {
		return now
	}
	bs := b.state.Load()
	if bs&live == 0 {
		return now
	}
	idle := elapsed(bs, now)
	if idle >= staleTicks {
		refresh(&b.state, b.p.Load(), now)
		return now + staleTicks
	}
	return now - idle + staleTicks
}

// reclaim makes room in a full table by evicting one full bucket, idle or
// not, looking at no more than reclaimProbe slots from the shards after
// start. Only one goroutine reclaims at a time, so a flood of new clients
// against a full table costs a bounded amount of work; the rest go to the
// overflow bucket. Evicting a full bucket loses nothing: a new one for the
// same client starts full.
func (l *Limiter) reclaim(start int, now uint64) bool {
	if !l.reclaiming.CompareAndSwap(false, true) {
		return false
	}
	defer l.reclaiming.Store(false)
	budget := reclaimProbe
	at := int(l.reclaimAt.Add(reclaimProbe))
	for j := 1; j <= numShards && budget > 0; j++ {
		sh := &l.shards[(start+j)%numShards]
		sh.mu.Lock()
		ok := evictOne(l, &sh.ip, at, &budget, now) || evictOne(l, &sh.str[KeyAPI], at, &budget, now) ||
			evictOne(l, &sh.str[KeyIP], at, &budget, now)
		sh.mu.Unlock()
		if ok {
			return true
		}
	}
	return false
}

// evictOne evicts the first full bucket of x it finds from slot at,
// spending one unit of budget per live slot looked at. Caller holds the
// shard's mutex.
func evictOne[K comparable](l *Limiter, x *index[K], at int, budget *int, now uint64) bool {
	t := x.tab.Load()
	def := l.def.Load()
	for i := range t.slots {
		if *budget <= 0 || x.live == 0 {
			return false
		}
		s := &t.slots[(at+i)&int(t.mask)]
		st := s.state.Load()
		if st&live == 0 {
			continue
		}
		*budget--
		if topUp(st, def, now) == def.cap && s.state.CompareAndSwap(st, tomb) {
			x.live--
			l.clients.Add(-1)
			l.evictions.Add(1)
			return true
		}
	}
	return false
}

// periodic decides the log lines due at tick now. Caller holds maintMu.
func (l *Limiter) periodic(now, n uint64) []notice {
	var notes []notice
	m := &l.m
	if cur := l.overflowed.Load(); cur != m.ovSeen {
		if !m.ovLogged || now-m.ovLast >= l.minuteTicks {
			notes = append(notes, notice{slog.LevelWarn,
				"rate limit: client table full; new clients share one overflow bucket with the default limits (listed clients keep their own)",
				[]slog.Attr{slog.Int64("max_clients", l.maxClients), slog.Uint64("overflowed", cur-m.ovSeen)}})
			m.ovLogged, m.ovLast, m.ovSeen = true, now, cur
		}
	} else if m.ovLogged && l.clients.Load() < l.maxClients {
		m.ovLogged = false // this episode is over; the next one is logged at once
	}
	if m.sinceSummary += n; m.sinceSummary >= l.minuteTicks {
		m.sinceSummary = 0
		if nt, ok := l.summarize(); ok {
			notes = append(notes, nt)
		}
	}
	return notes
}
