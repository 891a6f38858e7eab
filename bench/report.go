package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"stdlb/bench/load"
)

// summary is one run's figures as -json prints them. Latencies are in
// milliseconds.
type summary struct {
	URL            string            `json:"url"`
	Mode           string            `json:"mode"`
	Connections    int               `json:"connections"`
	Rate           float64           `json:"rate_rps,omitempty"`
	WarmupS        float64           `json:"warmup_s"`
	DurationS      float64           `json:"duration_s"`
	Requests       int64             `json:"requests"`
	Responses      int64             `json:"responses"`
	Throughput     float64           `json:"throughput_rps"`
	Latency        latency           `json:"latency_ms"`
	Service        *latency          `json:"service_ms,omitempty"`
	Status         map[string]int64  `json:"status"`
	Errors         map[string]int64  `json:"errors"`
	ErrorSamples   map[string]string `json:"error_samples,omitempty"`
	Unsent         int64             `json:"unsent"`
	Interrupted    bool              `json:"interrupted,omitempty"`
	HistogramError float64           `json:"histogram_relative_error"`
}

type latency struct {
	Min  float64 `json:"min"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
}

func latencyOf(h *load.Histogram) latency {
	ms := func(ns int64) float64 { return float64(ns) / 1e6 }
	return latency{
		Min: ms(h.Min()), Mean: h.Mean() / 1e6,
		P50: ms(h.Quantile(0.5)), P90: ms(h.Quantile(0.9)), P99: ms(h.Quantile(0.99)),
		P999: ms(h.Quantile(0.999)), Max: ms(h.Max()),
	}
}

func summarize(r *load.Result) summary {
	s := summary{
		URL: r.URL, Mode: r.Mode(), Connections: r.Conns, Rate: r.Rate,
		WarmupS: r.Warmup.Seconds(), DurationS: r.Duration.Seconds(),
		Requests: r.Requests(), Responses: r.Responses(), Throughput: r.Throughput(),
		Latency: latencyOf(&r.Latency), Status: map[string]int64{}, Errors: map[string]int64{},
		Unsent: r.Unsent, Interrupted: r.Interrupted, HistogramError: load.RelativeError,
	}
	if r.Rate > 0 {
		svc := latencyOf(&r.Service)
		s.Service = &svc
	}
	for code, n := range r.Status {
		s.Status[strconv.Itoa(code)] = n
	}
	for _, k := range load.Kinds() {
		s.Errors[k.String()] = r.Errors.Of(k)
		if msg := r.Errors.First[k]; msg != "" {
			if s.ErrorSamples == nil {
				s.ErrorSamples = map[string]string{}
			}
			s.ErrorSamples[k.String()] = msg
		}
	}
	return s
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}

// writeText prints one run for a person to read.
func writeText(w io.Writer, r *load.Result) error {
	var b strings.Builder
	line := func(label, format string, args ...any) {
		fmt.Fprintf(&b, "%-11s "+format+"\n", append([]any{label}, args...)...)
	}
	line("target", "%s", r.URL)
	mode := fmt.Sprintf("closed loop, %d connections", r.Conns)
	if r.Rate > 0 {
		mode = fmt.Sprintf("open loop at %g req/s, up to %d connections", r.Rate, r.Conns)
	}
	line("mode", "%s, %v measured after %v warm-up", mode, r.Duration.Round(time.Millisecond), r.Warmup)
	if r.Interrupted {
		line("", "interrupted: figures cover the measured time before the interrupt")
	}
	line("requests", "%d (%d responses, %d errors)", r.Requests(), r.Responses(), r.Errors.Total())
	line("throughput", "%.1f req/s", r.Throughput())
	from := "send"
	if r.Rate > 0 {
		from = "due time"
	}
	line("latency", "%s  (from %s; histogram error < %.1f%%)", percentiles(&r.Latency), from, load.RelativeError*100)
	if r.Rate > 0 {
		line("service", "%s  (from actual send: what coordinated omission would show)", percentiles(&r.Service))
	}
	codes := make([]int, 0, len(r.Status))
	for code := range r.Status {
		codes = append(codes, code)
	}
	slices.Sort(codes)
	var sc []string
	for _, code := range codes {
		sc = append(sc, fmt.Sprintf("%d: %d", code, r.Status[code]))
	}
	line("status", "%s", strings.Join(sc, "  "))
	var ec []string
	for _, k := range load.Kinds() {
		ec = append(ec, fmt.Sprintf("%s %d", k, r.Errors.Of(k)))
	}
	line("errors", "%s", strings.Join(ec, "  "))
	for _, k := range load.Kinds() {
		if msg := r.Errors.First[k]; msg != "" {
			line("", "first %s: %s", k, msg)
		}
	}
	if r.Rate > 0 {
		line("unsent", "%d (due in the window but no connection was free before the drain deadline)", r.Unsent)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func percentiles(h *load.Histogram) string {
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  p99.9 %s  max %s",
		fmtNS(h.Quantile(0.5)), fmtNS(h.Quantile(0.9)), fmtNS(h.Quantile(0.99)),
		fmtNS(h.Quantile(0.999)), fmtNS(h.Max()))
}

// fmtNS prints a duration in nanoseconds to three significant figures.
func fmtNS(ns int64) string { return load.FormatNanos(ns) }
