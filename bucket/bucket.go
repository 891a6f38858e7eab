package bucket

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
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

// MaxRefillRate is the largest refill_rate accepted, in tokens per second:
// the configuration's range.
const MaxRefillRate = 1e9

// Validate reports the first problem with l on its own, naming the field as
// it is spelled in JSON so that config and admin errors point at what to
// fix. ValidateFor also checks l against a refill interval.
func (l Limits) Validate() error {
	if l.Capacity < 1 || l.Capacity > MaxCapacity {
		return errors.New("capacity: must be a positive integer at most 8388608")
	}
	if !(l.RefillRate > 0) || l.RefillRate > MaxRefillRate {
		return errors.New("refill_rate: must be a positive number of tokens per second, at most 1e9")
	}
	return nil
}

// ValidateFor is Validate for buckets refilled every interval, shared by
// instances balancers (see Config.Instances). The limiter adds a tick's
// refill at once and never lets a bucket hold more than its capacity, so a
// capacity below one tick's refill would silently throw the surplus away
// (capacity 1 at 50/s and 100ms admits 10 a second, not 50); and a rate
// below one millionth of a token a tick cannot be counted. Both are refused
// with what would work instead: only values that would pass.
func (l Limits) ValidateFor(interval time.Duration, instances int) error {
	if err := l.Validate(); err != nil {
		return err
	}
	n := float64(max(instances, 1))
	perTick := l.RefillRate * interval.Seconds() / n
	capacity := math.Ceil(float64(l.Capacity) / n)
	if perTick > capacity {
		return fmt.Errorf("capacity: %d is less than one refill (refill_rate %g x refill_interval %s = %.6g tokens%s), "+
			"so the bucket would drop the surplus and admit only about %.6g a second: %s",
			l.Capacity, l.RefillRate, interval, perTick*n, instancesNote(instances),
			capacity/interval.Seconds()*n, subTickFixes(perTick*n, capacity*n, interval))
	}
	if perTick*unitsPerToken < 1 {
		return fmt.Errorf("refill_rate: %g is less than one millionth of a token per refill_interval (%s)%s; "+
			"the smallest rate is %.6g a second", l.RefillRate, interval, instancesNote(instances),
			n/unitsPerToken/interval.Seconds())
	}
	return nil
}

func instancesNote(instances int) string {
	if instances > 1 {
		return fmt.Sprintf(", shared by %d instances", instances)
	}
	return ""
}

// subTickFixes says what would make room for a tick's refill of refill
// tokens in a bucket that holds held (the capacity as the instances share
// it) at ticks of interval: a capacity, if one within MaxCapacity is
// enough; a shorter interval, if one of a millisecond or more is; and
// otherwise, or when capacity cannot grow, the rate the capacity holds,
// rounded down to six digits. Each value suggested passes ValidateFor.
func subTickFixes(refill, held float64, interval time.Duration) string {
	var fixes []string
	need := math.Ceil(refill)
	if need <= MaxCapacity {
		fixes = append(fixes, fmt.Sprintf("raise capacity to at least %d", int64(need)))
	}
	// The interval at which a tick's refill is exactly held.
	if d := time.Duration(float64(interval) * held / refill); d >= time.Millisecond {
		fixes = append(fixes, fmt.Sprintf("shorten rate_limit.refill_interval to at most %s", d.Truncate(time.Millisecond)))
	}
	if len(fixes) < 2 {
		rate := floor6(held / interval.Seconds())
		fixes = append(fixes, "lower refill_rate to at most "+strconv.FormatFloat(rate, 'f', -1, 64))
	}
	msg := strings.Join(fixes, " or ")
	if need > MaxCapacity {
		msg += fmt.Sprintf(" (capacity is at most %d)", MaxCapacity)
	}
	return msg
}

// floor6 is x > 0 rounded down to six significant digits.
func floor6(x float64) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'e', 5, 64), 64)
	if v > x { // rounded up: one step down in the sixth digit
		step := math.Pow(10, math.Floor(math.Log10(v))-5)
		v, _ = strconv.ParseFloat(strconv.FormatFloat(v-step, 'e', 5, 64), 64)
	}
	return v
}

// Fixed point: tokens are counted in millionths so that a fractional refill
// per tick (0.1/s at 100ms is 10000 units) is an exact integer and nothing
// drifts however long a bucket lives.
const unitsPerToken = 1_000_000

