package bucket

import (
	"hash/maphash"
	"net/netip"
	"sync/atomic"
)

// Allow takes a token from the bucket of the client key and reports whether
// there was one. A key that is an IP address is the IP-kind client of that
// address (an IPv6 address: of its prefix); any other key is an API key.
// A known client's Allow takes no lock, writes its bucket with one
// CompareAndSwap (a refusal writes nothing there) and its goroutine's
// counter (tally.go), and allocates nothing.
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

// takeAddr decides for the client at address a. The common case, a known
// client on the default limits whose bucket did not change since find read
// it, is keyOf, take and count written out: the compiler inlines none of
// them, and the calls cost a fifth of the decision (BenchmarkAllow/hot-key).
// Anything else (a new or listed client, a lost race) goes to takeIn.
func (l *Limiter) takeAddr(a netip.Addr) (bool, uint64, *params, bool) {
	var k addrKey
	if a.Is4() {
		k = key4(a)
	} else {
		k = keyOf6(a, l.v6bits)
	}
	h := hashAddr(l.aseed, k)
	sh := &l.shards[h>>56]
	now := l.now.Load()
	if s, st := sh.ip.tab.Load().find(h, k); st&live != 0 {
		p := l.def.Load()
		t := topUp(st, p, now)
		tl := l.tally()
		if t < unitsPerToken {
			tl.rejected.Add(1)
			tl.ip.note(h, s)
			return false, t, p, false
		}
		t -= unitsPerToken
		if s.state.CompareAndSwap(st, pack(t, stamp(st, now))) {
			tl.admitted.Add(1)
			return true, t, p, false
		}
	}
	tl := l.tally()
	return takeIn(l, sh, &sh.ip, h, k, tl, &tl.ip)
}

func (l *Limiter) takeKind(kind KeyKind, key string) (bool, uint64, *params, bool) {
	if kind == KeyIP {
		if a, err := netip.ParseAddr(key); err == nil {
			return l.takeAddr(a)
		}
	}
	h := maphash.String(l.seed, key)
	sh := &l.shards[h>>56]
	tl := l.tally()
	return takeIn(l, sh, &sh.str[kind&1], h, key, tl, &tl.str[kind&1])
}

// takeIn takes a token for key from its bucket in x, which it finds without
// a lock; a client not found there (new, or met while its slot changes) goes
// to takeNew. The decision is counted in tl, a rejection also in rej.
func takeIn[K comparable](l *Limiter, sh *shard, x *index[K], h uint64, key K, tl *tally, rej *rejSketch[K]) (bool, uint64, *params, bool) {
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
				count(tl, rej, ok, h, s)
				return ok, t, p, false
			}
		}
	}
	return takeNew(l, sh, x, h, key, now, tl, rej)
}

// takeNew decides for a client that takeIn did not find: under the shard's
// mutex it looks again and, when the client is still absent, adds a bucket
// for it, full, and takes from it. When the table is at MaxClients and no
// full bucket can be evicted, the client is decided by the shared overflow
// bucket instead: new clients then share the default limits until room
// comes back, while every known and every listed client keeps its own.
func takeNew[K comparable](l *Limiter, sh *shard, x *index[K], h uint64, key K, now uint64, tl *tally, rej *rejSketch[K]) (bool, uint64, *params, bool) {
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
		count(tl, rej, ok, h, s)
		return ok, t, p, false
	}
	if !reserved {
		sh.mu.Unlock()
		p := l.def.Load()
		ok, t, _ := take(&l.over.state, p, now)
		l.overflowed.Add(1)
		count(tl, rej, ok, h, nil)
		return ok, t, p, true
	}
	p := l.def.Load()
	room(l, x).put(h, x.own(key), pack(p.cap-unitsPerToken, now))
	x.live++
	x.expect(now + l.idleTicks)
	sh.mu.Unlock()
	tl.admitted.Add(1)
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
