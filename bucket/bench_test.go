package bucket

import (
	"hash/maphash"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// key16 returns a distinct 16-byte key for i, like a hex request ID or an
// IPv6 address without colons.
func key16(i int) string {
	var b [16]byte
	s := strconv.AppendUint(b[:0], uint64(i), 16)
	out := make([]byte, 16-len(s), 16)
	for j := range out {
		out[j] = '0'
	}
	return string(append(out, s...))
}

func keys16(n int) []string {
	ks := make([]string, n)
	for i := range ks {
		ks[i] = key16(i)
	}
	return ks
}

// huge refills the whole bucket in one tick; benchmarks Tick when it runs
// out (every 8 million takes), so they measure the admitted path.
var huge = Limits{Capacity: MaxCapacity, RefillRate: 1e9}

func BenchmarkAllow(b *testing.B) {
	b.Run("hot-key", func(b *testing.B) {
		l := New(Config{Default: huge})
		l.Allow("203.0.113.7")
		b.ReportAllocs()
		for b.Loop() {
			if !l.Allow("203.0.113.7") {
				l.Tick()
			}
		}
	})
	b.Run("hot-key/parallel", func(b *testing.B) {
		l := New(Config{Default: huge})
		l.Allow("203.0.113.7")
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if !l.Allow("203.0.113.7") {
					l.Tick()
				}
			}
		})
	})
	b.Run("10k-keys/parallel", func(b *testing.B) {
		l := New(Config{Default: huge})
		ks := keys16(10_000)
		for _, k := range ks {
			l.Allow(k)
		}
		var seq atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := int(seq.Add(7919)) // each goroutine walks the keys from its own place
			for pb.Next() {
				if !l.Allow(ks[i%len(ks)]) {
					l.Tick()
				}
				i++
			}
		})
	})
	b.Run("new-key", func(b *testing.B) {
		ks := keys16(1 << 20)
		cfg := Config{Default: huge, MaxClients: len(ks)}
		l := New(cfg)
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			if i == len(ks) {
				b.StopTimer()
				l, i = New(cfg), 0
				b.StartTimer()
			}
			l.Allow(ks[i])
			i++
		}
	})
	b.Run("rejected", func(b *testing.B) {
		l := New(Config{Default: Limits{Capacity: 1, RefillRate: 1}})
		l.Allow("203.0.113.7")
		b.ReportAllocs()
		for b.Loop() {
			l.Allow("203.0.113.7")
		}
	})
}

// BenchmarkTick measures one ticker fire with a million tracked clients of
// which 1% were active since the last tick. Every tick sweeps one shard,
// 1/256 of the table (about 3900 buckets here), under its read lock.
func BenchmarkTick(b *testing.B) {
	b.Run("clients=1M", func(b *testing.B) {
		const n = 1_000_000
		ks := keys16(n)
		// IdleTimeout beyond the run: no eviction, the sweep still visits
		// one shard a tick as at the defaults.
		l := New(Config{Default: Limits{Capacity: 10, RefillRate: 1}, IdleTimeout: 24 * time.Hour})
		for _, k := range ks {
			l.Allow(k)
		}
		for range 2 * numShards { // refill, and sweep the table once
			l.Tick()
		}
		active := ks[:n/100]
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			for _, k := range active {
				l.Allow(k)
			}
			b.StartTimer()
			l.Tick()
		}
		b.StopTimer()
		if got := l.Stats().Clients; got < n/2 {
			b.Fatalf("Clients = %d: the benchmark evicted what it meant to keep", got)
		}
	})
	// The worst steady tick: every bucket of the swept shard is full and
	// idle, so the tick evicts the whole shard (about 3900 buckets). The
	// evicted clients come back, timer stopped, so every tick has as much
	// to evict. IdleTimeout is one sweep cycle (256 ticks).
	b.Run("clients=1M/evicting", func(b *testing.B) {
		const n = 1_000_000
		l := New(Config{Default: Limits{Capacity: 10, RefillRate: 100}, IdleTimeout: numShards * DefaultRefillInterval})
		var byShard [numShards][]string
		for i := range n {
			k := key16(i)
			si := maphash.String(l.seed, k) % numShards
			byShard[si] = append(byShard[si], k)
			l.Allow(k)
		}
		l.now.Add(1 << 10) // all full and idle, and no sweep has run yet
		b.ReportAllocs()
		for b.Loop() {
			swept := l.m.cursor
			l.Tick()
			b.StopTimer()
			for _, k := range byShard[swept] {
				l.Allow(k)
			}
			b.StartTimer()
		}
		b.StopTimer()
		if ev := l.Stats().Evictions; ev < uint64(b.N)*n/numShards/2 {
			b.Fatalf("%d evictions in %d ticks: the benchmark did not evict", ev, b.N)
		}
	})
}

// BenchmarkRefillPass measures the tick of the design not taken: a pass
// that writes every bucket below capacity. It walks whole shards of a
// million-client table (bucket slabs in order, no map) and refreshes each
// bucket with one CompareAndSwap, and reports the cost per bucket.
func BenchmarkRefillPass(b *testing.B) {
	b.Run("clients=1M", func(b *testing.B) {
		const n = 1_000_000
		l := New(Config{Default: Limits{Capacity: 10, RefillRate: 1}})
		for i := range n {
			l.Allow(key16(i))
		}
		p := l.def.Load()
		walked, si := 0, 0
		b.ReportAllocs()
		for b.Loop() {
			sh := &l.shards[si%numShards]
			si++
			now := l.now.Add(1)
			sh.mu.RLock()
			for j := range sh.used {
				sh.at(j).refresh(p, now)
			}
			walked += int(sh.used)
			sh.mu.RUnlock()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(walked), "ns/bucket")
	})
}

// BenchmarkMemory reports the heap a tracked client costs, its 16-byte key
// included (the table keeps its own copy).
func BenchmarkMemory(b *testing.B) {
	b.Run("clients=1M", func(b *testing.B) {
		const n = 1_000_000
		before := heapInUse()
		l := New(Config{MaxClients: n})
		for i := range n {
			l.Allow(key16(i))
		}
		after := heapInUse()
		if got := l.Stats().Clients; got != n {
			b.Fatalf("Clients = %d, want %d", got, n)
		}
		b.ReportAllocs()
		for b.Loop() {
			l.Allow("0000000000000001")
		}
		b.ReportMetric(float64(after-before)/n, "B/client")
		runtime.KeepAlive(l)
	})
}

func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkGate measures the per-request admission on the admitted path.
func BenchmarkGate(b *testing.B) {
	for _, headers := range []bool{false, true} {
		b.Run("admitted/headers="+strconv.FormatBool(headers), func(b *testing.B) {
			g := &Gate{
				Limiter:        New(Config{Default: huge}),
				KeyHeader:      "X-API-Key",
				ClientIP:       func(*http.Request) string { return "203.0.113.7" },
				HeadersOnAdmit: headers,
			}
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("X-API-Key", "k-0123456789abcdef")
			w := &discardWriter{h: http.Header{}}
			g.Check(w, r)
			b.ReportAllocs()
			for b.Loop() {
				if !g.Check(w, r).Allowed {
					g.Limiter.Tick()
				}
			}
		})
	}
}

// discardWriter is a ResponseWriter that keeps nothing, so the Gate
// benchmarks measure the Gate and not a recorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}
