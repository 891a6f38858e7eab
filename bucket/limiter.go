package bucket

import (
	"hash/maphash"
	"log/slog"
	"maps"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Defaults for the zero fields of Config.
const (
	DefaultRefillInterval = 100 * time.Millisecond
	DefaultMaxClients     = 1_000_000
	DefaultIdleTimeout    = 10 * time.Minute
)

// The limits used when Config.Default is not valid: the config.json defaults.
const (
	DefaultCapacity   = 100
	DefaultRefillRate = 50
)

// Config is the setting of a Limiter. Every zero field means its default.
type Config struct {
	Default        Limits        // limits of clients without an override; invalid: DefaultCapacity, DefaultRefillRate
	RefillInterval time.Duration // tick period; default 100ms
	MaxClients     int           // most buckets tracked at once; default 1_000_000
	IdleTimeout    time.Duration // evict a full bucket idle this long; default 10m, at most 1<<18 ticks
	// Instances is how many balancers share the traffic; each enforces
	// 1/Instances of every limit (capacity rounded up), so that N instances
	// fed evenly enforce the configured total. Default 1.
	Instances int
	Logger    *slog.Logger // nil: discard
}

// Table geometry. 256 shards keep the per-shard maps near 4k entries at a
// million clients, so one shard is a cheap slice for the sweep; buckets live
// in 128-entry chunks so a map value is a 4-byte index and a bucket never moves.
const (
	numShards = 256
	chunkSize = 128
)

// Limiter is a table of per-client token buckets refilled by one ticker.
// Create it with New and drive it with Run (or RunTicks or Tick); without
// ticks no bucket refills. The zero value is not usable. All methods are safe
// for concurrent use.
type Limiter struct {
	seed        maphash.Seed
	interval    time.Duration
	maxClients  int64
	idleTicks   uint64 // a full bucket idle this many ticks is evicted
	cycleTicks  uint64 // the sweep visits every shard within this many ticks
	minuteTicks uint64 // ticks per summary period
	instances   int    // limits are divided by this (Config.Instances)
	log         *slog.Logger

	now atomic.Uint64          // ticks since New, read by every Allow
	def atomic.Pointer[params] // limits of buckets with no override
	_   [64]byte               // keep the read-mostly words above off the counters' line

	clients    atomic.Int64 // buckets in the table
	evictions  atomic.Uint64
	overflowed atomic.Uint64 // decisions made by over
	reclaiming atomic.Bool   // one goroutine at a time evicts to make room
	rejKeys    atomic.Int64  // distinct keys in the shards' rejection tables
	rejOthers  atomic.Uint64 // rejections not counted by key (tables full)
	over       bucket        // the shared bucket of clients that find the table full

	// setMu serialises writers of limits (SetDefault, SetOverrides,
	// SetLimits, ClearLimits) so that an override and its bucket agree.
	setMu sync.Mutex
	// overrides maps a client (see overrideKey) to its own limits. The map
	// is never changed in place: writers, serialised by setMu, store a new
	// copy, so a request's lookup takes no lock. Changes are admin actions,
	// rare next to requests.
	overrides atomic.Pointer[map[string]*params]

	// maintMu guards m: one Tick at a time.
	maintMu sync.Mutex
	m       maint

	shards [numShards]shard
}

// shard is one lock's worth of the table, padded to whole cache lines so
// that hot keys in neighbouring shards do not share one.
type shard struct {
	shardState
	_ [(128 - unsafe.Sizeof(shardState{})%128) % 128]byte
}

type shardState struct {
	// mu guards keys, chunks, used and free. Allow reads under RLock and
	// updates buckets with atomics; inserting and evicting take Lock, so a
	// bucket is only recycled while nobody holds it.
	mu     sync.RWMutex
	keys   [2]map[string]uint32 // by KeyKind: key to bucket index
	chunks []*[chunkSize]bucket
	used   uint32   // indexes handed out so far
	free   []uint32 // evicted indexes to reuse

	admitted atomic.Uint64
	rejected atomic.Uint64

	// rejMu guards rej: this period's rejections by client.
	rejMu sync.Mutex
	rej   map[rejKey]uint64
}

func (sh *shardState) at(i uint32) *bucket { return &sh.chunks[i/chunkSize][i%chunkSize] }

// alloc returns a free bucket index. Caller holds mu for writing.
func (sh *shardState) alloc() uint32 {
	if n := len(sh.free); n > 0 {
		i := sh.free[n-1]
		sh.free = sh.free[:n-1]
		return i
	}
	i := sh.used
	sh.used++
	if int(i/chunkSize) == len(sh.chunks) {
		sh.chunks = append(sh.chunks, new([chunkSize]bucket))
	}
	return i
}

// New returns a Limiter for cfg. It starts no goroutine: call Run.
func New(cfg Config) *Limiter {
	if cfg.RefillInterval <= 0 {
		cfg.RefillInterval = DefaultRefillInterval
	}
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = DefaultMaxClients
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.Default.Validate() != nil {
		cfg.Default = Limits{Capacity: DefaultCapacity, RefillRate: DefaultRefillRate}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Limiter{
		seed:        maphash.MakeSeed(),
		interval:    cfg.RefillInterval,
		maxClients:  int64(cfg.MaxClients),
		idleTicks:   ceilTicks(cfg.IdleTimeout, cfg.RefillInterval, staleTicks),
		minuteTicks: ceilTicks(time.Minute, cfg.RefillInterval, 1<<62),
		instances:   max(cfg.Instances, 1),
		log:         cfg.Logger,
	}
	l.cycleTicks = min(l.idleTicks, maxCycleTicks)
	l.overrides.Store(&map[string]*params{})
	l.def.Store(l.params(cfg.Default, false))
	l.over.state.Store(pack(l.def.Load().cap, 0))
	for i := range l.shards {
		l.shards[i].keys = [2]map[string]uint32{{}, {}}
		l.shards[i].rej = map[rejKey]uint64{}
	}
	return l
}

// params precomputes this instance's share of lim.
func (l *Limiter) params(lim Limits, override bool) *params {
	if n := int64(l.instances); n > 1 {
		lim.Capacity = (lim.Capacity + n - 1) / n
		lim.RefillRate /= float64(n)
	}
	return newParams(lim, l.interval, override)
}

// ceilTicks returns d in whole ticks, at least 1 and at most most.
func ceilTicks(d, interval time.Duration, most uint64) uint64 {
	return min(max(uint64((d+interval-1)/interval), 1), most)
}

// Allow takes a token from the bucket of the client with IP-kind key and
// reports whether there was one. A known client's Allow holds one shard's
// read lock, does one CompareAndSwap and allocates nothing.
func (l *Limiter) Allow(key string) bool {
	ok, _, _, _ := l.take(KeyIP, key)
	return ok
}

// Take is Allow with what the rate-limit headers need.
func (l *Limiter) Take(key string) Decision { return l.TakeKind(KeyIP, key) }

// TakeKind is Take in the namespace of kind (see KeyKind).
func (l *Limiter) TakeKind(kind KeyKind, key string) Decision {
	ok, t, p, shared := l.take(kind, key)
	return p.decide(ok, t, shared)
}

func (l *Limiter) take(kind KeyKind, key string) (ok bool, t uint64, p *params, shared bool) {
	kind &= 1
	si := maphash.String(l.seed, key) % numShards
	sh := &l.shards[si]
	now := l.now.Load()
	sh.mu.RLock()
	if i, found := sh.keys[kind][key]; found {
		b := sh.at(i)
		if p = b.p.Load(); p == nil {
			p = l.def.Load()
		}
		ok, t = b.take(p, now)
		sh.mu.RUnlock()
	} else {
		sh.mu.RUnlock()
		ok, t, p, shared = l.takeNew(sh, int(si), kind, key, now)
	}
	if ok {
		sh.admitted.Add(1)
	} else {
		sh.rejected.Add(1)
		l.noteRejected(sh, kind, key)
	}
	return ok, t, p, shared
}

// takeNew adds a bucket for key, full, and takes from it. When the table is
// at MaxClients and no full bucket can be evicted, the client is decided by
// the shared overflow bucket instead: new clients then share the default
// limits until room comes back, while every known client keeps its own.
func (l *Limiter) takeNew(sh *shard, si int, kind KeyKind, key string, now uint64) (bool, uint64, *params, bool) {
	if !l.reserve() && !(l.reclaim(si, now) && l.reserve()) {
		sh.mu.RLock()
		if i, found := sh.keys[kind][key]; found { // added meanwhile by a concurrent first request
			b := sh.at(i)
			p := l.eff(b.p.Load())
			ok, t := b.take(p, now)
			sh.mu.RUnlock()
			return ok, t, p, false
		}
		sh.mu.RUnlock()
		p := l.def.Load()
		ok, t := l.over.take(p, now)
		l.overflowed.Add(1)
		return ok, t, p, true
	}
	sh.mu.Lock()
	i, found := sh.keys[kind][key]
	if found { // another request for key got here first
		l.clients.Add(-1)
	} else {
		key = strings.Clone(key) // the table outlives the request's buffers
		o := l.override(kind, key)
		i = sh.alloc()
		b := sh.at(i)
		b.p.Store(o)
		b.state.Store(pack(l.eff(o).cap, now))
		sh.keys[kind][key] = i
	}
	b := sh.at(i)
	p := l.eff(b.p.Load())
	ok, t := b.take(p, now)
	sh.mu.Unlock()
	return ok, t, p, false
}

// reserve counts one more client unless the table is full.
func (l *Limiter) reserve() bool {
	for {
		n := l.clients.Load()
		if n >= l.maxClients {
			return false
		}
		if l.clients.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// eff returns the params a bucket pointing at p uses.
func (l *Limiter) eff(p *params) *params {
	if p == nil {
		return l.def.Load()
	}
	return p
}

// SetDefault changes the limits of every client without an override, at
// once: buckets holding more than the new capacity are cut down to it.
func (l *Limiter) SetDefault(lim Limits) {
	l.setMu.Lock()
	defer l.setMu.Unlock()
	old := l.def.Swap(l.params(lim, false))
	now := l.now.Load()
	// One shard at a time under its read lock: requests keep flowing.
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.RLock()
		for j := range sh.used {
			if b := sh.at(j); b.p.Load() == nil {
				l.convert(b, old, now)
			}
		}
		sh.mu.RUnlock()
	}
	l.convert(&l.over, old, now)
}

// SetOverrides replaces the whole set of per-client limits (at start and on
// reload). Clients no longer listed fall back to the default. m is not kept.
// Limits given to an IP address are never used for an API key that spells
// the same address.
func (l *Limiter) SetOverrides(m map[string]Limits) {
	l.setMu.Lock()
	defer l.setMu.Unlock()
	next := make(map[string]*params, len(m))
	for k, lim := range m {
		_, k = overrideKey(k)
		next[k] = l.params(lim, true)
	}
	old := *l.overrides.Swap(&next)
	for k := range old {
		if _, ok := next[k]; !ok {
			l.apply(k, nil)
		}
	}
	for k, p := range next {
		l.apply(k, p)
	}
}

// SetLimits gives key its own limits, applied at once: a bucket holding
// more than the new capacity is cut down. Limits given to an IP address are
// never used for an API key that spells the same address.
func (l *Limiter) SetLimits(key string, lim Limits) {
	l.setMu.Lock()
	defer l.setMu.Unlock()
	_, key = overrideKey(key)
	p := l.params(lim, true)
	next := maps.Clone(*l.overrides.Load())
	next[key] = p
	l.overrides.Store(&next)
	l.apply(key, p)
}

// ClearLimits removes key's own limits; it falls back to the default.
func (l *Limiter) ClearLimits(key string) {
	l.setMu.Lock()
	defer l.setMu.Unlock()
	_, key = overrideKey(key)
	next := maps.Clone(*l.overrides.Load())
	delete(next, key)
	l.overrides.Store(&next)
	l.apply(key, nil)
}

// HasLimits reports whether the client (kind, key) has limits of its own.
// It takes no lock.
func (l *Limiter) HasLimits(kind KeyKind, key string) bool {
	return l.override(kind, key) != nil
}

// override returns the limits of the client (kind, key), or nil.
func (l *Limiter) override(kind KeyKind, key string) *params {
	m := *l.overrides.Load()
	if len(m) == 0 {
		return nil
	}
	p := m[key]
	if p != nil && kind == KeyAPI && isAddr(key) {
		// Limits given to an IP address are that address's: a request
		// sending the address as its API key must not borrow them.
		return nil
	}
	return p
}

// overrideKey returns the form a clients-file key is kept in: an IP
// address in canonical form, so that "2001:DB8::1" finds the client the
// balancer keys "2001:db8::1"; any other key as it is.
func overrideKey(key string) (KeyKind, string) {
	if ip, err := netip.ParseAddr(key); err == nil {
		return KeyIP, ip.Unmap().String()
	}
	return KeyAPI, key
}

func isAddr(key string) bool {
	_, err := netip.ParseAddr(key)
	return err == nil
}

// apply points the buckets that key's limits govern at p (nil: the
// default): the IP-kind client key and, unless key is an IP address, the
// API-key client key (see override). key is in overrideKey form. Caller
// holds setMu.
func (l *Limiter) apply(key string, p *params) {
	now := l.now.Load()
	sh := &l.shards[maphash.String(l.seed, key)%numShards]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	for kind := range sh.keys {
		if KeyKind(kind) == KeyAPI && isAddr(key) {
			continue
		}
		if i, ok := sh.keys[kind][key]; ok {
			b := sh.at(i)
			old := l.eff(b.p.Swap(p))
			l.convert(b, old, now)
		}
	}
}

// convert rewrites b, which just switched away from params old, as of tick
// now: refilled at the old rate up to now, then cut to the new capacity.
// Caller holds the bucket's shard lock.
func (l *Limiter) convert(b *bucket, old *params, now uint64) {
	for {
		s := b.state.Load()
		t := min(topUp(s, old, now), l.eff(b.p.Load()).cap)
		if b.state.CompareAndSwap(s, pack(t, stamp(s, now))) {
			return
		}
	}
}

// Stats is a snapshot of a Limiter's counters, for /status and /metrics.
type Stats struct {
	Clients    int    // buckets tracked now
	MaxClients int    // the bound on Clients
	Overrides  int    // clients with their own limits
	Evictions  uint64 // buckets evicted since New
	Overflowed uint64 // decisions made by the shared overflow bucket since New
	Admitted   uint64 // requests admitted since New
	Rejected   uint64 // requests rejected since New
}

// Stats returns the current counters. It takes no lock on the request path.
func (l *Limiter) Stats() Stats {
	n := len(*l.overrides.Load())
	s := Stats{
		Clients:    int(l.clients.Load()),
		MaxClients: int(l.maxClients),
		Overrides:  n,
		Evictions:  l.evictions.Load(),
		Overflowed: l.overflowed.Load(),
	}
	for i := range l.shards {
		s.Admitted += l.shards[i].admitted.Load()
		s.Rejected += l.shards[i].rejected.Load()
	}
	return s
}
