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
//     clients or a million; it only sweeps one shard for eviction.
//   - Allow reads no clock. time.Now costs ~85 ns on this kind of machine,
//     more than the whole of Allow here; the counter is one atomic load.
//   - Check, refill and take are one atomic step: tokens never exceed
//     capacity and concurrent takes never overspend.
//
// The other design, a tick that refills only the buckets below capacity,
// kept on per-shard lists, was measured and not taken: writing buckets in a
// pass costs ~7 ns each even walked in memory order (BenchmarkRefillPass),
// so its tick grows to ~7 ms when a flood of new clients leaves a million
// buckets below capacity, where this design's tick stays near 110 µs; and
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
// # Table
//
// 256 shards, chosen by hash/maphash with a per-Limiter seed. Each has a
// sync.RWMutex over two maps, for IP keys and API keys (separate, so an API
// key equal to someone's address cannot spend that address's tokens), from
// key to a uint32 index into a slab of 16-byte buckets in 128-entry chunks
// with a free list. A known key's Allow holds its shard's read lock, does
// one CompareAndSwap and allocates nothing. Memory: ~90 B per client with
// 16-byte keys (map slot and control bytes at Go's load factor ~58 B, the
// key's own copy 16 B, the bucket 16 B), where a map of *rate.Limiter costs
// ~150 B and nginx's limit_req zone 128 B.
//
// # Eviction, the bound and the overflow bucket
//
// Each tick sweeps one shard (more when IdleTimeout is under 256 ticks) under
// its read lock, so the whole table is swept within IdleTimeout, never in
// one pass. Buckets full and idle for IdleTimeout are evicted under the
// write lock in batches of 64. Evicting a full bucket loses nothing: a new
// one for the same client starts full with the same limits.
//
// The table never holds more than MaxClients buckets. A new client that
// finds it full evicts any full bucket, idle or not, found among 64 entries;
// failing that, it is decided by one shared overflow bucket with the default
// limits until room comes back. Known clients keep their own buckets, so a
// flood of new addresses can neither grow memory nor push them out. The
// limiter logs when the table first fills, then at most once a minute while
// new clients keep overflowing; never per request.
//
// Rejections are counted per client in a table bounded to 1000 clients a
// minute (the rest as "others"); Run logs one summary line a minute naming
// the ten clients rejected most, API keys only as KeyTag.
//
// # Measured
//
// go test -run '^$' -bench . -benchmem -count 5 ./bucket/ on 2 vCPUs of an
// AMD EPYC VM shared with other jobs (load average 4 to 6); medians, raw
// output in BENCH.txt:
//
//	Allow, known key, one goroutine     35.3 ns  0 allocs  (target < 40 ns)
//	Allow, known key, two goroutines    78 ns    0 allocs  (hot key; 119 ns over 10k keys)
//	Allow, new key                      574 ns   1 alloc   (the key's own copy)
//	Allow, rejected                     85 ns    0 allocs  (counted for the summary)
//	Gate.Check, admitted, no headers    83 ns    0 allocs
//	Tick, 1M clients, 1% active         115 µs             (target < 1 ms)
//	Tick, 1M clients, evicting a shard  540 µs             (about 3900 evictions)
//	Memory, 1M clients, 16-byte keys    90.2 B/client      (target <= 120 B)
//
// Parallel Allow does not scale on this machine: RLock and RUnlock write the
// shard's lock word, so every Allow moves that cache line between cores. A
// lock-free read path would avoid it, but a sync.Map of the same million
// clients measured 154 B/client, over the memory budget; the card asks for
// sharded mutexes, and one core's 35 ns is far below a proxied request's cost.
package bucket