// The state word of a bucket packs a live flag (the top bit), tokens (in
// units, the next 43 bits: MaxCapacity tokens fit) and the low tickBits of
// the limiter tick at which those tokens were counted. Words without the live
// flag are the table's markers (see table.go). A
// bucket is therefore one CompareAndSwap away from any update, and tick
// differences are taken modulo 1<<tickBits: the limiter's sweep rewrites
// every bucket older than staleTicks long before the difference could wrap
// (see Limiter.sweep), so an ancient bucket still tops up to full.
const (
	tickBits   = 20
	tickMask   = 1<<tickBits - 1
	staleTicks = 1 << 18
	live       = 1 << 63
)

// params is an immutable, precomputed Limits for one refill interval. Buckets
// point at one; changing a client's limits swaps the pointer.
type params struct {
	lim      Limits
	cap      uint64        // capacity in units
	inc      uint64        // refill per tick in units, 1 <= inc <= cap
	incShift uint          // the least s with inc <= 1<<s: (cap-t)>>incShift ticks never overstate a refill
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
	p.incShift = uint(bits.Len64(p.inc - 1))
	return p
}

// bucket is the bucket of a listed client (one with limits of its own) or
// the shared overflow bucket: a state word and the limits it follows. The
// buckets of other clients are bare state words in the table's slots and
// follow the limiter's default.
type bucket struct {
	state atomic.Uint64          // see pack; dead once a listing ends
	p     atomic.Pointer[params] // the limits; never nil once published
}

// dead is the state of a listed client's bucket whose listing ended: its
// tokens have moved back to a table slot, and a request that still holds
// the bucket must look the client up again.
const dead = 1

func pack(tokens, tick uint64) uint64 { return live | tokens<<tickBits | tick&tickMask }

// tokensOf returns the tokens, in units, of a live state word.
func tokensOf(s uint64) uint64 { return s &^ live >> tickBits }

// topUp returns the tokens a bucket in state s holds at tick now: what it
// held plus one inc for every tick since, never more than capacity. Overflow
// cannot happen: the difference is below 1<<19, inc and the stored tokens are
// below 1<<43.
func topUp(s uint64, p *params, now uint64) uint64 {
	return min(tokensOf(s)+elapsed(s, now)*p.inc, p.cap)
}

// elapsed returns the ticks from state s's stamp to now. A caller that loaded
// now just before a tick can meet a stamp written after it by a faster
// request: the difference is then "negative", which modulo 1<<20 would look
// like a very old bucket and refill it to full. Real differences stay below
// staleTicks plus one sweep cycle (under 1<<19, see Limiter.sweep), so a
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

// take tops the state word w up to tick now and, when it holds a whole
// token, takes one, all in one CompareAndSwap. It reports whether a token was
// taken and the tokens left (on refusal: the tokens there are, less than
// one), and found false when w holds no live bucket (a marker: the caller
// looks again). A refusal writes nothing, so a throttled client costs no
// cache-line ownership.
func take(w *atomic.Uint64, p *params, now uint64) (ok bool, tokens uint64, found bool) {
	for {
		s := w.Load()
		if s&live == 0 {
			return false, 0, false
		}
		if ok, t, done := takeOnce(w, s, p, now); done {
			return ok, t, true
		}
	}
}

// takeOnce is one attempt of take on w, read in the live state s. It
// reports done false, and nothing else of use, when w changed since it was
// read.
func takeOnce(w *atomic.Uint64, s uint64, p *params, now uint64) (ok bool, tokens uint64, done bool) {
	t := topUp(s, p, now)
	if t < unitsPerToken {
		return false, t, true
	}
	t -= unitsPerToken
	return true, t, w.CompareAndSwap(s, pack(t, stamp(s, now)))
}

// refresh rewrites a live word as of tick now without changing its meaning:
// the sweep calls it on buckets not written for staleTicks so that tick
// differences never wrap. A lost race means someone else just wrote it.
func refresh(w *atomic.Uint64, p *params, now uint64) {
	if s := w.Load(); s&live != 0 {
		w.CompareAndSwap(s, pack(topUp(s, p, now), stamp(s, now)))
	}
}

// convert rewrites the live word w, which followed params from, as of tick
// now for params to: refilled at the old rate up to now, then cut to the new
// capacity. It reports false when w is not live.
func convert(w *atomic.Uint64, from, to *params, now uint64) bool {
	for {
		s := w.Load()
		if s&live == 0 {
			return false
		}
		if w.CompareAndSwap(s, pack(min(topUp(s, from, now), to.cap), stamp(s, now))) {
			return true
		}
	}
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
