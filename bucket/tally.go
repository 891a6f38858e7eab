package bucket

import (
	"cmp"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"
)

// The request counters (Stats.Admitted, Stats.Rejected) and the rejection
// sketches behind the minute's summary are striped: numStripes tallies, each
// on cache lines of its own, and a request writes only the tally of the
// goroutine deciding it. A counter shared by every request, or by every
// client of a shard, is a second contended write on each decision: two
// cores taking turns at it move its cache line back and forth, which is
// what kept parallel Allow from scaling even for distinct keys, and what
// made a rejected hot key (the attack) cost a shared write though its bucket
// is only read. Sums over the stripes are exact: a goroutine only ever adds.
const (
	stripeBits  = 6
	numStripes  = 1 << stripeBits
	sketchCells = 16 // per key kind and stripe
	summaryTop  = 10 // clients named in a summary line
)

// tally is one stripe of the counters: the decisions made by the goroutines
// that map to it, and per key kind a sketch of the clients they rejected.
type tally struct {
	admitted atomic.Uint64
	rejected atomic.Uint64
	ip       rejSketch[addrKey]
	str      [2]rejSketch[string] // by KeyKind
}

// stripe is a tally padded to whole cache lines, so that neighbouring
// stripes never share one.
type stripe struct {
	tally
	_ [(128 - unsafe.Sizeof(tally{})%128) % 128]byte
}

// tally returns the stripe of the calling goroutine, chosen by the address
// of its stack. Go gives no way to ask which processor a goroutine runs on,
// but a goroutine's stack is its own, so two goroutines share a stripe only
// by chance (1 in 64 for two). A goroutine keeps its stripe while it stays
// at one call depth and its stack is not moved, and a request deciding on
// another stripe costs only speed: no count depends on which stripe it
// lands in.
func (l *Limiter) tally() *tally {
	var here byte
	sp := uint64(uintptr(unsafe.Pointer(&here)))
	return &l.stripes[(sp>>11)*0x9e3779b97f4a7c15>>(64-stripeBits)].tally
}

// count records one decision in tl: a rejection also in rej, the sketch of
// the client's key kind, when the client has a slot (s; nil for the
// overflow bucket).
func count[K comparable](tl *tally, rej *rejSketch[K], ok bool, h uint64, s *slot[K]) {
	if ok {
		tl.admitted.Add(1)
		return
	}
	tl.rejected.Add(1)
	if s != nil {
		rej.note(h, s)
	}
}

// decisions returns the admitted and rejected totals, summed over the
// stripes.
func (l *Limiter) decisions() (admitted, rejected uint64) {
	for i := range l.stripes {
		admitted += l.stripes[i].admitted.Load()
		rejected += l.stripes[i].rejected.Load()
	}
	return admitted, rejected
}

// rejSketch names the clients one stripe rejected most in a summary period
// without a lock or a map on the rejection path: cells of one client and a
// count, a client's cell chosen by its hash. A rejection of the cell's
// client adds one; a rejection of another client takes one away, and takes
// the cell over once the count is zero (the "frequent items" counter of
// Misra and Gries, one per cell). A client rejected more often than all
// others of its cell together keeps the cell; its count is a lower bound of
// its rejections in that stripe. Racing updates may lose a count: the
// summary's per-client figures are approximate, its total exact.
type rejSketch[K comparable] struct {
	cells [sketchCells]rejCell[K]
}

type rejCell[K comparable] struct {
	s atomic.Pointer[slot[K]] // the client, by its slot (whose key never changes)
	n atomic.Uint64
}

func (r *rejSketch[K]) note(h uint64, s *slot[K]) {
	c := &r.cells[h>>48&(sketchCells-1)]
	if c.s.Load() == s {
		c.n.Add(1)
		return
	}
	if n := c.n.Load(); n > 0 {
		c.n.CompareAndSwap(n, n-1)
	} else if c.s.Swap(s) != s {
		c.n.Store(1)
	}
}

// summarize empties the rejection sketches into one log line naming the
// clients rejected most; API keys appear only as KeyTag. A client rejected
// by goroutines of several stripes is named once, with the sum. The total
// is exact; the per-client counts are lower bounds (see rejSketch). Stripes
// that rejected nothing since the last summary are not read. Caller holds
// maintMu.
func (l *Limiter) summarize() (notice, bool) {
	var total uint64
	byName := map[string]uint64{}
	for i := range l.stripes {
		tl := &l.stripes[i].tally
		r := tl.rejected.Load()
		if r == l.m.rejSeen[i] {
			continue
		}
		total += r - l.m.rejSeen[i]
		l.m.rejSeen[i] = r
		drainSketch(&tl.ip, byName, func(k addrKey) string { return "ip:" + k.text(l.v6bits) })
		drainSketch(&tl.str[KeyIP], byName, func(k string) string { return "ip:" + k })
		drainSketch(&tl.str[KeyAPI], byName, func(k string) string { return "key:" + KeyTag(k) })
	}
	if total == 0 {
		return notice{}, false
	}
	type entry struct {
		name string
		n    uint64
	}
	all := make([]entry, 0, len(byName))
	for name, n := range byName {
		all = append(all, entry{name, n})
	}
	slices.SortFunc(all, func(a, b entry) int { return cmp.Or(cmp.Compare(b.n, a.n), strings.Compare(a.name, b.name)) })
	var named uint64
	var top strings.Builder
	for i, e := range all[:min(len(all), summaryTop)] {
		if i > 0 {
			top.WriteByte(' ')
		}
		top.WriteString(e.name + "=" + strconv.FormatUint(e.n, 10))
		named += e.n
	}
	return notice{slog.LevelInfo, "rate limit: rejections", []slog.Attr{
		slog.Duration("period", time.Duration(l.minuteTicks)*l.interval),
		slog.Uint64("rejected", total),
		slog.Int("clients", len(all)),
		slog.String("top", top.String()),
		slog.Uint64("others", total-min(named, total)),
	}}, true
}

func drainSketch[K comparable](r *rejSketch[K], byName map[string]uint64, name func(K) string) {
	for i := range r.cells {
		c := &r.cells[i]
		if c.n.Load() == 0 && c.s.Load() == nil {
			continue
		}
		s := c.s.Swap(nil)
		if n := c.n.Swap(0); s != nil && n > 0 {
			byName[name(s.key)] += n
		}
	}
}
