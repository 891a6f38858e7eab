// Command stdlb is an HTTP load balancer with per-client token-bucket rate
// limiting, written with Go's standard library only.
//
//	stdlb [-config FILE] [-listen ADDR] [-backends URL,URL,...] [-check-config] [-version]
//
// The configuration file is -config, else $CONFIG_PATH, else config.json.
// SIGHUP (or POST /reload on the admin API) re-reads it, the clients file
// and the TLS certificate; SIGINT and SIGTERM stop accepting connections,
// let in-flight requests finish for up to timeouts.shutdown, and exit 0; a
// second one during that drain exits at once.
//
// Exit status: 0 after a clean stop or a valid -check-config; 2 for a bad
// configuration (one line per problem, before anything listens) or command
// line; 1 when it could not start (a port in use, ...), stopped on an
// error, or a second signal cut the drain short.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit status, so tests
// can drive the command line.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("stdlb", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "configuration file (default: $CONFIG_PATH, else config.json)")
	var over Overrides
	fs.StringVar(&over.Listen, "listen", "", "listen address, overriding the file's \"listen\" (e.g. :8080)")
	fs.StringVar(&over.Backends, "backends", "", "comma-separated backend URLs, overriding the file's \"backends\"")
	check := fs.Bool("check-config", false, "validate the configuration, the clients file and the TLS files, then exit 0 (valid) or 2")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "stdlb: unexpected argument %q (flags only; see -h)\n", fs.Arg(0))
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "stdlb", version())
		return 0
	}
	path := *configPath
	if path == "" {
		path = os.Getenv("CONFIG_PATH")
	}
	if path == "" {
		path = "config.json"
	}

	load := path
	if _, statErr := os.Stat(path); statErr != nil && *configPath == "" && os.Getenv("CONFIG_PATH") == "" && over.Backends != "" {
		// No file and none asked for, but the command line names the
		// backends: run on the defaults, as "stdlb -backends URL" suggests.
		load = ""
	}
	cfg, cert, err := loadConfig(load, over, nil)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if *check {
		msg := fmt.Sprintf("%s: configuration ok (%s, %s; %s", path, plural(len(cfg.Backends), "backend"), cfg.Algorithm,
			describeClientsFile(cfg, path))
		if cert != nil {
			msg += "; certificate " + cert.describe()
		}
		fmt.Fprintln(stdout, msg+")")
		for _, w := range configWarnings(cfg) {
			fmt.Fprintln(stderr, path+": warning: "+w)
		}
		return 0
	}

	logger, access := newLoggers(cfg.LogFormat, stderr, stdout)
	a, err := newApp(cfg, cert, path, over, logger, access)
	if err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			fmt.Fprintln(stderr, err)
			return 2
		}
		logger.Error("cannot start", "err", err)
		return 1
	}

	// Not signal.NotifyContext: a second SIGINT or SIGTERM during the drain
	// must be seen too (serve stops at once then), so serve reads them all.
	term := make(chan os.Signal, 2)
	signal.Notify(term, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(term)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := a.serve(context.Background(), hup, term); err != nil {
		if !errors.Is(err, errInterrupted) { // the drain has said why
			logger.Error("stopped with an error", "err", err)
		}
		return 1
	}
	return 0
}

// newLoggers returns the event logger (to stderr) and the access logger
// (to stdout, through a buffer the app flushes), in the configured format.
func newLoggers(format string, events, access io.Writer) (*slog.Logger, *bufferedWriter) {
	return slog.New(newHandler(format, events)), newBufferedWriter(access, 64<<10)
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func newHandler(format string, w io.Writer) slog.Handler {
	if format == "json" {
		return slog.NewJSONHandler(w, nil)
	}
	return slog.NewTextHandler(w, nil)
}
