// Package bucket is the balancer's per-client rate limiter: one token bucket
// per client key in a sharded table refilled by one time.Ticker (Limiter),
// the per-request admission with its 429 answers (Gate), the durable
// per-client limits (Store) and their admin API (NewClientsHandler).
//
// # Refill: a tick counter, buckets topped up when used
//
// Run's one Ticker adds one to a limiter-wide atomic tick counter every
// RefillInterval. A bucket is one 64-bit word: its tokens, in millionths,
// and the low 20 bits of the tick at which they were counted. Allow loads
// the counter, adds (ticks since) × (refill per tick), clamps to capacity
// and takes a token, all in one CompareAndSwap. Three things follow:
//
//   - A tick touches no bucket to refill it, so it costs the same with ten
//     clients or a million; it only passes over its share of the table for
//     eviction, reading only the indexes where a bucket may be due.
//   - Allow reads no clock. time.Now costs ~85 ns on this kind of machine,
//     more than the whole of Allow here; the counter is one atomic load.
//   - Check, refill and take are one atomic step: tokens never exceed
//     capacity and concurrent takes never overspend.
//
// The other design, a tick that refills only the buckets below capacity,
// kept on per-shard lists, was measured and not taken: writing buckets in a
// pass costs ~7 ns each even walked in memory order (BenchmarkRefillPass),
// so its tick grows to ~7 ms when a flood of new clients leaves a million
// buckets below capacity, where this design's tick reads at most some 350
// slots (~4 µs) and, once they are idle, none; and
// an Allow that takes the first token of a full bucket would also have to
// put it on a list, a second synchronised write.
//
// Exactness: tokens are integer millionths and the refill per tick is
// rate × interval rounded to a millionth once, so any rate with at most six
// decimals per tick (0.1/s at 100ms is 10000 millionths) is exact and never
// drifts; slower rates are raised to one millionth a tick. Tick differences
// are taken modulo 2^20, and the sweep rewrites every bucket not written for
// 2^18 ticks, so a bucket idle for any length of time tops up to exactly
// full. A tick the Run loop misses is made up from the ticker's times, up to
// 16 at once; a longer stall is lost refill, erring on the strict side.
// Capacity is at most MaxCapacity (8388608) tokens.
//
// Limits are refused, not bent: a capacity below one tick's refill
// (refill_rate × refill_interval) would throw the surplus away every tick,
// so capacity 1 at 50/s and 100ms would admit 10 a second; honouring it
// would need the time of each request, which is what this design avoids
// reading. Limits.ValidateFor says so, with the rate that would be admitted
// and what would work (a larger capacity or a shorter interval), and the
// config, the clients file and the admin API all use it. A rate below one
// millionth of a token a tick is refused the same way.
//
// # Table: read without a lock
//
// 256 shards, chosen by the top byte of a seeded hash. Each has a mutex for
// writers and, per key kind, an open-addressing table (linear probing,
// rebuilt at 3/4 full) whose slot is a key and a state word (table.go).
// A request loads the table, probes, and takes a token with one
// CompareAndSwap on the slot's state: it takes no lock and writes no
// shared line but its own bucket's, so a hot key on two cores moves only
// that line. Slots are never reused in a table and a rebuilt table is a new
// array whose old slots are marked moved by CompareAndSwap, so a reader
// holding an old table or slot never meets another client there, and a
// take racing an eviction or a rebuild either lands first and is carried
// over or fails and looks again. IP clients are stored inline as 16 bytes
// (no string, no pointer for the collector to scan); IPv6 addresses are
// masked to Config.IPv6Prefix (default /64), as HAProxy's ipmask does, since
// one host usually holds a whole /64. API keys are kept as strings in their
// own tables, apart from addresses, so an API key equal to someone's
// address cannot spend that address's tokens.
//
// Listed clients (the clients file) have their bucket made when they are
// listed, with their own limits, in a map beside the table, and their slot
// says so. They are never evicted and are not counted against MaxClients:
// a flood that fills the table cannot send them to the overflow bucket.
// The file is the operator's, so its size is the operator's bound.
//
// # Eviction, the bound and the overflow bucket
//
// Each tick sweeps its share of all slots, so that every slot is passed
// once per IdleTimeout (at most 2^16 ticks): at the defaults a million
// clients in two million slots make some 350 slots a tick. Buckets full and
// idle for IdleTimeout are evicted (between one and two IdleTimeouts after
// their last use); buckets not written for 2^18 ticks are rewritten so that
// tick differences never wrap. Evicting a full bucket loses nothing: a new
// one for the same client starts full with the same limits.
//
// Reading those slots is what a tick costs: they are in a table too large
// for the caches, some 4 µs for 350 of them. So each index (a shard's
// table of one key kind) keeps a due tick, before which none of its buckets
// can be evictable or stale, and the sweep passes over an index whose due
// tick has not come at the same pace without reading it. A pass that reads
// an index works its due out from the buckets it keeps: the tick each
// becomes idle for IdleTimeout, or, when it is idle but not full, a lower
// bound of the tick it is full again (one shift, no division), or stale.
// Takes only move a bucket's due later; a writer that adds a bucket or
// changes one otherwise (a new client, new limits, a listing, a rebuild)
// lowers its index's due under the shard's mutex. Idle clients then cost a
// tick almost nothing once a pass has read them, and a bucket due at tick E
// is still read by E plus one cycle, as if every slot were read each time.
//
// The table never holds more than MaxClients unlisted buckets. A new
// client that finds it full evicts any full bucket found among 64 slots;
// failing that, it is decided by one shared overflow bucket with the default
// limits until room comes back. Known and listed clients keep their own
// buckets. The limiter logs when the table first fills, then at most once a
// minute while new clients keep overflowing; never per request.
//
// # Counting decisions
//
// A request writes nothing shared but its own bucket, and a rejected one
// not even that: the decision counters (Stats.Admitted, Stats.Rejected) and
// the rejection sketches are striped over 64 tallies, each on cache lines
// of its own, and a request writes the tally of the goroutine deciding it,
// chosen by the address of its stack (tally.go; Go does not say which
// processor a goroutine runs on). Two cores then share a counter's line
// only when two of their goroutines share a stripe. The counts stay exact:
// each stripe only ever adds, and Stats sums them. Per stripe and key kind,
// a 16-cell sketch (a Misra-Gries counter per cell, cell chosen by the
// key's hash) remembers the clients rejected most; Run logs one summary line
// a minute naming the ten clients rejected most, API keys only as KeyTag,
// a client rejected on several stripes once with the sum. The total is
// exact; a named client's count is a lower bound, exact when it was the
// only client rejected in its cells.
//
// # Measured
//
// See bench/RESULTS.md, "Issue 10" and its second pass, for the commands,
// the machine and the before/after runs. In short, medians of 10 alternating
// runs on 2 vCPUs of an Intel Xeon VM shared with other engineers' work
// (load average 1 to 3; ranges in RESULTS.md):
//
//	Allow, known key, one goroutine     21 ns, 0 allocs (first pass, same run: 24 ns)
//	Allow, rejected                     20 ns: no dearer than admitted
//	Allow, one key over its limit       -cpu 1: 21 ns, -cpu 2: 11.5 ns (first pass: 25, 87)
//	Allow, one key admitted each time   -cpu 1: 20 ns, -cpu 2: 73 ns: bound by its bucket's line
//	Allow, 10k keys                     -cpu 2 within 7-9% of -cpu 1 (first pass: 28-31% worse);
//	                                    on clients of its own shards, 0.6x
//	Tick, 1M idle clients               55 ns (first pass: 3.9 µs); a tick that reads: 3.9 µs
//	Memory, 1M IPv4 clients             51 B/client (API keys of 16 bytes: 67)
//	Store PUT at 100k listed clients    about 0.08 ms median (old: a whole-file rewrite, ~200 ms)
//
// The design not taken for refill, a tick that writes every bucket below
// capacity, still measures ~7 ns a bucket (BenchmarkRefillPass): 7 ms a tick
// for a million. A sync.Map of a million clients measured 154 B/client.
package bucket
