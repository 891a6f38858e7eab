package bucket

import (
	"errors"
	"math"
	"sync/atomic"
	"time"
)

// MaxCapacity is the largest bucket a client may have, in tokens. It is what
// fits the token field of a bucket's packed state word (see bucket) with room
// to add a tick's refill without overflow.
const MaxCapacity = 1 << 23

// Limits is one client's token-bucket setting: a bucket of Capacity tokens
// (the burst) refilled at RefillRate tokens per second. Fractional rates such
// as 0.1 (one token every ten seconds) are exact for any rate with at most
// six decimal places per refill interval. JSON: {"capacity": 10, "refill_rate": 1}.
type Limits struct {
	Capacity   int64   `json:"capacity"`
	RefillRate float64 `json:"refill_rate"`
}

// Validate reports the first problem with l, naming the field as it is
// spelled in JSON so that config and admin errors point at what to fix.
func (l Limits) Validate() error {
	if l.Capacity < 1 || l.Capacity > MaxCapacity {
		return errors.New("capacity: must be a positive integer at most 8388608")
	}
	if !(l.RefillRate > 0) || math.IsInf(l.RefillRate, 0) {
		return errors.New("refill_rate: must be a positive number")
	}
	return nil
}

// Fixed point: tokens are counted in millionths so that a fractional refill
// per tick (0.1/s at 100ms is 10000 units) is an exact integer and nothing
// drifts however long a bucket lives.
const unitsPerToken = 1_000_000

// The state word of a bucket packs tokens (in units, high 44 bits) and the
// low tickBits of the limiter tick at which those tokens were counted. A
// bucket is therefore one CompareAndSwap away from any update, and tick
// differences are taken modulo 1<<tickBits: the limiter's sweep rewrites
// every bucket older than staleTicks long before the difference could wrap
// (see Limiter.sweepShard), so an ancient bucket still tops up to full.
const (
	tickBits   = 20
	tickMask   = 1<<tickBits - 1
	staleTicks = 1 << 18
)

// params is an immutable, precomputed Limits for one refill interval. Buckets
// point at one; changing a client's limits swaps the pointer.
type params struct {
	lim      Limits
	cap      uint64        // capacity in units
	inc      uint64        // refill per tick in units, 1 <= inc <= cap
	interval time.Duration // tick period
	override bool          // a per-client override, not the default
}

// newParams precomputes lim for ticks of the given interval. Out-of-range
// values are clamped rather than refused: callers validate at the edge
// (config, clients file, admin API) and the hot path must not fail.
func newParams(lim Limits, interval time.Duration, override bool) *params {
	c := min(max(lim.Capacity, 1), MaxCapacity)
	p := &params{lim: lim, cap: uint64(c) * unitsPerToken, interval: interval, override: override}
	// rate tokens/s * interval ns * 1e-9 s/ns * 1e6 units/token.
	f := lim.RefillRate * float64(interval.Nanoseconds()) / 1e3
	switch {
	case !(f >= 1): // NaN, zero, negative, or below one unit per tick
		p.inc = 1
	case f >= float64(p.cap):
		p.inc = p.cap
	default:
		p.inc = uint64(math.Round(f))
	}
	return p
}

// bucket is one client's token bucket. The zero value is an empty bucket at
// tick 0 that uses the limiter's default limits. All methods are safe for
// concurrent use; the table only recycles a bucket while no one holds it.
type bucket struct {
	state atomic.Uint64          // tokens<<tickBits | tick&tickMask
	p     atomic.Pointer[params] // nil: the limiter's default
}

func pack(tokens, tick uint64) uint64 { return tokens<<tickBits | tick&tickMask }

// topUp returns the tokens a bucket in state s holds at tick now: what it
// held plus one inc for every tick since, never more than capacity. Overflow
// cannot happen: the difference is below 1<<20, inc and the stored tokens are
// at most 1<<43.
func topUp(s uint64, p *params, now uint64) uint64 {
	return min(s>>tickBits+elapsed(s, now)*p.inc, p.cap)
}

