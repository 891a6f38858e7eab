package load

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// exactQuantile is the definition Quantile approximates: the sample of rank
// ceil(q*n) in sorted order.
func exactQuantile(sorted []int64, q float64) int64 {
	rank := int(math.Ceil(q * float64(len(sorted))))
	rank = max(rank, 1)
	return sorted[rank-1]
}

func TestHistogram_QuantilesWithinRelativeError(t *testing.T) {
	const n = 200_000
	dists := []struct {
		name string
		gen  func(r *rand.Rand) int64
	}{
		{"uniform-1us-10ms", func(r *rand.Rand) int64 { return 1_000 + r.Int64N(10_000_000) }},
		{"exponential-mean-2ms", func(r *rand.Rand) int64 { return int64(r.ExpFloat64() * 2e6) }},
		{"lognormal-median-500us", func(r *rand.Rand) int64 { return int64(math.Exp(r.NormFloat64()*1.5) * 5e5) }},
		{"bimodal-100us-and-1s", func(r *rand.Rand) int64 {
			if r.IntN(100) == 0 {
				return 1e9 + r.Int64N(1e8)
			}
			return 1e5 + r.Int64N(1e4)
		}},
		{"small-exact-0-255", func(r *rand.Rand) int64 { return r.Int64N(256) }},
		{"huge-near-int64-max", func(r *rand.Rand) int64 { return math.MaxInt64 - r.Int64N(1<<60) }},
	}
	quantiles := []float64{0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999}
	for _, d := range dists {
		t.Run(d.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			var h Histogram
			samples := make([]int64, n)
			for i := range samples {
				samples[i] = d.gen(r)
				h.Record(samples[i])
			}
			slices.Sort(samples)
			for _, q := range quantiles {
				want := exactQuantile(samples, q)
				got := h.Quantile(q)
				if rel := math.Abs(float64(got-want)) / float64(want); rel > RelativeError {
					t.Errorf("q=%v: got %d, exact %d, relative error %.5f > %.5f", q, got, want, rel, RelativeError)
				}
			}
			if h.Count() != n || h.Min() != samples[0] || h.Max() != samples[n-1] {
				t.Errorf("count/min/max = %d/%d/%d, want %d/%d/%d",
					h.Count(), h.Min(), h.Max(), n, samples[0], samples[n-1])
			}
		})
	}
}

func TestHistogram_MergeEqualsRecordingEverything(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var all Histogram
	parts := make([]Histogram, 8)
	for i := range 100_000 {
		v := int64(r.ExpFloat64() * 1e6)
		all.Record(v)
		parts[i%len(parts)].Record(v)
	}
	var merged Histogram // zero value: Merge must allocate
	for i := range parts {
		merged.Merge(&parts[i])
	}
	merged.Merge(nil)
	merged.Merge(&Histogram{})
	if merged.Count() != all.Count() || merged.Min() != all.Min() || merged.Max() != all.Max() {
		t.Fatalf("merged count/min/max %d/%d/%d, want %d/%d/%d",
			merged.Count(), merged.Min(), merged.Max(), all.Count(), all.Min(), all.Max())
	}
	if math.Abs(merged.Mean()-all.Mean()) > 1e-6*all.Mean() {
		t.Errorf("merged mean %v, want %v", merged.Mean(), all.Mean())
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		if got, want := merged.Quantile(q), all.Quantile(q); got != want {
			t.Errorf("q=%v: merged %d, single %d", q, got, want)
		}
	}
}

func TestHistogram_EdgeCases(t *testing.T) {
	var empty Histogram
	if empty.Quantile(0.5) != 0 || empty.Max() != 0 || empty.Mean() != 0 || empty.Count() != 0 {
		t.Errorf("empty histogram should answer zeros")
	}

	var one Histogram
	one.Record(123_456_789)
	for _, q := range []float64{0, 0.5, 0.999, 1} {
		if got := one.Quantile(q); got != 123_456_789 {
			t.Errorf("single value: Quantile(%v) = %d, want the value itself", q, got)
		}
	}

	var neg Histogram
	neg.Record(-5)
	if neg.Min() != 0 || neg.Max() != 0 {
		t.Errorf("negative value should count as 0, got min %d max %d", neg.Min(), neg.Max())
	}
}

// TestBucketLayout checks the index arithmetic on every power-of-two
// boundary: bucketOf and bucketRange must agree and buckets must tile the
// number line without gaps.
func TestBucketLayout(t *testing.T) {
	prevEnd := int64(0)
	for i := range numBuckets {
		lo, w := bucketRange(i)
		if lo != prevEnd {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", i, lo, prevEnd)
		}
		if got := bucketOf(lo); got != i {
			t.Fatalf("bucketOf(%d) = %d, want %d", lo, got, i)
		}
		if last := lo + (w - 1); bucketOf(last) != i {
			t.Fatalf("bucketOf(%d) = %d, want %d", last, bucketOf(last), i)
		}
		if i >= 2*subCount && float64(w)/float64(lo) > 1.0/subCount {
			t.Fatalf("bucket %d width %d over lower bound %d exceeds 1/%d", i, w, lo, subCount)
		}
		prevEnd = lo + w // wraps to MinInt64 after the last bucket
	}
	if prevEnd != math.MinInt64 {
		t.Fatalf("buckets end at %d, want them to cover all of int64", prevEnd)
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	var h Histogram
	b.ReportAllocs()
	v := int64(1)
	for b.Loop() {
		h.Record(v)
		v = v*7 + 13&0xffffffff
	}
}
