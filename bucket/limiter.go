package bucket

import (
	"encoding/binary"
	"hash/maphash"
	"log/slog"
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
	over       bucket        // the shared bucket of clients that find the table full

	// setMu serialises the writers of limits (SetDefault, SetOverrides,
	// SetLimits, ClearLimits) and guards limits: the listed clients by
	// canonical key.
	setMu  sync.Mutex
	limits map[string]Limits

	// maintMu guards m: one Tick at a time.
	maintMu sync.Mutex
	m       maint

	shards  [numShards]shard
	stripes [numStripes]stripe // the request counters (tally.go)
}

// shard is one mutex's worth of the table, padded to whole cache lines so
// that a writer taking one shard's mutex does not disturb the readers of its
// neighbours' tables.
type shard struct {
	shardState
	_ [(128 - unsafe.Sizeof(shardState{})%128) % 128]byte
}

type shardState struct {
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
	s.Admitted, s.Rejected = l.decisions()
	return s
}
