package bucket

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Maintenance bounds.
const (
	maxCycleTicks = 1 << 16 // every shard is swept within this many ticks, so tick differences never wrap
	maxCatchUp    = 16      // ticks one late ticker fire may make up for
	maxVictims    = 4096    // evictions decided per shard visit
	evictBatch    = 64      // evictions per hold of a shard's write lock: about 20µs
	reclaimProbe  = 64      // entries looked at for room when the table is full
	maxRejectKeys = 1000    // distinct clients counted per summary period
	summaryTop    = 10      // clients named in a summary line
)

// maint is the state of the maintenance loop, guarded by Limiter.maintMu.
type maint struct {
	cursor       int      // next shard to sweep
	victims      []victim // reused buffer of eviction candidates
	sinceSummary uint64   // ticks since the last rejection summary
	ovLogged     bool     // the current table-full episode has been logged
	ovLast       uint64   // tick of the last table-full log line
	ovSeen       uint64   // overflowed at that line
}

type victim struct {
	key  string
	i    uint32
	kind KeyKind
}

type rejKey struct {
	key  string
	kind KeyKind
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
	// Visit enough shards that all are visited every cycleTicks: one per
	// tick at the defaults, more for a short idle timeout.
	visits := min(max((numShards*n+l.cycleTicks-1)/l.cycleTicks, 1), numShards)
	for range visits {
		l.sweepShard(&l.shards[l.m.cursor], now)
		l.m.cursor = (l.m.cursor + 1) % numShards
	}
	if now%(maxCycleTicks) < n {
		// The overflow bucket belongs to no shard; keep its stamp fresh too.
		l.over.refresh(l.def.Load(), now)
	}
	notes := l.periodic(now, n)
	l.maintMu.Unlock()
	for _, nt := range notes {
		l.log.LogAttrs(context.Background(), nt.level, nt.msg, nt.attrs...)
	}
}

// sweepShard evicts the buckets of sh that are full and idle and rewrites
// those not written for staleTicks, so that no tick difference can wrap.
// Candidates are found under the read lock, requests flowing, and evicted
// under the write lock in batches after a second look.
func (l *Limiter) sweepShard(sh *shard, now uint64) {
	v := l.m.victims[:0]
	sh.mu.RLock()
	for kind := range sh.keys {
		for key, i := range sh.keys[kind] {
			b := sh.at(i)
			p := l.eff(b.p.Load())
			t, idle := b.level(p, now)
			if t == p.cap && idle >= l.idleTicks && len(v) < maxVictims {
				v = append(v, victim{key, i, KeyKind(kind)})
			} else if idle >= staleTicks {
				b.refresh(p, now)
			}
		}
	}
	sh.mu.RUnlock()
	for rest := v; len(rest) > 0; {
		batch := rest[:min(len(rest), evictBatch)]
		rest = rest[len(batch):]
		sh.mu.Lock()
		for _, x := range batch {
			l.evictLocked(sh, x, now, l.idleTicks)
		}
		sh.mu.Unlock()
	}
	clear(v) // drop the key references
	l.m.victims = v[:0]
}

// evictLocked removes x from sh if it is still there, full and idle for
// minIdle ticks. Evicting a full bucket loses nothing: a new one for the
// same client starts full with the same limits. Caller holds sh.mu.
func (l *Limiter) evictLocked(sh *shard, x victim, now, minIdle uint64) bool {
	i, ok := sh.keys[x.kind][x.key]
	if !ok || i != x.i {
		return false
	}
	b := sh.at(i)
	p := l.eff(b.p.Load())
	if t, idle := b.level(p, now); t != p.cap || idle < minIdle {
		return false
	}
	delete(sh.keys[x.kind], x.key)
	b.state.Store(0)
	b.p.Store(nil)
	sh.free = append(sh.free, i)
	l.clients.Add(-1)
	l.evictions.Add(1)
	return true
}

