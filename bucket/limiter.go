package bucket

import (
	"encoding/binary"
	"fmt"
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
	DefaultIPv6Prefix     = 64
)

// The limits used when Config.Default is not valid: the config.json defaults.
const (
	DefaultCapacity   = 100
	DefaultRefillRate = 50
)

// Config is the setting of a Limiter. Every zero field means its default.
type Config struct {
	Default        Limits        // limits of clients without their own; invalid: DefaultCapacity, DefaultRefillRate
	RefillInterval time.Duration // tick period; default 100ms
	MaxClients     int           // most unlisted clients tracked at once; default 1_000_000
	IdleTimeout    time.Duration // evict a full bucket idle this long; default 10m, at most 1<<18 ticks
	// IPv6Prefix is how many leading bits of an IPv6 address make one
	// client, default 64: every address of a /64 shares a bucket, as one
	// host is usually given a whole /64. 128 keys each address alone.
	IPv6Prefix int
	// Instances is how many balancers share the traffic; each enforces
	// 1/Instances of every limit (capacity rounded up), so that N instances
	// fed evenly enforce the configured total. Default 1.
	Instances int
	Logger    *slog.Logger // nil: discard
}

// Table geometry: 256 shards, each with its own mutex for writers, keep a
// shard's table near 4k clients at a million, so that growing one (a copy)
// stays short.
const numShards = 256

// Limiter is a table of per-client token buckets refilled by one ticker.
// Create it with New and drive it with Run (or RunTicks or Tick); without
// ticks no bucket refills. The zero value is not usable. All methods are safe
// for concurrent use.
//
// Clients with limits of their own (SetLimits, SetOverrides: the clients
// file) are listed: their buckets are made when they are listed, are never
// evicted and do not count against MaxClients, so a full table never judges
// them by anything but their own limits.
type Limiter struct {
	seed        maphash.Seed // string keys
	aseed       [2]uint64    // address keys
	interval    time.Duration
	maxClients  int64
	idleTicks   uint64 // a full bucket idle this many ticks is evicted
	cycleTicks  uint64 // the sweep visits every slot within this many ticks
	minuteTicks uint64 // ticks per summary period
	instances   int    // limits are divided by this (Config.Instances)
	v6bits      int    // Config.IPv6Prefix
	log         *slog.Logger

	now atomic.Uint64          // ticks since New, read by every Allow
	def atomic.Pointer[params] // limits of unlisted clients
	_   [64]byte               // keep the read-mostly words above off the counters' line

	clients    atomic.Int64  // unlisted buckets in the tables
	slots      atomic.Int64  // slots in all tables, for pacing the sweep
	evictions  atomic.Uint64 // buckets evicted since New
	overflowed atomic.Uint64 // decisions made by over
	reclaiming atomic.Bool   // one goroutine at a time evicts to make room
	reclaimAt  atomic.Uint64 // where the next reclaim looks
	rejOthers  atomic.Uint64 // rejections by the overflow bucket
	over       bucket        // the shared bucket of clients that find the table full

	// setMu serialises the writers of limits (SetDefault, SetOverrides,
	// SetLimits, ClearLimits) and guards limits: the listed clients by
	// canonical key.
	setMu  sync.Mutex
	limits map[string]Limits

	// maintMu guards m: one Tick at a time.
	maintMu sync.Mutex
	m       maint

	shards [numShards]shard
}

// shard is one mutex's worth of the table, padded to whole cache lines so
// that neighbouring shards' counters do not share one.
type shard struct {
	shardState
	_ [(128 - unsafe.Sizeof(shardState{})%128) % 128]byte
}

