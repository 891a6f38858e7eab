package bucket

import (
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestBucket_NeverExceedsCapacityUnderContention(t *testing.T) {
	const capacity, workers, tries = 1000, 64, 100 // 6400 tries for 1000 tokens
	l := New(Config{Default: Limits{Capacity: capacity, RefillRate: 1}})
	var admitted atomic.Int64
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			<-start
			for range tries {
				if l.Allow("hot") {
					admitted.Add(1)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if got := admitted.Load(); got != capacity {
		t.Fatalf("admitted %d requests with refill stopped, want exactly %d", got, capacity)
	}
}

// TestBucket_NeverOverspendsWhileTicking hammers one key while the clock
// ticks: a request that read the tick counter just before a tick must not
// mistake a bucket stamped after it for an ancient one and refill it. The
// tokens taken during the ticks plus those left afterwards must add up to
// exactly the capacity, however the goroutines were scheduled.
func TestBucket_NeverOverspendsWhileTicking(t *testing.T) {
	const capacity = 100_000
	for range 5 {
		// 0.001 tokens/s at 100ms ticks: 2000 ticks add 0.2 of a token.
		l := New(Config{Default: Limits{Capacity: capacity, RefillRate: 0.001}})
		var admitted atomic.Int64
		stop := make(chan struct{})
		var ready, wg sync.WaitGroup
		for range 8 {
			ready.Add(1)
			wg.Go(func() {
				ready.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if l.Allow("hot") {
						admitted.Add(1)
					}
				}
			})
		}
		ready.Wait()
		for range 2000 {
			l.Tick()
			runtime.Gosched()
		}
		close(stop)
		wg.Wait()
		if got := admitted.Load() + int64(drain(l, "hot")); got != capacity {
			t.Fatalf("%d tokens taken across 2000 ticks adding 0.2 of a token, want exactly the capacity of %d", got, capacity)
		}
	}
}

func TestBucket_StaleReaderDoesNotRefill(t *testing.T) {
	var b bucket
	p := newParams(Limits{Capacity: 10, RefillRate: 0.001}, DefaultRefillInterval, false)
	b.state.Store(pack(p.cap, 6))
	for range 10 {
		if ok, _, _ := take(&b.state, p, 6); !ok {
			t.Fatal("a full bucket refused")
		}
	}
	// A request that loaded tick 5 before the tick that others stamped.
	if ok, left, _ := take(&b.state, p, 5); ok || left >= unitsPerToken {
		t.Fatalf("take at an older tick: ok=%v, %d units left; want refused, bucket still empty", ok, left)
	}
	if got := b.state.Load() & tickMask; got != 6 {
		t.Fatalf("stamp moved from tick 6 to %d", got)
	}
}

// drain takes every token key has and returns how many there were.
func drain(l *Limiter, key string) int {
	n := 0
	for l.Allow(key) {
		n++
	}
	return n
}

func TestRefill_ExactPerTick(t *testing.T) {
	// Each case empties the bucket, then counts what ticks bring back. The
	// counts are exact: tokens are integer millionths, so no rate drifts.
	tests := []struct {
		name  string
		lim   Limits
		ticks int
		want  int // tokens available after ticks
	}{
		{"0.1/s: none after 99 ticks", Limits{1, 0.1}, 99, 0},
		{"0.1/s: one after 100 ticks", Limits{1, 0.1}, 100, 1},
		{"0.25/s: one per 40 ticks", Limits{10, 0.25}, 400, 10},
		{"0.25/s: 39 ticks short", Limits{10, 0.25}, 399, 9},
		{"3/s: 0.3 a tick", Limits{100, 3}, 100, 30},
		{"2.5/s: 0.25 a tick", Limits{100, 2.5}, 99, 24},
		{"50/s: 5 a tick", Limits{100, 50}, 7, 35},
		{"clamped to capacity", Limits{5, 50}, 10, 5},
		{"rate beyond capacity per tick", Limits{5, 1e9}, 1, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := New(Config{Default: tt.lim})
			if got := drain(l, "c"); got != int(tt.lim.Capacity) {
				t.Fatalf("a new bucket held %d tokens, want capacity %d", got, tt.lim.Capacity)
			}
			for range tt.ticks {
				l.Tick()
			}
			if got := drain(l, "c"); got != tt.want {
				t.Fatalf("after %d ticks: %d tokens, want %d", tt.ticks, got, tt.want)
			}
		})
	}
}

func TestRefill_FractionalRateDoesNotDrift(t *testing.T) {
	// 0.1 tokens/s at 100ms ticks: one token every 100 ticks, for ever.
	l := New(Config{Default: Limits{Capacity: 1, RefillRate: 0.1}})
	l.Allow("c")
	for cycle := range 50 {
		for i := range 100 {
			if l.Allow("c") {
				t.Fatalf("cycle %d: admitted after %d ticks, want exactly 100", cycle, i)
			}
			l.Tick()
		}
		if !l.Allow("c") {
			t.Fatalf("cycle %d: refused after 100 ticks", cycle)
		}
	}
}

func TestRefill_LongIdleTopsUpToExactlyFull(t *testing.T) {
	// Capacity 10 at 0.001/s fills in 100000 ticks; 2^21 ticks also wrap the
	// 20-bit tick field of the bucket twice.
	l := New(Config{Default: Limits{Capacity: 10, RefillRate: 0.001}})
	drain(l, "c")
	for range (1 << 21) / maxCatchUp {
		l.advance(maxCatchUp)
	}
	if got := drain(l, "c"); got != 10 {
		t.Fatalf("after 2^21 idle ticks: %d tokens, want exactly capacity 10", got)
	}
}

func TestRefill_SweepKeepsSlowBucketsExactAcrossWrap(t *testing.T) {
	// The slowest refill (1 unit a tick) with a deficit of 3 tokens takes
	// 3,000,000 ticks to fill, longer than the 20-bit tick field spans. The
	// sweep rewrites the bucket before its difference could wrap.
	l := New(Config{Default: Limits{Capacity: 1000, RefillRate: 1e-9}})
	for range 3 {
		l.Allow("slow")
	}
	const ticks = 1 << 21
	for range ticks / maxCatchUp {
		l.advance(maxCatchUp)
	}
	d := l.Take("slow")
	// 997 tokens + 2^21 millionths = 999.097152; minus the one just taken.
	if d.Remaining != 998 {
		t.Fatalf("Remaining = %d after %d ticks, want 998", d.Remaining, ticks)
	}
}

func TestTopUp_TickDifferenceWraps(t *testing.T) {
	p := newParams(Limits{Capacity: 10, RefillRate: 1}, 100*time.Millisecond, false) // 0.1 token a tick
	tests := []struct {
		name      string
		last, now uint64
		want      uint64
	}{
		{"same tick", 5, 5, 2 * unitsPerToken},
		{"three ticks", 5, 8, 2*unitsPerToken + 3*p.inc},
		{"across the wrap", 1<<tickBits - 2, 1<<tickBits + 1, 2*unitsPerToken + 3*p.inc},
		{"counter far past the field", 7<<tickBits | 10, 9<<tickBits | 12, 2*unitsPerToken + 2*p.inc},
		{"clamped", 0, 1000, p.cap},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := topUp(pack(2*unitsPerToken, tt.last), p, tt.now); got != tt.want {
				t.Fatalf("topUp = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestTake_Decision(t *testing.T) {
	// Capacity 2 at 0.5/s: a token every 2s (20 ticks), full from empty in 4s.
	l := New(Config{Default: Limits{Capacity: 2, RefillRate: 0.5}})
	steps := []struct {
		ticks int
		want  Decision
	}{
		{0, Decision{Allowed: true, Limit: 2, Remaining: 1, Reset: 2 * time.Second, Window: 4 * time.Second}},
		{0, Decision{Allowed: true, Limit: 2, Remaining: 0, Reset: 4 * time.Second, Window: 4 * time.Second}},
		{0, Decision{Allowed: false, Limit: 2, Remaining: 0, RetryAfter: 2 * time.Second, Reset: 4 * time.Second, Window: 4 * time.Second}},
		{5, Decision{Allowed: false, Limit: 2, Remaining: 0, RetryAfter: 1500 * time.Millisecond, Reset: 3500 * time.Millisecond, Window: 4 * time.Second}},
		{15, Decision{Allowed: true, Limit: 2, Remaining: 0, Reset: 4 * time.Second, Window: 4 * time.Second}},
	}
	for i, s := range steps {
		for range s.ticks {
			l.Tick()
		}
		if got := l.Take("c"); got != s.want {
			t.Fatalf("step %d: Take = %+v, want %+v", i, got, s.want)
		}
	}
}

func TestLimits_Validate(t *testing.T) {
	tests := []struct {
		lim     Limits
		wantErr string
	}{
		{Limits{1, 0.1}, ""},
		{Limits{MaxCapacity, 1e9}, ""},
		{Limits{0, 1}, "capacity: must be a positive integer at most 8388608"},
		{Limits{-1, 1}, "capacity: must be a positive integer at most 8388608"},
		{Limits{MaxCapacity + 1, 1}, "capacity: must be a positive integer at most 8388608"},
		{Limits{1, 0}, "refill_rate: must be a positive number of tokens per second, at most 1e9"},
		{Limits{1, -2}, "refill_rate: must be a positive number of tokens per second, at most 1e9"},
		{Limits{1, 2e9}, "refill_rate: must be a positive number of tokens per second, at most 1e9"},
	}
	for _, tt := range tests {
		err := tt.lim.Validate()
		if got := errString(err); got != tt.wantErr {
			t.Errorf("%+v.Validate() = %q, want %q", tt.lim, got, tt.wantErr)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestLimiter_TenSecondsAdmitCapacityPlusRateTimesTen: a client asking
// without pause for 10 s gets exactly C + R x 10, for rates that fill a
// bucket in one tick, in several, and in less than one.
func TestLimiter_TenSecondsAdmitCapacityPlusRateTimesTen(t *testing.T) {
	for _, lim := range []Limits{{100, 50}, {5, 50}, {1, 0.5}, {30, 3.3}, {1000, 999}} {
		l := New(Config{Default: lim})
		admitted := drain(l, "greedy")
		for range 100 { // 10 s of 100ms ticks
			l.Tick()
			admitted += drain(l, "greedy")
		}
		if want := int(float64(lim.Capacity) + lim.RefillRate*10); admitted != want {
			t.Errorf("%+v: %d admitted in 10 s, want %d", lim, admitted, want)
		}
	}
}

func TestLimits_ValidateForRefusesWhatCannotBeHonoured(t *testing.T) {
	tests := []struct {
		lim       Limits
		interval  time.Duration
		instances int
		want      string
	}{
		{Limits{5, 50}, 100 * time.Millisecond, 1, ""},
		{Limits{1, 50}, 100 * time.Millisecond, 1, "capacity: 1 is less than one refill (refill_rate 50 x refill_interval 100ms = 5 tokens), so the bucket would drop the surplus and admit only about 10 a second: raise capacity to at least 5 or shorten rate_limit.refill_interval to at most 20ms"},
		{Limits{1, 50}, 20 * time.Millisecond, 1, ""},
		{Limits{3, 50}, 100 * time.Millisecond, 2, "capacity: 3 is less than one refill"},
		{Limits{1, 1e-6}, 100 * time.Millisecond, 1, "refill_rate: 1e-06 is less than one millionth of a token per refill_interval (100ms); the smallest rate is 1e-05 a second"},
	}
	for _, tt := range tests {
		got := errString(tt.lim.ValidateFor(tt.interval, tt.instances))
		if tt.want == "" && got != "" || !strings.HasPrefix(got, tt.want) {
			t.Errorf("%+v at %v over %d: %q, want %q", tt.lim, tt.interval, tt.instances, got, tt.want)
		}
	}
}

// TestLimits_ValidateForAdvisesOnlyValuesThatPass: every fix a refusal
// suggests (a capacity, a refill interval, a rate) passes when applied,
// including where capacity would have to pass MaxCapacity or the interval
// go below a millisecond.
func TestLimits_ValidateForAdvisesOnlyValuesThatPass(t *testing.T) {
	capFix := regexp.MustCompile(`raise capacity to at least (\S+)`)
	intervalFix := regexp.MustCompile(`shorten rate_limit.refill_interval to at most (\S+)`)
	rateFix := regexp.MustCompile(`lower refill_rate to at most (\S+)`)
	tests := []struct {
		lim       Limits
		interval  time.Duration
		instances int
	}{
		{Limits{1, 50}, 100 * time.Millisecond, 1},
		{Limits{MaxCapacity, 1e9}, time.Second, 1},     // capacity cannot grow enough
		{Limits{1, 1e9}, time.Millisecond, 1},          // the interval cannot shrink enough
		{Limits{100, 1e9}, 10 * time.Millisecond, 1},   // neither
		{Limits{7, 3}, 10 * time.Second, 1},            // a fractional interval
		{Limits{MaxCapacity, 9e6}, time.Second, 1},     // the rate rounds down, not up
		{Limits{3, 50}, 100 * time.Millisecond, 2},     // shared by instances
		{Limits{1001, 1e9}, time.Minute, 7},            // only the rate, over instances
		{Limits{MaxCapacity - 1, 1e9}, time.Second, 3}, // the capacity each instance holds rounds up
	}
	for _, tt := range tests {
		err := tt.lim.ValidateFor(tt.interval, tt.instances)
		if err == nil {
			t.Fatalf("%+v at %v over %d: accepted, want a refusal", tt.lim, tt.interval, tt.instances)
		}
		msg := err.Error()
		fixes := 0
		if m := capFix.FindStringSubmatch(msg); m != nil {
			fixes++
			c, perr := strconv.ParseInt(m[1], 10, 64)
			lim := Limits{c, tt.lim.RefillRate}
			if perr != nil || lim.ValidateFor(tt.interval, tt.instances) != nil {
				t.Errorf("%q: capacity %s does not pass: %v", msg, m[1], lim.ValidateFor(tt.interval, tt.instances))
			}
		}
		if m := intervalFix.FindStringSubmatch(msg); m != nil {
			fixes++
			d, perr := time.ParseDuration(m[1])
			if perr != nil || tt.lim.ValidateFor(d, tt.instances) != nil {
				t.Errorf("%q: refill_interval %s does not pass: %v", msg, m[1], tt.lim.ValidateFor(d, tt.instances))
			}
		}
		if m := rateFix.FindStringSubmatch(msg); m != nil {
			fixes++
			r, perr := strconv.ParseFloat(m[1], 64)
			lim := Limits{tt.lim.Capacity, r}
			if perr != nil || lim.ValidateFor(tt.interval, tt.instances) != nil {
				t.Errorf("%q: refill_rate %s does not pass: %v", msg, m[1], lim.ValidateFor(tt.interval, tt.instances))
			}
		}
		if fixes == 0 {
			t.Errorf("%q suggests nothing", msg)
		}
	}
}
