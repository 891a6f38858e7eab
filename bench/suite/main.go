// Command suite is `make bench`: it builds the balancer and the test
// backend, starts two backends, the balancer twice (plain, and with rate
// limiting and access log on), and nginx and HAProxy when installed, all on
// loopback ports it picks (with nginx, also the balancer and nginx over TLS
// with one self-signed certificate: tls.go); loads each target in
// alternating rounds with the bench/load generator; and prints one table.
// It writes the table and an SVG bar chart of it to bench/out/ (not
// tracked: a run changes no file of the repository); with -record it also
// appends the table to bench/RESULTS.md and writes the chart to
// bench/results.svg, which the documents embed. Every process it starts is
// stopped by process group on exit, on error and on SIGINT/SIGTERM.
//
//	go run ./bench/suite                # from the module root
//	go run ./bench/suite -rounds 3 -d 2s -keep
//	go run ./bench/suite -record        # a run for the record
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"stdlb/bench/load"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	interrupted := ctx.Err() != nil // stop cancels ctx too
	stop()
	switch {
	case err == nil:
	case errors.Is(err, errUsage):
		os.Exit(2)
	case interrupted:
		fmt.Fprintln(os.Stderr, "bench/suite: interrupted; every process it started is stopped")
		os.Exit(130)
	default:
		fmt.Fprintln(os.Stderr, "bench/suite:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

type options struct {
	root, out, results, chart string
	rounds, conns             int
	dur, warmup               time.Duration
	keep, record              bool
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("suite", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.root, "root", ".", "module root: where `go build .` builds the balancer")
	fs.StringVar(&o.out, "out", "bench/out", "directory each run's table and chart are written to, relative to -root")
	fs.BoolVar(&o.record, "record", false, "also append the table to -results and write the chart to -chart")
	fs.StringVar(&o.results, "results", "bench/RESULTS.md", "with -record: file the table is appended to, relative to -root")
	fs.StringVar(&o.chart, "chart", "bench/results.svg", "with -record: file the chart is written to, relative to -root")
	fs.IntVar(&o.rounds, "rounds", 5, "rounds; each loads every target once, in rotating order")
	fs.IntVar(&o.conns, "c", 64, "connections")
	fs.DurationVar(&o.dur, "d", 3*time.Second, "measured time per target per round")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "warm-up before each measured run")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (binaries, configs, logs)")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || o.rounds < 1 || o.conns < 1 || o.dur <= 0 {
		if err == nil {
			fmt.Fprintln(stderr, "suite: want no arguments, -rounds >= 1, -c >= 1, -d > 0")
		}
		return o, errUsage
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "stdlb-bench-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	if o.keep {
		fmt.Fprintf(stderr, "keeping %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	var ps procs
	defer ps.stopAll() // runs before RemoveAll: processes first, then their files

	fmt.Fprintln(stderr, "building the balancer and the test backend...")
	stdlbBin, backendBin := filepath.Join(dir, "stdlb"), filepath.Join(dir, "testbackend")
	for _, b := range [][2]string{{stdlbBin, "."}, {backendBin, "./testbackend"}} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", b[0], b[1])
		cmd.Dir, cmd.Stdout, cmd.Stderr = o.root, stderr, stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build %s: %w", b[1], err)
		}
	}

	targets, notes, err := startTargets(ctx, &ps, dir, stdlbBin, backendBin)
	if err != nil {
		return err
	}
	configs := make([]load.Config, len(targets))
	for i, t := range targets {
		configs[i] = load.Config{
			URL: t.url, Conns: o.conns, Duration: o.dur, Warmup: o.warmup, Timeout: 5 * time.Second,
			Insecure:     strings.HasPrefix(t.url, "https:"), // the TLS rows' self-signed certificate
			MeasureStart: t.sampleCPU(&t.cpuStart), MeasureEnd: t.sampleCPU(&t.cpuEnd),
		}
	}
	fmt.Fprintf(stderr, "%d targets × %d rounds × (%v + %v warm-up), %d connections\n",
		len(targets), o.rounds, o.dur, o.warmup, o.conns)
	tck := clockTicks()
	_, err = load.Rounds(ctx, configs, o.rounds, func(round, i int, r *load.Result) {
		f := targets[i].record(r, tck)
		fmt.Fprintf(stderr, "round %d/%d  %-28s %9.0f req/s  p99 %-8s  %s CPU-ms/1k req\n",
			round+1, o.rounds, targets[i].name, f.rps, fmtNS(f.p99), fmtCPU(f.cpuPer1k))
	})
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}

	if n := tlsNote(targets); n != "" {
		notes = append(notes, n)
	}
	table := renderTable(targets, notes)
	fmt.Fprint(stdout, table)
	return keepResults(o, args, table, targets, time.Now().UTC(), stderr)
}

