// Command bench is an HTTP/1.1 load generator that reports throughput and
// latency percentiles people can trust: closed loop (-c workers, each
// sending its next request when the last is answered) or open loop (-rate,
// latency counted from each request's due time so a stalled server cannot
// hide its stall), a warm-up left out of the figures, and A/B comparison in
// alternating rounds.
//
//	go run ./bench -url http://127.0.0.1:8080/ -c 64 -d 10s
//	go run ./bench -url http://127.0.0.1:8080/ -rate 20000 -c 256 -d 30s
//	go run ./bench -url http://127.0.0.1:9001/ -compare http://127.0.0.1:8080/ -rounds 5
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"stdlb/bench/load"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// headerFlag collects repeated -H 'Name: value' flags.
type headerFlag struct{ h http.Header }

func (f *headerFlag) String() string {
	if f == nil || f.h == nil {
		return ""
	}
	var parts []string
	for name, vs := range f.h {
		for _, v := range vs {
			parts = append(parts, name+": "+v)
		}
	}
	return strings.Join(parts, ", ")
}

func (f *headerFlag) Set(s string) error {
	name, value, ok := strings.Cut(s, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(name, " \t\r\n") || strings.ContainsAny(value, "\r\n") {
		return fmt.Errorf("want 'Name: value', got %q", s)
	}
	if f.h == nil {
		f.h = http.Header{}
	}
	f.h.Add(name, strings.TrimSpace(value))
	return nil
}

// run is main without the process: it returns the exit status (0 ok,
// 1 failed or no response at all, 2 bad usage, 130 interrupted).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		headers  headerFlag
		url      = fs.String("url", "http://127.0.0.1:8080/", "target `URL` (http or https)")
		conns    = fs.Int("c", 64, "connections: closed-loop workers, or the cap on requests in flight with -rate")
		dur      = fs.Duration("d", 10*time.Second, "measured `duration`")
		warmup   = fs.Duration("warmup", 2*time.Second, "warm-up before the measured duration, left out of the figures")
		rate     = fs.Float64("rate", 0, "open loop: requests per `second`, latency counted from each request's due time (0: closed loop)")
		timeout  = fs.Duration("timeout", 5*time.Second, "per-request timeout, dial included")
		method   = fs.String("method", http.MethodGet, "request method")
		body     = fs.String("body", "", "request body sent with every request")
		asJSON   = fs.Bool("json", false, "print the figures as JSON")
		compare  = fs.String("compare", "", "second target `URL2`: run both in alternating rounds and print B/A ratios")
		rounds   = fs.Int("rounds", 5, "rounds for -compare")
		engine   = fs.String("engine", "raw", "client: raw (minimal HTTP/1.1, cheap) or std (net/http, a cross-check)")
		insecure = fs.Bool("insecure", false, "skip TLS certificate verification")
	)
	fs.Var(&headers, "H", "request header 'Name: value' (repeatable), e.g. -H 'X-API-Key: k1'")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: go run ./bench [flags]\n\nLoad an HTTP/1.1 target and report throughput and latency percentiles.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *compare != "" && *rounds < 1 {
		fmt.Fprintln(stderr, "bench: -rounds must be at least 1")
		return 2
	}
	cfg := load.Config{
		URL: *url, Method: strings.ToUpper(*method), Header: headers.h, Conns: *conns,
		Duration: *dur, Warmup: *warmup, Rate: *rate, Timeout: *timeout,
		Engine: *engine, Insecure: *insecure,
	}
	if *body != "" {
		cfg.Body = []byte(*body)
	}

	if *compare != "" {
		b := cfg
		b.URL = *compare
		err := runCompare(ctx, cfg, b, *rounds, *asJSON, stdout, stderr)
		switch {
		case err == nil:
			return 0
		case ctx.Err() != nil:
			return 130
		}
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}

	r, err := load.Run(ctx, cfg)
	if err != nil { // Run fails only on a config it cannot use
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 2
	}
	if *asJSON {
		err = writeJSON(stdout, summarize(r))
	} else {
		err = writeText(stdout, r)
	}
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	case r.Interrupted:
		return 130
	case r.Responses() == 0:
		fmt.Fprintln(stderr, "bench: no response at all; is the target up?")
		return 1
	}
	return 0
}
