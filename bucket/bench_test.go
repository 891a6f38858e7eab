package bucket

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
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

// addr returns a distinct IPv4 address for i, as the Gate passes them.
func addr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

// huge refills the whole bucket in one tick; benchmarks Tick when it runs
// out (every 8 million takes), so they measure the admitted path.
var huge = Limits{Capacity: MaxCapacity, RefillRate: 1e9}

// BenchmarkAllow measures one admission decision as the Gate makes it (an
// address already parsed): a known client, one goroutine and several; a new
// client; a refused one; an API key; a listed client.
//
// The parallel cases answer different questions. hot-key/parallel admits
// every request, so every request writes the one bucket's cache line and
// the cores take turns at it: it is bound by that line, whatever the
// limiter does around it. rejected/parallel is one client over its limit
// from every core, the attack: its bucket is only read, so nothing but the
// limiter's own bookkeeping could make the cores wait for each other.
// 10k-keys/parallel has every goroutine walk all the clients, so that each
// bucket is written from every core in turn and each admitted request pulls
// its bucket's line from the other core. 10k-keys/sticky/parallel gives each
// goroutine clients of its own, as a connection's goroutine serves its
// client; neighbouring slots (2.7 to a 64-byte line) still belong to clients
// of other goroutines. 10k-keys/own-shards/parallel gives each goroutine the
// clients of its own shards, so that no line of the table is written from
// two cores: only the limiter's own shared state could make them wait.
func BenchmarkAllow(b *testing.B) {
	hot := netip.MustParseAddr("203.0.113.7")
	b.Run("hot-key", func(b *testing.B) {
		l := New(Config{Default: huge})
		l.AllowAddr(hot)
		b.ReportAllocs()
		for b.Loop() {
			if !l.AllowAddr(hot) {
				l.Tick()
			}
		}
	})
	b.Run("hot-key/parallel", func(b *testing.B) {
		l := New(Config{Default: huge})
		l.AllowAddr(hot)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if !l.AllowAddr(hot) {
					l.Tick()
				}
			}
		})
	})
	tenK := func() (*Limiter, []netip.Addr) {
		l := New(Config{Default: huge})
		as := make([]netip.Addr, 10_000)
		for i := range as {
			as[i] = addr(i)
			l.AllowAddr(as[i])
		}
		return l, as
	}
	b.Run("10k-keys/parallel", func(b *testing.B) {
		l, as := tenK()
		var seq atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := int(seq.Add(7919)) // each goroutine walks the keys from its own place
			for pb.Next() {
				if !l.AllowAddr(as[i%len(as)]) {
					l.Tick()
				}
				i++
			}
		})
	})
	b.Run("10k-keys/sticky/parallel", func(b *testing.B) {
		l, as := tenK()
		var seq atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			// RunParallel starts GOMAXPROCS goroutines: goroutine g takes
			// the keys g, g+n, g+2n, ... of n = GOMAXPROCS, in turn.
			n := runtime.GOMAXPROCS(0)
			g := int(seq.Add(1)-1) % n
			i := g
			for pb.Next() {
				if !l.AllowAddr(as[i]) {
					l.Tick()
				}
				if i += n; i >= len(as) {
					i = g
				}
			}
		})
	})
	b.Run("10k-keys/own-shards/parallel", func(b *testing.B) {
		l, as := tenK()
		n := runtime.GOMAXPROCS(0)
		mine := make([][]netip.Addr, n) // by shard, modulo n
		for _, a := range as {
			s := int(hashAddr(l.aseed, keyOf(a, l.v6bits)) >> 56)
			mine[s%n] = append(mine[s%n], a)
		}
		var seq atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			as := mine[int(seq.Add(1)-1)%n]
			i := 0
			for pb.Next() {
				if !l.AllowAddr(as[i]) {
					l.Tick()
				}
				if i++; i == len(as) {
					i = 0
				}
			}
		})
	})
	b.Run("new-key", func(b *testing.B) {
		const n = 1 << 20
		cfg := Config{Default: huge, MaxClients: n}
		l := New(cfg)
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			if i == n {
				b.StopTimer()
				l, i = New(cfg), 0
				b.StartTimer()
			}
			l.AllowAddr(addr(i))
			i++
		}
	})
	b.Run("rejected", func(b *testing.B) {
		l := New(Config{Default: Limits{Capacity: 1, RefillRate: 1}})
		l.AllowAddr(hot)
		b.ReportAllocs()
		for b.Loop() {
			if l.AllowAddr(hot) {
				b.Fatal("admitted")
			}
		}
	})
	b.Run("rejected/parallel", func(b *testing.B) {
		l := New(Config{Default: Limits{Capacity: 1, RefillRate: 1}})
		l.AllowAddr(hot)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l.AllowAddr(hot)
			}
		})
	})
	b.Run("api-key", func(b *testing.B) {
		l := New(Config{Default: huge})
		l.TakeKind(KeyAPI, "k-0123456789abcdef")
		b.ReportAllocs()
		for b.Loop() {
			if ok, _, _, _ := l.takeKind(KeyAPI, "k-0123456789abcdef"); !ok {
				l.Tick()
			}
		}
	})
	b.Run("listed-key", func(b *testing.B) {
		l := New(Config{Default: huge})
		l.SetLimits(hot.String(), huge)
		b.ReportAllocs()
		for b.Loop() {
			if !l.AllowAddr(hot) {
				l.Tick()
			}
		}
	})
}

