// Command soak runs the balancer for minutes under mixed traffic while
// faults are injected, and checks every answer against the request it was
// sent for (issue 9's soak). It is not part of make test.
//
//	go run ./bench/soak -duration 5m                 # from the module root
//	go run ./bench/soak -duration 30s -v -access-log # shorter, with the fault timeline
//	go run ./bench/soak -race -duration 3m -c 4      # the balancer built with -race
//
// It builds the balancer (go build -o DIR/stdlb ., or takes -bin), starts
// it as a child process on free loopback ports with a configuration it
// writes, and runs in process -backends well-behaved backends and one
// flaky backend. -c clients then run a weighted mix of scenarios: GETs and
// HEADs on keep-alive connections, pipelines of 2 to 6 requests, uploads
// (Content-Length, chunked, Expect: 100-continue; 1 byte to -max-upload),
// echoes streamed both ways, bodies made of "GET /smuggled" request lines,
// uploads to an endpoint that answers 403 or 413 before reading the body,
// WebSocket sessions, and clients that hang up or reset mid-head,
// mid-body, while waiting, and mid-answer.
//
// Every request carries a unique id in its path and in X-Soak-Id; the
// backends answer with it, so an answer meant for another request shows.
// Meanwhile a backend is killed every -kill-every (its listener and every
// connection closed, some reset) and restarted -down-for later on the
// same port; the configuration is rewritten and reloaded with SIGHUP every
// -reload-every, alternating two backend sets and two policies; and the
// flaky backend answers a share (-flaky) of its requests by resetting,
// stalling, or sending garbage or ambiguous framing (both Content-Length
// and Transfer-Encoding, Content-Length twice, obs-fold, bare LF, ...),
// each marked so that a client that receives one knows, and with a whole
// poison answer after it, so that a balancer that reused the connection
// would hand it to the next client.
//
// The balancer's RSS, threads and open fds (/proc/PID) and its requests in
// flight and upgraded connections (the admin API's /metrics) are sampled
// every -sample-every. At the end the load stops, the soak waits for the
// balancer to go quiet, samples once more, sends SIGTERM, and reports:
// requests by scenario, answers by status, errors by kind with the first
// example of each, every mismatch with the exact request and answer,
// RSS/fds over time, how the balancer exited, and its stderr warnings and
// errors grouped. Each error is put down to what caused it (the flaky
// backend's misbehaviour on that request, a backend killed while serving
// it, a kill or reload in the 2 s before) or reported UNEXPLAINED: those
// are the ones to chase, with -only to run the scenarios concerned alone.
//
// Exit status: 0 clean; 1 a mismatch (an answer that is another request's
// or one the balancer had to refuse, a smuggled request at a backend, a
// WebSocket echo that differs), a panic, fatal error or data race on the
// balancer's stderr, the balancer dying, or not exiting 0 within its
// drain; 2 bad usage or a failure to set up.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// options are the command's flags.
type options struct {
	duration, timeout                        time.Duration
	clients, backends                        int
	bin, root                                string
	race, accessLog, keep, verbose           bool
	seed                                     uint64
	killEvery, downFor, reloadEvery, sampled time.Duration
	flaky                                    float64
	stall                                    time.Duration
	maxUpload                                int64
	only                                     string
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&o.duration, "duration", time.Minute, "how long the load runs")
	fs.IntVar(&o.clients, "c", 8, "client workers, each with its own connection")
	fs.IntVar(&o.backends, "backends", 4, "well-behaved backends (at least 3), besides the flaky one")
	fs.StringVar(&o.bin, "bin", "", "balancer binary to run (default: go build the module at -root)")
	fs.StringVar(&o.root, "root", "", "module root (default: the nearest directory upwards with go.mod)")
	fs.BoolVar(&o.race, "race", false, "build the balancer with -race (a data race fails the soak)")
	fs.BoolVar(&o.accessLog, "access-log", false, "turn the balancer's access log on (written to a file)")
	fs.Uint64Var(&o.seed, "seed", 0, "random seed (default: from the clock)")
	fs.DurationVar(&o.killEvery, "kill-every", 20*time.Second, "kill a backend this often (0: never)")
	fs.DurationVar(&o.downFor, "down-for", 5*time.Second, "how long a killed backend stays down")
	fs.DurationVar(&o.reloadEvery, "reload-every", 15*time.Second, "rewrite the config and send SIGHUP this often (0: never)")
	fs.DurationVar(&o.sampled, "sample-every", 5*time.Second, "how often RSS, fds and gauges are sampled")
	fs.Float64Var(&o.flaky, "flaky", 0.3, "share of the flaky backend's answers that misbehave")
	fs.DurationVar(&o.stall, "stall", 4*time.Second, "how long the flaky backend stalls (the balancer waits 3s)")
	fs.Int64Var(&o.maxUpload, "max-upload", 3<<20, "largest upload, in bytes")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "a client's limit for one scenario; passing it is reported as a hang")
	fs.StringVar(&o.only, "only", "", "comma-separated scenarios to run instead of the whole mix (to chase one finding)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (binary, config, access and stderr logs)")
	fs.BoolVar(&o.verbose, "v", false, "print faults as they happen")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.backends < 3:
		return o, errors.New("-backends must be at least 3")
	case o.clients < 1 || o.duration <= 0 || o.sampled <= 0 || o.timeout <= 0 || o.maxUpload < 1:
		return o, errors.New("-c, -duration, -sample-every, -timeout and -max-upload must be positive")
	}
	if _, err := mixOf(o.only); err != nil {
		return o, err
	}
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	return o, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "soak:", err)
		return 2
	}
	r, err := soak(o, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "soak:", err)
		return 2
	}
	r.print(stdout)
	if len(r.failures()) > 0 {
		return 1
	}
	return 0
}