type shardState struct {
	admitted atomic.Uint64
	rejected atomic.Uint64

	// mu serialises the writers of the indexes: inserting, evicting,
	// listing, rebuilding. Readers take no lock (see table.go).
	mu  sync.Mutex
	ip  index[addrKey]
	str [2]index[string] // by KeyKind: IP-kind keys that are not addresses, API keys
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
	if cfg.IPv6Prefix <= 0 || cfg.IPv6Prefix > 128 {
		cfg.IPv6Prefix = DefaultIPv6Prefix
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
		v6bits:      cfg.IPv6Prefix,
		log:         cfg.Logger,
		limits:      map[string]Limits{},
	}
	var sb [16]byte
	s := maphash.MakeSeed()
	binary.LittleEndian.PutUint64(sb[:8], maphash.String(s, "a"))
	binary.LittleEndian.PutUint64(sb[8:], maphash.String(s, "b"))
	l.aseed = [2]uint64{binary.LittleEndian.Uint64(sb[:8]), binary.LittleEndian.Uint64(sb[8:]) | 1}
	l.cycleTicks = min(l.idleTicks, maxCycleTicks)
	l.def.Store(l.params(cfg.Default, false))
	l.over.p.Store(l.def.Load())
	l.over.state.Store(pack(l.def.Load().cap, 0))
	hashAddr := func(k addrKey) uint64 { return hashAddr(l.aseed, k) }
	hashStr := func(k string) uint64 { return maphash.String(l.seed, k) }
	ownAddr := func(k addrKey) addrKey { return k }
	for i := range l.shards {
		sh := &l.shards[i]
		sh.ip.init(hashAddr, ownAddr)
		sh.str[KeyIP].init(hashStr, strings.Clone)
		sh.str[KeyAPI].init(hashStr, strings.Clone)
	}
	l.slots.Store(numShards * 3 * minTableSize)
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

// Check reports whether lim can be honoured by this limiter (see
// Limits.ValidateFor): the check the clients file and the admin API apply.
func (l *Limiter) Check(lim Limits) error { return lim.ValidateFor(l.interval, l.instances) }

// Allow takes a token from the bucket of the client key and reports whether
// there was one. A key that is an IP address is the IP-kind client of that
// address (an IPv6 address: of its prefix); any other key is an API key.
// A known client's Allow takes no lock, does one CompareAndSwap and
// allocates nothing.
func (l *Limiter) Allow(key string) bool { return l.Take(key).Allowed }

// Take is Allow with what the rate-limit headers need.
func (l *Limiter) Take(key string) Decision {
	if a, err := netip.ParseAddr(key); err == nil {
		return l.TakeAddr(a)
	}
	return l.TakeKind(KeyAPI, key)
}

// AllowAddr is Allow for the client at address a (IPv6: its prefix): what
// the Gate does, without parsing text.
func (l *Limiter) AllowAddr(a netip.Addr) bool {
	ok, _, _, _ := l.takeAddr(a)
	return ok
}

// TakeAddr is Take for the client at address a (IPv6: its prefix). An
// invalid a is one client.
func (l *Limiter) TakeAddr(a netip.Addr) Decision {
	ok, t, p, shared := l.takeAddr(a)
	return p.decide(ok, t, shared)
}

// TakeKind is Take in the namespace of kind (see KeyKind): an IP-kind key
// that is an address is the client of that address as in TakeAddr.
func (l *Limiter) TakeKind(kind KeyKind, key string) Decision {
	ok, t, p, shared := l.takeKind(kind, key)
	return p.decide(ok, t, shared)
}

func (l *Limiter) takeAddr(a netip.Addr) (bool, uint64, *params, bool) {
	k := keyOf(a, l.v6bits)
	h := hashAddr(l.aseed, k)
	sh := &l.shards[h>>56]
	return takeIn(l, sh, &sh.ip, h, k)
}

func (l *Limiter) takeKind(kind KeyKind, key string) (bool, uint64, *params, bool) {
	if kind == KeyIP {
		if a, err := netip.ParseAddr(key); err == nil {
			return l.takeAddr(a)
		}
	}
	h := maphash.String(l.seed, key)
	sh := &l.shards[h>>56]
	return takeIn(l, sh, &sh.str[kind&1], h, key)
}

// takeIn takes a token for key from its bucket in x, which it finds without
// a lock; a client not found there (new, or met while its slot changes) goes
// to takeNew.
func takeIn[K comparable](l *Limiter, sh *shard, x *index[K], h uint64, key K) (bool, uint64, *params, bool) {
	now := l.now.Load()
	if s, st := x.tab.Load().find(h, key); s != nil {
		var p *params
		var w *atomic.Uint64
		if st&live != 0 {
			p, w = l.def.Load(), &s.state
		} else if st == listed {
			if b := (*x.listed.Load())[key]; b != nil {
				p, w = b.p.Load(), &b.state
			}
		}
		if w != nil {
			if ok, t, found := take(w, p, now); found {
				if ok {
					sh.admitted.Add(1)
				} else {
					sh.rejected.Add(1)
					x.rej.note(h, s)
				}
				return ok, t, p, false
			}
		}
	}
	return takeNew(l, sh, x, h, key, now)
}

// takeNew decides for a client that takeIn did not find: under the shard's
// mutex it looks again and, when the client is still absent, adds a bucket
// for it, full, and takes from it. When the table is at MaxClients and no
// full bucket can be evicted, the client is decided by the shared overflow
// bucket instead: new clients then share the default limits until room
// comes back, while every known and every listed client keeps its own.
func takeNew[K comparable](l *Limiter, sh *shard, x *index[K], h uint64, key K, now uint64) (bool, uint64, *params, bool) {
	reserved := l.reserve() || l.reclaim(int(h>>56), now) && l.reserve()
	sh.mu.Lock()
	if s, st := x.tab.Load().find(h, key); s != nil {
		// Added meanwhile, or found mid-change before: under the mutex
		// the slot is settled, live or listed.
		p, w := l.def.Load(), &s.state
		if st == listed {
			b := (*x.listed.Load())[key]
			p, w = b.p.Load(), &b.state
		}
		ok, t, _ := take(w, p, now)
		sh.mu.Unlock()
		if reserved {
			l.clients.Add(-1)
		}
		if ok {
			sh.admitted.Add(1)
		} else {
			sh.rejected.Add(1)
			x.rej.note(h, s)
		}
		return ok, t, p, false
	}
	if !reserved {
		sh.mu.Unlock()
		p := l.def.Load()
		ok, t, _ := take(&l.over.state, p, now)
		l.overflowed.Add(1)
		if ok {
			sh.admitted.Add(1)
		} else {
			sh.rejected.Add(1)
			l.rejOthers.Add(1)
		}
		return ok, t, p, true
	}
	p := l.def.Load()
	room(l, x).put(h, x.own(key), pack(p.cap-unitsPerToken, now))
	x.live++
	sh.mu.Unlock()
	sh.admitted.Add(1)
	return true, p.cap - unitsPerToken, p, false
}

// room is index.room, keeping the limiter's count of slots. Caller holds
// the shard's mutex.
func room[K comparable](l *Limiter, x *index[K]) *table[K] {
	before := len(x.tab.Load().slots)
	t := x.room()
	l.slots.Add(int64(len(t.slots) - before))
	return t
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

// clientKey is a listed client's key parsed: an address key, or a string
// key of kind API.
type clientKey struct {
	kind KeyKind
	addr addrKey
	str  string
}

// CanonicalKey returns the form in which key names a client in the clients
// file, the admin API and the logs: an IPv4 address in dotted form
// (IPv4-mapped IPv6 as IPv4); an IPv6 address or prefix as its prefix of
// Config.IPv6Prefix bits, compressed and lower-case ("2001:db8::/64"; the
// address itself at 128); any other key, an API key, as it is. An IPv4
// prefix other than /32 and an IPv6 prefix of another length are errors.
func (l *Limiter) CanonicalKey(key string) (string, error) {
	k, err := l.parseKey(key)
	if err != nil {
		return "", err
	}
	if k.kind == KeyIP {
		return k.addr.text(l.v6bits), nil
	}
	return key, nil
}

func (l *Limiter) parseKey(key string) (clientKey, error) {
	if a, err := netip.ParseAddr(key); err == nil {
		return clientKey{kind: KeyIP, addr: keyOf(a, l.v6bits)}, nil
	}
	if p, err := netip.ParsePrefix(key); err == nil {
		a := p.Addr().Unmap()
		switch {
		case a.Is4() && p.Bits() == p.Addr().BitLen():
		case a.Is6() && p.Bits() == l.v6bits:
		case a.Is4():
			return clientKey{}, fmt.Errorf("key: %s: IPv4 clients are keyed by address, not by network", key)
		default:
			return clientKey{}, fmt.Errorf("key: %s: IPv6 clients are keyed by /%d prefixes (rate_limit.ipv6_prefix)", key, l.v6bits)
		}
		return clientKey{kind: KeyIP, addr: keyOf(a, l.v6bits)}, nil
	}
	return clientKey{kind: KeyAPI, str: key}, nil
}

// SetDefault changes the limits of every unlisted client, at once: buckets
// holding more than the new capacity are cut down to it.
func (l *Limiter) SetDefault(lim Limits) {
	l.setMu.Lock()
	defer l.setMu.Unlock()
	p := l.params(lim, false)
	old := l.def.Swap(p)
	now := l.now.Load()
	// One shard at a time under its mutex: requests keep flowing.
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		convertAll(&sh.ip, old, p, now)
		convertAll(&sh.str[KeyIP], old, p, now)
		convertAll(&sh.str[KeyAPI], old, p, now)
		sh.mu.Unlock()
	}
	l.over.p.Store(p)
	convert(&l.over.state, old, p, now)
}

func convertAll[K comparable](x *index[K], from, to *params, now uint64) {
	t := x.tab.Load()
	for i := range t.slots {
		convert(&t.slots[i].state, from, to, now)
	}
}

// SetOverrides replaces the whole set of listed clients (at start and on
// reload): clients no longer listed fall back to the default, new ones get
// their buckets. Keys are put in canonical form; a key CanonicalKey refuses
// is skipped (the clients file refuses it first). m is not kept.
func (l *Limiter) SetOverrides(m map[string]Limits) {
	l.setMu.Lock()
	defer l.setMu.Unlock()
	next := make(map[string]Limits, len(m))
	for k, lim := range m {
		if c, err := l.CanonicalKey(k); err == nil {
			next[c] = lim
		}
	}
	for k := range l.limits {
		if _, ok := next[k]; !ok {
			l.setLocked(k, nil)
		}
	}
	for k, lim := range next {
		if old, ok := l.limits[k]; !ok || old != lim {
			l.setLocked(k, &lim)
		}
	}
}

// SetLimits lists key with its own limits, applied at once: a bucket
// holding more than the new capacity is cut down. Limits given to an IP
// address are never used for an API key that spells the same address.
func (l *Limiter) SetLimits(key string, lim Limits) {
	l.setMu.Lock()
	defer l.setMu.Unlock()
	if c, err := l.CanonicalKey(key); err == nil {
		l.setLocked(c, &lim)
	}
}

// ClearLimits removes key's own limits; it falls back to the default.
func (l *Limiter) ClearLimits(key string) {
	l.setMu.Lock()
	defer l.setMu.Unlock()
	if c, err := l.CanonicalKey(key); err == nil {
		l.setLocked(c, nil)
	}
}

// setLocked lists (lim != nil) or unlists the client with canonical key.
// Caller holds setMu.
func (l *Limiter) setLocked(key string, lim *Limits) {
	k, err := l.parseKey(key)
	if err != nil {
		return
	}
	var p *params
	if lim != nil {
		p = l.params(*lim, true)
		l.limits[key] = *lim
	} else {
		delete(l.limits, key)
	}
	if k.kind == KeyIP {
		h := hashAddr(l.aseed, k.addr)
		listIn(l, &l.shards[h>>56], &l.shards[h>>56].ip, h, k.addr, p)
		return
	}
	h := maphash.String(l.seed, key)
	listIn(l, &l.shards[h>>56], &l.shards[h>>56].str[KeyAPI], h, strings.Clone(key), p)
}

// listIn gives key in x its own bucket following p, or with p nil takes it
// away. A client's tokens move with it both ways, refilled up to now and cut
// to the new capacity. Caller holds setMu.
func listIn[K comparable](l *Limiter, sh *shard, x *index[K], h uint64, key K, p *params) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	now := l.now.Load()
	m := *x.listed.Load()
	s, _ := x.tab.Load().find(h, key)
	if b := m[key]; b != nil {
		if p != nil { // new limits for a listed client
			convert(&b.state, b.p.Swap(p), p, now)
			return
		}
		// Unlisted: stop the bucket, capturing its last state, and give the
		// client a slot on the default limits, or none if the table is
		// full (its next request starts a new bucket).
		var bs uint64
		for bs = b.state.Load(); !b.state.CompareAndSwap(bs, dead); bs = b.state.Load() {
		}
		if l.reserve() {
			def := l.def.Load()
			s.state.Store(pack(min(topUp(bs, b.p.Load(), now), def.cap), stamp(bs, now)))
		} else {
			s.state.Store(tomb)
			x.live--
		}
		next := maps.Clone(m)
		delete(next, key)
		x.listed.Store(&next)
		return
	}
	if p == nil {
		return
	}
	b := &bucket{}
	b.p.Store(p)
	next := maps.Clone(m)
	next[key] = b
	if s == nil {
		b.state.Store(pack(p.cap, now))
		x.listed.Store(&next)
		room(l, x).put(h, key, listed)
		x.live++
		return
	}
	// A client with a bucket on the default limits: publish its own bucket,
	// then turn the slot to listed. A take that lands on the slot first
	// makes the CompareAndSwap fail, and the tokens are counted again.
	x.listed.Store(&next)
	def := l.def.Load()
	for {
		st := s.state.Load()
		b.state.Store(pack(min(topUp(st, def, now), p.cap), stamp(st, now)))
		if s.state.CompareAndSwap(st, listed) {
			break
		}
	}
	l.clients.Add(-1)
}

// HasLimits reports whether the client (kind, key) is listed. It takes no
// lock.
func (l *Limiter) HasLimits(kind KeyKind, key string) bool {
	if kind == KeyIP {
		if a, err := netip.ParseAddr(key); err == nil {
			k := keyOf(a, l.v6bits)
			h := hashAddr(l.aseed, k)
			_, st := l.shards[h>>56].ip.tab.Load().find(h, k)
			return st == listed
		}
	}
	h := maphash.String(l.seed, key)
	_, st := l.shards[h>>56].str[kind&1].tab.Load().find(h, key)
	return st == listed
}

// Stats is a snapshot of a Limiter's counters, for /status and /metrics.
type Stats struct {
	Clients    int    // unlisted clients with a bucket now
	MaxClients int    // the bound on Clients
	Overrides  int    // listed clients (with limits of their own): outside MaxClients
	Evictions  uint64 // buckets evicted since New
	Overflowed uint64 // decisions made by the shared overflow bucket since New
	Admitted   uint64 // requests admitted since New
	Rejected   uint64 // requests rejected since New
}

// Stats returns the current counters. It takes no lock on the request path.
func (l *Limiter) Stats() Stats {
	l.setMu.Lock()
	n := len(l.limits)
	l.setMu.Unlock()
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