// reclaim makes room in a full table by evicting one full bucket, idle or
// not, looking at no more than reclaimProbe entries from the shards after
// start. Only one goroutine reclaims at a time, so a flood of new clients
// against a full table costs a bounded amount of work; the rest go to the
// overflow bucket.
func (l *Limiter) reclaim(start int, now uint64) bool {
	if !l.reclaiming.CompareAndSwap(false, true) {
		return false
	}
	defer l.reclaiming.Store(false)
	budget := reclaimProbe
	for j := 0; j < numShards && budget > 0; j++ {
		sh := &l.shards[(start+j)%numShards]
		sh.mu.Lock()
		ok := l.evictOneLocked(sh, now, &budget)
		sh.mu.Unlock()
		if ok {
			return true
		}
	}
	return false
}

// evictOneLocked evicts the first full bucket of sh it finds, spending one
// unit of budget per entry looked at. Caller holds sh.mu.
func (l *Limiter) evictOneLocked(sh *shard, now uint64, budget *int) bool {
	for kind := range sh.keys {
		for key, i := range sh.keys[kind] { // map order: a random sample
			if *budget--; l.evictLocked(sh, victim{key, i, KeyKind(kind)}, now, 0) {
				return true
			}
			if *budget <= 0 {
				return false
			}
		}
	}
	return false
}

// noteRejected counts a rejection of key for the period's summary, in a
// table bounded to maxRejectKeys clients; the rest are counted as others.
func (l *Limiter) noteRejected(sh *shard, kind KeyKind, key string) {
	sh.rejMu.Lock()
	k := rejKey{key, kind}
	if n, ok := sh.rej[k]; ok {
		sh.rej[k] = n + 1
	} else if l.rejKeys.Add(1) <= maxRejectKeys {
		sh.rej[rejKey{strings.Clone(key), kind}] = 1
	} else {
		l.rejKeys.Add(-1)
		l.rejOthers.Add(1)
	}
	sh.rejMu.Unlock()
}

// periodic decides the log lines due at tick now. Caller holds maintMu.
func (l *Limiter) periodic(now, n uint64) []notice {
	var notes []notice
	m := &l.m
	if cur := l.overflowed.Load(); cur != m.ovSeen {
		if !m.ovLogged || now-m.ovLast >= l.minuteTicks {
			notes = append(notes, notice{slog.LevelWarn,
				"rate limit: client table full; new clients share one overflow bucket with the default limits",
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

// summarize empties the rejection tables into one log line naming the
// clients rejected most; API keys appear only as KeyTag.
func (l *Limiter) summarize() (notice, bool) {
	type entry struct {
		rejKey
		n uint64
	}
	var all []entry
	var total uint64
	for i := range l.shards {
		sh := &l.shards[i]
		sh.rejMu.Lock()
		for k, n := range sh.rej {
			all = append(all, entry{k, n})
			total += n
		}
		clear(sh.rej)
		sh.rejMu.Unlock()
	}
	l.rejKeys.Add(-int64(len(all)))
	others := l.rejOthers.Swap(0)
	if total+others == 0 {
		return notice{}, false
	}
	slices.SortFunc(all, func(a, b entry) int { return cmp.Compare(b.n, a.n) })
	var top strings.Builder
	for i, e := range all[:min(len(all), summaryTop)] {
		if i > 0 {
			top.WriteByte(' ')
		}
		if e.kind == KeyAPI {
			top.WriteString("key:" + KeyTag(e.key))
		} else {
			top.WriteString("ip:" + e.key)
		}
		top.WriteString("=" + strconv.FormatUint(e.n, 10))
	}
	return notice{slog.LevelInfo, "rate limit: rejections", []slog.Attr{
		slog.Duration("period", time.Duration(l.minuteTicks)*l.interval),
		slog.Uint64("rejected", total+others),
		slog.Int("clients", len(all)),
		slog.String("top", top.String()),
		slog.Uint64("others", others),
	}}, true
}
