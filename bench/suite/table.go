package main

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"runtime"
	"strings"
	"time"

	"stdlb/bench/load"
)

// target is one thing the suite loads and what each round measured of it.
type target struct {
	name, url string
	proc      *proc // whose process group's CPU counts
	// cpuStart and cpuEnd are clock ticks sampled by the load hooks as the
	// measured window opens and closes, -1 if /proc could not be read.
	// load.Run has returned (and its hooks with it) before they are read.
	cpuStart, cpuEnd int64
	rounds           []figures
}

// figures is one round of one target.
type figures struct {
	rps      float64
	p50, p99 int64   // nanoseconds
	cpuPer1k float64 // CPU milliseconds per 1000 responses; NaN if unknown
	failed   int64   // failed requests plus non-2xx responses
}

// sampleCPU returns a load hook storing the target's CPU ticks in dst.
func (t *target) sampleCPU(dst *int64) func() {
	return func() {
		v, err := cpuTicks(t.proc.pid())
		if err != nil {
			v = -1
		}
		*dst = v
	}
}

// record turns a finished run into the round's figures and keeps them.
func (t *target) record(r *load.Result, ticksPerSecond int64) figures {
	f := figures{
		rps: r.Throughput(), p50: r.Latency.Quantile(0.5), p99: r.Latency.Quantile(0.99),
		cpuPer1k: math.NaN(), failed: r.Errors.Total(),
	}
	for code, n := range r.Status {
		if code < 200 || code > 299 {
			f.failed += n
		}
	}
	if t.cpuStart >= 0 && t.cpuEnd >= t.cpuStart && r.Responses() > 0 {
		cpuMS := float64(t.cpuEnd-t.cpuStart) * 1000 / float64(ticksPerSecond)
		f.cpuPer1k = cpuMS / (float64(r.Responses()) / 1000)
	}
	t.rounds = append(t.rounds, f)
	return f
}

// median returns the median over rounds of what pick takes from each.
func (t *target) median(pick func(figures) float64) float64 {
	xs := make([]float64, 0, len(t.rounds))
	for _, f := range t.rounds {
		if v := pick(f); !math.IsNaN(v) {
			xs = append(xs, v)
		}
	}
	if len(xs) == 0 {
		return math.NaN()
	}
	return load.Median(xs)
}

// ratioTo returns the median over rounds of t's throughput over ref's in
// the same round, which cancels drift that both saw; NaN without ref.
func (t *target) ratioTo(ref *target) float64 {
	if ref == nil {
		return math.NaN()
	}
	var xs []float64
	for i, f := range t.rounds {
		if i < len(ref.rounds) && ref.rounds[i].rps > 0 {
			xs = append(xs, f.rps/ref.rounds[i].rps)
		}
	}
	if len(xs) == 0 {
		return math.NaN()
	}
	return load.Median(xs)
}

// renderTable prints the one table of a run: targets[0] is the direct
// backend; the target named "nginx", if any, is the other reference.
func renderTable(targets []*target, notes []string) string {
	var direct, nginx *target
	if len(targets) > 0 {
		direct = targets[0]
	}
	for _, t := range targets {
		if t.name == "nginx" {
			nginx = t
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-28s %10s %9s %9s %10s %9s %10s %7s\n",
		"target", "req/s", "p50", "p99", "CPU-ms/1k", "vs nginx", "vs direct", "failed")
	rounds := 0
	for _, t := range targets {
		rounds = max(rounds, len(t.rounds))
		var failed int64
		for _, f := range t.rounds {
			failed += f.failed
		}
		fmt.Fprintf(&b, "%-28s %10.0f %9s %9s %10s %9s %10s %7d\n", t.name,
			t.median(func(f figures) float64 { return f.rps }),
			fmtNS(int64(t.median(func(f figures) float64 { return float64(f.p50) }))),
			fmtNS(int64(t.median(func(f figures) float64 { return float64(f.p99) }))),
			fmtCPU(t.median(func(f figures) float64 { return f.cpuPer1k })),
			fmtRatio(t.ratioTo(nginx)), fmtRatio(t.ratioTo(direct)), failed)
	}
	fmt.Fprintf(&b, "\nreq/s, p50, p99, CPU: medians of %d rounds; vs: median of per-round throughput ratios.\n", rounds)
	b.WriteString("CPU-ms/1k: user+sys CPU of the target's process group per 1000 responses (direct: the backend's own).\n")
	b.WriteString("failed: failed requests and non-2xx responses, all rounds. Generator and targets share this machine.\n")
	for _, n := range notes {
		b.WriteString("note: " + n + "\n")
	}
	return b.String()
}

func fmtNS(ns int64) string {
	if ns <= 0 {
		return "-"
	}
	return load.FormatNanos(ns)
}

func fmtCPU(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.1f", v)
}

func fmtRatio(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.3f", v)
}

const resultsHeader = `# make bench results

Each section is one run of ` + "`make bench`" + ` (bench/suite) with -record, appended by the
suite, newest last. Absolute figures depend on the machine; compare ratios within one run.
`

// formatSection is the table with when, where and how it was measured,
// as a section of RESULTS.md.
func formatSection(when time.Time, cmdline string, o options, table string) string {
	return fmt.Sprintf("\n### %s · nproc %d · %s\n\n`%s` · %s %s/%s · %d connections, %d rounds × %v after %v warm-up\n\n```text\n%s```\n",
		when.Format("2006-01-02 15:04 MST"), runtime.NumCPU(), cpuModel(),
		cmdline, runtime.Version(), runtime.GOOS, runtime.GOARCH, o.conns, o.rounds, o.dur, o.warmup, table)
}

// chartSubtitle says how and where a run was measured, for its chart.
func chartSubtitle(when time.Time, o options) string {
	return fmt.Sprintf("%s · nproc %d · %s · %d connections · %d rounds of %v · %s",
		when.Format("2006-01-02"), runtime.NumCPU(), cpuModel(), o.conns, o.rounds, o.dur, runtime.Version())
}

// appendResults appends a section to path, creating the file with a
// header if absent.
func appendResults(path, section string) error {
	var head string
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		head = resultsHeader
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	f.WriteString(head + section)
	if err := f.Close(); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	return nil
}

// cpuModel returns the first "model name" in /proc/cpuinfo.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if name, value, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(name) == "model name" {
			return strings.TrimSpace(value)
		}
	}
	return "unknown CPU"
}
