package bucket

import (
	"fmt"
	"hash/maphash"
	"maps"
	"net/netip"
	"strings"
)

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

// convertAll converts every live slot of x. Caller holds the shard's mutex.
func convertAll[K comparable](x *index[K], from, to *params, now uint64) {
	t := x.tab.Load()
	for i := range t.slots {
		convert(&t.slots[i].state, from, to, now)
	}
	x.expect(0) // buckets may be full sooner, or at once
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
	x.expect(now) // whatever changes below, the next sweep reads the index
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