// BenchmarkTick measures one ticker fire with a million tracked clients:
// idle, and with 1% of them active since the last tick. The sweep is paced
// to IdleTimeout (the default 10m here): each tick passes over its share of
// the slots, some 350. It reads them only in indexes where a bucket may be
// due (sweep.go); idle clients are not, once a pass has read them, so the
// first two cases measure the steady state. idle-clients=1M/read makes every
// index due before each tick, so that the tick reads its 350 slots: the
// first cycle after the clients came, or after new default limits.
func BenchmarkTick(b *testing.B) {
	for _, tc := range []struct {
		name   string
		active int
		read   bool
	}{
		{"idle-clients=1M", 0, false},
		{"clients=1M/active=1%", 10_000, false},
		{"idle-clients=1M/read", 0, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			const n = 1_000_000
			// The slowest rate: buckets never fill again, so the sweep
			// evicts none and reads every one when its index is due.
			l := New(Config{Default: Limits{Capacity: 10, RefillRate: 1e-5}})
			for i := range n {
				l.AllowAddr(addr(i))
			}
			// Their first IdleTimeout, then a cycle that reads every index:
			// the sweep now knows when each will be due.
			for range 2 * l.cycleTicks {
				l.Tick()
			}
			b.ReportAllocs()
			for b.Loop() {
				if tc.active > 0 || tc.read {
					b.StopTimer()
					for i := range tc.active {
						l.AllowAddr(addr(i))
					}
					if tc.read {
						dueNow(l)
					}
					b.StartTimer()
				}
				l.Tick()
			}
			b.StopTimer()
			if got := l.Stats().Clients; got < n/2 {
				b.Fatalf("Clients = %d: the benchmark evicted what it meant to keep", got)
			}
		})
	}
}

// dueNow makes the indexes the sweep will pass over next due, as new
// default limits do.
func dueNow(l *Limiter) {
	l.maintMu.Lock()
	next := l.m.shard
	l.maintMu.Unlock()
	for i := range 2 {
		sh := &l.shards[(next+i)%numShards]
		sh.mu.Lock()
		sh.ip.expect(0)
		sh.str[KeyIP].expect(0)
		sh.str[KeyAPI].expect(0)
		sh.mu.Unlock()
	}
}

// BenchmarkRefillPass measures the tick of the design not taken: a pass
// that writes every bucket below capacity. It walks whole shards of a
// million-client table in memory order and refreshes each bucket with one
// CompareAndSwap, and reports the cost per bucket.
func BenchmarkRefillPass(b *testing.B) {
	b.Run("clients=1M", func(b *testing.B) {
		const n = 1_000_000
		l := New(Config{Default: Limits{Capacity: 10, RefillRate: 1}})
		for i := range n {
			l.AllowAddr(addr(i))
		}
		p := l.def.Load()
		walked, si := 0, 0
		b.ReportAllocs()
		for b.Loop() {
			t := l.shards[si%numShards].ip.tab.Load()
			si++
			now := l.now.Add(1)
			for j := range t.slots {
				refresh(&t.slots[j].state, p, now)
			}
			walked += l.shards[si%numShards].ip.live
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(walked), "ns/bucket")
	})
}

// BenchmarkMemory reports the heap a tracked client costs: IPv4 clients
// (stored inline) and 16-byte API keys (the table keeps its own copy).
func BenchmarkMemory(b *testing.B) {
	const n = 1_000_000
	for _, keys := range []string{"ip", "api-key"} {
		b.Run("clients=1M/"+keys, func(b *testing.B) {
			before := heapInUse()
			l := New(Config{MaxClients: n})
			for i := range n {
				if keys == "ip" {
					l.AllowAddr(addr(i))
				} else {
					l.TakeKind(KeyAPI, key16(i))
				}
			}
			after := heapInUse()
			if got := l.Stats().Clients; got != n {
				b.Fatalf("Clients = %d, want %d", got, n)
			}
			b.ReportAllocs()
			for b.Loop() {
				l.AllowAddr(addr(1))
			}
			b.ReportMetric(float64(after-before)/n, "B/client")
			runtime.KeepAlive(l)
		})
	}
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
				ClientIP:       func(*http.Request) netip.Addr { return netip.MustParseAddr("203.0.113.7") },
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