// soak sets up, runs the load with faults, stops the balancer and
// returns what happened.
func soak(o options, out io.Writer) (*result, error) {
	dir, err := os.MkdirTemp("", "stdlb-soak-")
	if err != nil {
		return nil, err
	}
	if o.keep {
		fmt.Fprintln(out, "soak: keeping", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	bin := o.bin
	if bin == "" {
		root := o.root
		if root == "" {
			if root, err = moduleRoot(); err != nil {
				return nil, err
			}
		}
		if bin, err = build(root, dir, o.race); err != nil {
			return nil, err
		}
	}

	t := newTally()
	onBad := func(what string) { t.mismatch("", what) }
	ex := t.ex
	var backends []*backend
	defer func() {
		for _, b := range backends {
			b.kill(func() bool { return false })
		}
	}()
	for i := range o.backends {
		b := newBackend(fmt.Sprintf("b%d", i+1), "127.0.0.1:0", onBad, ex)
		if err := b.start(); err != nil {
			return nil, err
		}
		backends = append(backends, b)
	}
	fl := newFlaky("flaky", o.flaky, o.stall, o.seed, onBad, ex)
	flakyAddr, err := fl.start("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer fl.close()

	logf := func(string, ...any) {}
	if o.verbose {
		logf = func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	}
	f := &faults{backends: backends, flakyURL: "http://" + flakyAddr, rng: rand.New(rand.NewPCG(o.seed, 1)), ex: ex,
		killEvery: o.killEvery, downFor: o.downFor, reloadEvery: o.reloadEvery, logf: logf}
	bal, err := startBalancer(bin, dir, f.set(0), o.accessLog)
	if err != nil {
		return nil, err
	}
	defer bal.kill()
	f.bal = bal
	if err := bal.waitReady(20 * time.Second); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "soak: balancer pid %d on %s (admin %s); backends %s; flaky %s; %d clients for %v; seed %d\n",
		bal.pid(), bal.addr, bal.admin, describeSet(f.set(0)), flakyAddr, o.clients, o.duration, o.seed)

	ctx, cancel := context.WithTimeout(context.Background(), o.duration)
	defer cancel()
	ctx, stopSignals := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM) // Ctrl-C: stop early, still report
	defer stopSignals()
	go func() { // ends with the load or with the balancer
		select {
		case <-bal.exited:
			cancel()
		case <-ctx.Done():
		}
	}()

	start := time.Now()
	s := &sampler{bal: bal, t: t, every: o.sampled, start: start, out: out}
	var bg sync.WaitGroup
	bg.Go(func() { s.run(ctx) })
	bg.Go(func() { f.run(ctx) })
	mix, _ := mixOf(o.only)
	var ids atomic.Uint64
	var workers sync.WaitGroup
	for i := range o.clients {
		w := &worker{addr: bal.addr, rng: rand.New(rand.NewPCG(o.seed, uint64(i)+100)), t: t, ids: &ids,
			timeout: o.timeout, maxUpload: o.maxUpload}
		workers.Go(func() { w.run(ctx, mix) })
	}
	workers.Wait()
	elapsed := time.Since(start)
	cancel()
	bg.Wait()

	r := &result{opts: o, elapsed: elapsed, tally: t, samples: s.samples, faults: f, flakyModes: fl.counts(),
		log: bal.log, backendRequests: map[string]int64{}}
	for _, b := range backends {
		r.backendRequests[b.name] = b.requests.Load()
	}
	if !bal.alive() {
		r.died = fmt.Sprintf("the balancer exited during the load: %v", bal.waitErr)
	} else {
		r.quiet, r.quietAfter = s.settle(20 * time.Second)
		r.after = s.take()
		r.exitCode, r.exitTook, r.exitInTime = bal.stop(shutdownGrace + 5*time.Second)
	}
	if o.accessLog {
		r.accessLines, _ = countLines(filepath.Join(dir, "access.log"))
	}
	return r, nil
}

// moduleRoot returns the nearest directory, from the working directory
// upwards, that holds a go.mod declaring module stdlb.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.HasPrefix(string(b), "module stdlb\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod of module stdlb here or above: run from the repository or pass -root or -bin")
		}
		dir = parent
	}
}