// keepResults writes the run's table and chart to o.out and, with
// o.record, adds them to the record.
func keepResults(o options, args []string, table string, targets []*target, when time.Time, stderr io.Writer) error {
	cmdline := strings.TrimSpace("go run ./bench/suite " + strings.Join(args, " "))
	section := formatSection(when, cmdline, o, table)
	chart := renderChart(targets, chartSubtitle(when, o))
	dir := filepath.Join(o.root, o.out)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	base := filepath.Join(dir, "bench-"+when.Format("20060102-150405"))
	for _, f := range []struct{ path, data string }{{base + ".md", section}, {base + ".svg", chart}} {
		if err := os.WriteFile(f.path, []byte(f.data), 0o644); err != nil {
			return fmt.Errorf("results: %w", err)
		}
	}
	fmt.Fprintf(stderr, "wrote %s.md and .svg\n", base)
	if !o.record {
		return nil
	}
	path := filepath.Join(o.root, o.results)
	if err := appendResults(path, section); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.root, o.chart), []byte(chart), 0o644); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	fmt.Fprintf(stderr, "recorded in %s and %s\n", path, o.chart)
	return nil
}

// startTargets starts the backends and every proxy and waits until each
// answers. It returns the targets to load, direct first, and notes on
// proxies skipped.
func startTargets(ctx context.Context, ps *procs, dir, stdlbBin, backendBin string) ([]*target, []string, error) {
	ports, err := freePorts(11) // 8-10: the TLS rows
	if err != nil {
		return nil, nil, err
	}
	backends := ports[0:2]
	var targets []*target
	var notes []string
	add := func(name string, p *proc, port int) error {
		url := fmt.Sprintf("http://127.0.0.1:%d/", port)
		if err := waitReady(ctx, p, url, 15*time.Second); err != nil {
			return err
		}
		targets = append(targets, &target{name: name, url: url, proc: p})
		return nil
	}
	for i, port := range backends {
		name := fmt.Sprintf("b%d", i+1)
		p, err := ps.start(dir, "testbackend-"+name, backendBin,
			"-addr", fmt.Sprintf("127.0.0.1:%d", port), "-name", name, "-quiet")
		if err != nil {
			return nil, nil, err
		}
		if i == 0 {
			err = add("direct (backend b1)", p, port)
		} else {
			err = waitReady(ctx, p, fmt.Sprintf("http://127.0.0.1:%d/", port), 15*time.Second)
		}
		if err != nil {
			return nil, nil, err
		}
	}

	for i, v := range []struct {
		name, file string
		limited    bool
	}{
		{"stdlb", "stdlb", false},
		{"stdlb +ratelimit +accesslog", "stdlb-rl-log", true},
	} {
		port, admin := ports[2+2*i], ports[3+2*i]
		cfgPath := filepath.Join(dir, v.file+".json")
		if err := writeJSONFile(cfgPath, stdlbConfig(dir, v.file, port, admin, backends, v.limited)); err != nil {
			return nil, nil, err
		}
		p, err := ps.start(dir, v.file, stdlbBin, "-config", cfgPath)
		if err != nil {
			return nil, nil, err
		}
		if err := add(v.name, p, port); err != nil {
			return nil, nil, err
		}
	}

	var nginxBin string // for the TLS rows, when installed
	if bin, err := exec.LookPath("nginx"); err != nil {
		notes = append(notes, "nginx: not installed, skipped (apt-get install nginx to compare)")
	} else {
		conf := filepath.Join(dir, "nginx.conf")
		if err := os.MkdirAll(filepath.Join(dir, "nginx-tmp"), 0o755); err != nil {
			return nil, nil, fmt.Errorf("nginx temp dir: %w", err)
		}
		if err := os.WriteFile(conf, []byte(nginxConfig(dir, ports[6], backends)), 0o644); err != nil {
			return nil, nil, fmt.Errorf("nginx config: %w", err)
		}
		p, err := ps.start(dir, "nginx", bin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "nginx-error.log"))
		if err != nil {
			return nil, nil, err
		}
		if err := add("nginx", p, ports[6]); err != nil {
			return nil, nil, err
		}
		nginxBin = bin
	}

	if bin, err := exec.LookPath("haproxy"); err != nil {
		notes = append(notes, "haproxy: not installed, skipped (apt-get install haproxy to compare)")
	} else {
		conf := filepath.Join(dir, "haproxy.cfg")
		if err := os.WriteFile(conf, []byte(haproxyConfig(ports[7], backends)), 0o644); err != nil {
			return nil, nil, fmt.Errorf("haproxy config: %w", err)
		}
		p, err := ps.start(dir, "haproxy", bin, "-f", conf, "-db")
		if err != nil {
			return nil, nil, err
		}
		if err := add("haproxy", p, ports[7]); err != nil {
			return nil, nil, err
		}
	}

	if nginxBin != "" {
		tlsTargets, err := startTLSTargets(ctx, ps, dir, stdlbBin, nginxBin, ports[8:11], backends)
		if err != nil {
			return nil, nil, err
		}
		targets = append(targets, tlsTargets...)
	}
	return targets, notes, nil
}
