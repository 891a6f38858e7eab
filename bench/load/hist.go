package load

import (
	"fmt"
	"math"
	"math/bits"
	"strconv"
)

// The histogram is log-linear, like HdrHistogram: values below 2^subBits
// have a bucket each (exact), and every power-of-two range above that is
// split into subCount equal buckets. A bucket's width is therefore at most
// 1/subCount of its lower bound, and reporting the bucket's midpoint is off
// by at most half of that: 1/256 ≈ 0.4% of the true value.
const (
	subBits  = 7
	subCount = 1 << subBits // buckets per power of two
	// Values below 2*subCount are exact; every index from there on covers
	// a power of two split into subCount buckets. The largest int64 has
	// bit length 63, so the last power of two starts at index
	// (63-subBits-1)*subCount + subCount and ends subCount later.
	numBuckets = (63 - subBits + 1) * subCount

	// RelativeError is the largest relative error of a Quantile result
	// against the true sample at that rank: half a bucket width over the
	// bucket's lower bound.
	RelativeError = 1.0 / (2 * subCount)
)

// Histogram records non-negative int64 values (the load generator records
// nanoseconds) in log-linear buckets, so quantiles come out within
// RelativeError of the exact answer without keeping or sorting samples.
// Count, Min, Max and Mean are exact.
//
// The zero value is an empty histogram ready to use. A Histogram is not
// safe for concurrent use: give each goroutine its own and Merge them.
type Histogram struct {
	counts []uint64 // allocated on first Record or Merge; numBuckets long
	n      uint64
	sum    float64
	min    int64
	max    int64
}

// bucketOf returns the bucket index for v (v >= 0).
func bucketOf(v int64) int {
	if v < 2*subCount {
		return int(v)
	}
	// shift leaves v>>shift in [subCount, 2*subCount).
	shift := bits.Len64(uint64(v)) - subBits - 1
	return shift*subCount + int(v>>shift)
}

// bucketRange returns the lowest value in bucket i and the bucket's width.
func bucketRange(i int) (lo, width int64) {
	if i < 2*subCount {
		return int64(i), 1
	}
	shift := i/subCount - 1
	sub := int64(i - shift*subCount)
	return sub << shift, 1 << shift
}

// Record adds one value. Negative values count as 0.
func (h *Histogram) Record(v int64) {
	if v < 0 {
		v = 0
	}
	if h.counts == nil {
		h.counts = make([]uint64, numBuckets)
	}
	h.counts[bucketOf(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
}

// Merge adds every value recorded in o to h. o is left unchanged.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil || o.n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]uint64, numBuckets)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// Count returns how many values were recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Min returns the smallest recorded value, or 0 when empty.
func (h *Histogram) Min() int64 { return h.min }

// Max returns the largest recorded value, or 0 when empty.
func (h *Histogram) Max() int64 { return h.max }

// Mean returns the arithmetic mean of the recorded values, or 0 when empty.
func (h *Histogram) Mean() float64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / float64(h.n)
}

// Quantile returns the value at quantile q (0.5 for the median, 0.999 for
// p99.9): the recorded value of rank ceil(q*Count), to within RelativeError.
// q <= 0 gives Min, q >= 1 gives Max, and an empty histogram gives 0.
func (h *Histogram) Quantile(q float64) int64 {
	switch {
	case h.n == 0 || math.IsNaN(q):
		return 0
	case q <= 0:
		return h.min
	case q >= 1:
		return h.max
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen < rank {
			continue
		}
		lo, width := bucketRange(i)
		// The midpoint halves the worst-case error; clamping to the exact
		// extremes keeps p100-like answers and single-bucket data exact.
		return min(max(lo+width/2, h.min), h.max)
	}
	return h.max
}

// FormatNanos prints a duration given in nanoseconds with three significant
// figures ("1.23ms", "456µs"), which is all a Quantile result supports.
func FormatNanos(ns int64) string {
	d := float64(ns)
	switch {
	case d < 1e3:
		return fmt.Sprintf("%.0fns", d)
	case d < 1e6:
		return strconv.FormatFloat(d/1e3, 'g', 3, 64) + "µs"
	case d < 1e9:
		return strconv.FormatFloat(d/1e6, 'g', 3, 64) + "ms"
	default:
		return strconv.FormatFloat(d/1e9, 'g', 3, 64) + "s"
	}
}
