package bucket

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"sync/atomic"
)

// The table is open addressing with linear probing, one per key kind and
// shard, read without a lock. A slot is a key and a state word. The state
// word says what the slot is:
//
//	0                 empty: a lookup that reaches it stops
//	live|tokens|tick  a client's bucket (see pack), on the default limits
//	listed            a listed client: its bucket is in the index's listed map
//	tomb              evicted: lookups skip it; it is never reused
//	moved             copied to a newer table: look again under the lock
//
// Invariants that make the lock-free read safe:
//   - A slot's key is written once, before its state is first stored, and
//     never again: a reader that sees a non-empty state reads a stable key.
//   - Writers (insert, evict, list, move) hold the shard's mutex; a reader
//     writes only a live state word, by CompareAndSwap.
//   - A slot leaves the live states only by CompareAndSwap (to tomb, listed
//     or moved), so a reader's concurrent take either lands before it and is
//     carried along, or fails and the reader looks again. No take is lost.
//   - Slots are not reused in a table, and a rebuilt table is a new array, so
//     a reader holding an old table or slot never meets another client there.
const (
	tomb   = 1
	moved  = 2
	listed = 3
)

// maxLoad: a table is rebuilt when more than 3/4 of its slots are used
// (tombstones included); a rebuilt table is at most half full.
const minTableSize = 16

type slot[K comparable] struct {
	key   K
	state atomic.Uint64
}

type table[K comparable] struct {
	slots []slot[K]
	mask  uint64
	used  int // non-empty slots; guarded by the shard's mutex
}

func newTable[K comparable](size int) *table[K] {
	return &table[K]{slots: make([]slot[K], size), mask: uint64(size - 1)}
}

// find returns the slot holding key and the state read from it, or nil. It
// takes no lock and writes nothing.
func (t *table[K]) find(h uint64, key K) (*slot[K], uint64) {
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		st := s.state.Load()
		if st == 0 {
			return nil, 0
		}
		if st != tomb && s.key == key {
			return s, st
		}
	}
}

// put stores key with state st in the first empty slot of its probe
// sequence. Caller holds the mutex, has checked that key is absent and that
// the table has room.
func (t *table[K]) put(h uint64, key K, st uint64) *slot[K] {
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		if s.state.Load() == 0 {
			s.key = key
			s.state.Store(st)
			t.used++
			return s
		}
	}
}

// index is one key kind's part of a shard: the table, and the buckets of
// listed clients, which live outside the table's slots so that they can carry
// their own limits and are never evicted or counted against MaxClients.
type index[K comparable] struct {
	tab    atomic.Pointer[table[K]]
	listed atomic.Pointer[map[K]*bucket] // never changed in place; writers hold the mutex
	live   int                           // slots holding a live or listed state; guarded by the mutex
	hash   func(K) uint64
	own    func(K) K // a copy the table may keep: string keys point into request buffers

	// due and lowered are guarded by the mutex and kept by the sweep
	// (sweep.go): before tick due no bucket of the index can be evictable
	// or stale, so the sweep passes over it without reading a slot;
	// lowered is the lowest due a writer announced since the sweep last
	// began to read the index.
	due, lowered uint64
}

// expect announces that a bucket of x may need the sweep from tick d on:
// a writer that adds a bucket, or changes one other than by a take, calls
// it. (A take only makes its bucket's due later.) Caller holds the mutex.
func (x *index[K]) expect(d uint64) {
	x.due = min(x.due, d)
	x.lowered = min(x.lowered, d)
}

func (x *index[K]) init(hash func(K) uint64, own func(K) K) {
	x.tab.Store(newTable[K](minTableSize))
	x.listed.Store(&map[K]*bucket{})
	x.hash, x.own = hash, own
}

// room makes sure the table can take one more slot, rebuilding it when it
// is too full. Caller holds the mutex.
func (x *index[K]) room() *table[K] {
	t := x.tab.Load()
	if (t.used+1)*4 <= len(t.slots)*3 {
		return t
	}
	size := minTableSize
	for size < (x.live+1)*2 {
		size *= 2
	}
	return x.rebuild(size)
}

// rebuild copies the live and listed slots into a new table of size slots
// and publishes it. Each old slot is marked moved by CompareAndSwap, which
// captures its last state: a reader's take that lands first is carried over,
// one that comes after fails and looks again. Caller holds the mutex.
func (x *index[K]) rebuild(size int) *table[K] {
	old := x.tab.Load()
	t := newTable[K](size)
	for i := range old.slots {
		s := &old.slots[i]
		for {
			st := s.state.Load()
			if st == 0 || st == tomb {
				break
			}
			if s.state.CompareAndSwap(st, moved) {
				t.put(x.hash(s.key), s.key, st)
				break
			}
		}
	}
	x.tab.Store(t)
	x.expect(0) // a sweep reading the old table may have missed slots
	return t
}

// addrKey is an IP client key as the table stores it: the 16 bytes of
// the address as two words, IPv4 as IPv4-mapped, IPv6 masked to the
// configured prefix. It holds no pointer, so the garbage collector never
// scans the IP tables.
type addrKey struct{ hi, lo uint64 }

// hashAddr mixes a key with the limiter's seed (wyhash's multiply-fold,
// twice): an attacker who does not know the seed cannot aim addresses at one
// probe sequence.
func hashAddr(seed [2]uint64, k addrKey) uint64 {
	return mix(mix(k.hi^seed[0], k.lo^seed[1]), seed[0]^0x9e3779b97f4a7c15)
}

func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// keyOf returns the table key of a, masked to v6bits when a is IPv6. An
// IPv4 address and its IPv4-mapped IPv6 form are one key.
func keyOf(a netip.Addr, v6bits int) addrKey {
	if a.Is4() {
		return key4(a)
	}
	return keyOf6(a, v6bits)
}

// key4 is keyOf for an IPv4 address, small enough for the compiler to
// inline into the request path.
func key4(a netip.Addr) addrKey {
	b := a.As4()
	return addrKey{0, 0xffff<<32 | uint64(binary.BigEndian.Uint32(b[:]))}
}

func keyOf6(a netip.Addr, v6bits int) addrKey {
	b := a.As16() // the zone, if any, is dropped
	k := addrKey{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
	if a.Is4In6() || v6bits >= 128 {
		return k
	}
	return k.masked(v6bits)
}

// masked returns k with all but its first bits bits cleared.
func (k addrKey) masked(bits int) addrKey {
	if bits <= 64 {
		return addrKey{k.hi &^ (1<<(64-bits) - 1), 0}
	}
	return addrKey{k.hi, k.lo &^ (1<<(128-bits) - 1)}
}

// text is the key as logs, the API and the clients file show it: an IPv4
// address, or an IPv6 prefix such as 2001:db8::/64 (an address when v6bits is
// 128).
func (k addrKey) text(v6bits int) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], k.hi)
	binary.BigEndian.PutUint64(b[8:], k.lo)
	a := netip.AddrFrom16(b).Unmap()
	if a.Is6() && v6bits < 128 {
		return netip.PrefixFrom(a, v6bits).String()
	}
	return a.String()
}