// elapsed returns the ticks from state s's stamp to now. A caller that loaded
// now just before a tick can meet a stamp written after it by a faster
// request: the difference is then "negative", which modulo 1<<20 would look
// like a very old bucket and refill it to full. Real differences stay below
// staleTicks plus one sweep cycle (under 1<<19, see Limiter.sweepShard), so a
// difference in the upper half means the stamp is ahead, and no time passed.
func elapsed(s, now uint64) uint64 {
	if d := (now - s) & tickMask; d < 1<<(tickBits-1) {
		return d
	}
	return 0
}

// stamp is the tick to write back into a bucket read in state s at tick now:
// the later of the two, so a stamp never moves backwards.
func stamp(s, now uint64) uint64 {
	if (now-s)&tickMask < 1<<(tickBits-1) {
		return now
	}
	return s
}

// take tops the bucket up to tick now and, when it holds a whole token, takes
// one, all in one CompareAndSwap. It reports whether a token was taken and
// the tokens left (on refusal: the tokens there are, less than one). A
// refusal writes nothing, so a throttled client costs no cache-line
// ownership.
func (b *bucket) take(p *params, now uint64) (bool, uint64) {
	for {
		s := b.state.Load()
		t := topUp(s, p, now)
		if t < unitsPerToken {
			return false, t
		}
		t -= unitsPerToken
		if b.state.CompareAndSwap(s, pack(t, stamp(s, now))) {
			return true, t
		}
	}
}

// level returns the tokens the bucket holds at tick now and how many ticks
// ago it was last written, without writing.
func (b *bucket) level(p *params, now uint64) (tokens, idle uint64) {
	s := b.state.Load()
	return topUp(s, p, now), elapsed(s, now)
}

// refresh rewrites the bucket as of tick now without changing its meaning:
// the sweep calls it on buckets not written for staleTicks so that tick
// differences never wrap. A lost race means someone else just wrote it.
func (b *bucket) refresh(p *params, now uint64) {
	s := b.state.Load()
	b.state.CompareAndSwap(s, pack(topUp(s, p, now), stamp(s, now)))
}

// ticksFor returns how many ticks it takes p to refill need units.
func (p *params) ticksFor(need uint64) uint64 {
	return (need + p.inc - 1) / p.inc
}

// dur converts ticks to a duration, saturating instead of overflowing for
// slow refill rates.
func (p *params) dur(ticks uint64) time.Duration {
	if p.interval <= 0 {
		return 0
	}
	if ticks > uint64(math.MaxInt64/int64(p.interval)) {
		return math.MaxInt64
	}
	return time.Duration(ticks) * p.interval
}

// decide turns the outcome of a take into a Decision.
func (p *params) decide(ok bool, tokens uint64, shared bool) Decision {
	d := Decision{
		Allowed:   ok,
		Limit:     int64(p.cap / unitsPerToken),
		Remaining: int64(tokens / unitsPerToken),
		Reset:     p.dur(p.ticksFor(p.cap - tokens)),
		Window:    p.dur(p.ticksFor(p.cap)),
		Override:  p.override,
		Shared:    shared,
	}
	if !ok {
		d.RetryAfter = p.dur(p.ticksFor(unitsPerToken - tokens))
	}
	return d
}

// Decision is the outcome of Limiter.Take with what rate-limit headers need.
// Durations are measured in whole ticks from now, so they may be up to one
// refill interval longer than the true wait.
type Decision struct {
	Allowed    bool          // a token was taken
	Limit      int64         // the client's capacity
	Remaining  int64         // whole tokens left after this decision
	RetryAfter time.Duration // until the next token; 0 when allowed
	Reset      time.Duration // until the bucket is full again
	Window     time.Duration // capacity/refill_rate: time to fill from empty, the policy window
	Override   bool          // the client has its own limits, not the default
	Shared     bool          // decided by the shared overflow bucket (table full)
}
