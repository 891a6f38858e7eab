package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"stdlb/bench/load"
)

// roundRatio is one round of a comparison: B's figure over A's, so 0.8
// throughput means B did 80% of A's requests per second and 1.5 p99 means
// B's p99 was half again A's.
type roundRatio struct {
	A          summary `json:"a"`
	B          summary `json:"b"`
	Throughput float64 `json:"throughput_ratio"`
	P50        float64 `json:"p50_ratio"`
	P99        float64 `json:"p99_ratio"`
}

// comparison is what -compare prints with -json.
type comparison struct {
	A      string       `json:"a"`
	B      string       `json:"b"`
	Rounds []roundRatio `json:"rounds"`
	// Median holds the median of the per-round ratios: pairing A and B
	// within a round cancels drift that a ratio of overall medians keeps.
	Median struct {
		Throughput float64 `json:"throughput_ratio"`
		P50        float64 `json:"p50_ratio"`
		P99        float64 `json:"p99_ratio"`
	} `json:"median"`
}

func ratio(b, a float64) float64 {
	if a == 0 {
		return 0
	}
	return b / a
}

// runCompare runs a and b in alternating rounds and prints the per-round
// ratios and their medians. Progress goes to progress as rounds finish.
func runCompare(ctx context.Context, a, b load.Config, rounds int, asJSON bool, out, progress io.Writer) error {
	results, err := load.Rounds(ctx, []load.Config{a, b}, rounds, func(round, target int, r *load.Result) {
		fmt.Fprintf(progress, "round %d/%d %s: %.1f req/s, p99 %s\n",
			round+1, rounds, "AB"[target:target+1], r.Throughput(), fmtNS(r.Latency.Quantile(0.99)))
	})
	if err != nil && len(results) == 0 {
		return err
	}
	var c comparison
	c.A, c.B = a.URL, b.URL
	var tp, p50, p99 []float64
	for _, rs := range results {
		ra, rb := rs[0], rs[1]
		rr := roundRatio{
			A: summarize(ra), B: summarize(rb),
			Throughput: ratio(rb.Throughput(), ra.Throughput()),
			P50:        ratio(float64(rb.Latency.Quantile(0.5)), float64(ra.Latency.Quantile(0.5))),
			P99:        ratio(float64(rb.Latency.Quantile(0.99)), float64(ra.Latency.Quantile(0.99))),
		}
		c.Rounds = append(c.Rounds, rr)
		tp, p50, p99 = append(tp, rr.Throughput), append(p50, rr.P50), append(p99, rr.P99)
	}
	c.Median.Throughput, c.Median.P50, c.Median.P99 = load.Median(tp), load.Median(p50), load.Median(p99)
	if asJSON {
		if werr := writeJSON(out, c); werr != nil {
			return werr
		}
	} else if werr := writeComparison(out, &c); werr != nil {
		return werr
	}
	return err // an interrupt still prints the rounds completed
}

func writeComparison(w io.Writer, c *comparison) error {
	var b strings.Builder
	fmt.Fprintf(&b, "A = %s\nB = %s\n\n", c.A, c.B)
	fmt.Fprintf(&b, "%-7s %12s %12s %7s %9s %9s %7s %9s %9s %7s\n",
		"round", "A req/s", "B req/s", "B/A", "A p50", "B p50", "B/A", "A p99", "B p99", "B/A")
	for i, r := range c.Rounds {
		fmt.Fprintf(&b, "%-7d %12.1f %12.1f %7.3f %9s %9s %7.3f %9s %9s %7.3f\n", i+1,
			r.A.Throughput, r.B.Throughput, r.Throughput,
			fmtMS(r.A.Latency.P50), fmtMS(r.B.Latency.P50), r.P50,
			fmtMS(r.A.Latency.P99), fmtMS(r.B.Latency.P99), r.P99)
	}
	fmt.Fprintf(&b, "%-7s %12s %12s %7.3f %9s %9s %7.3f %9s %9s %7.3f\n", "median", "", "",
		c.Median.Throughput, "", "", c.Median.P50, "", "", c.Median.P99)
	for _, r := range c.Rounds {
		for _, s := range []summary{r.A, r.B} {
			if n := s.Requests - s.Responses; n > 0 {
				fmt.Fprintf(&b, "note: %s had %d failed requests in a round (%v)\n", s.URL, n, s.ErrorSamples)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func fmtMS(ms float64) string { return fmtNS(int64(ms * 1e6)) }
