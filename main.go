// Command stdlb is an HTTP load balancer with per-client token-bucket rate
// limiting, written with Go's standard library only.
//
//	stdlb [-config FILE] [-listen ADDR] [-backends URL,URL,...] [-check-config] [-version]
//
// The configuration file is -config, else $CONFIG_PATH, else config.json.
// SIGHUP re-reads it (and the clients file); SIGINT and SIGTERM stop
// accepting connections, let in-flight requests finish for up to
// timeouts.shutdown, and exit 0. A bad configuration at start prints one
// line per problem and exits 2 before anything listens.
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

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

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
	check := fs.Bool("check-config", false, "validate the configuration and the clients file, then exit 0 (valid) or 2")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "stdlb", version)
		return 0
	}
	path := *configPath
	if path == "" {
		path = os.Getenv("CONFIG_PATH")
	}
	if path == "" {
		path = "config.json"
	}

	var cfg *Config
	var err error
	if _, statErr := os.Stat(path); statErr != nil && *configPath == "" && os.Getenv("CONFIG_PATH") == "" && over.Backends != "" {
		// No file and none asked for, but the command line names the
		// backends: run on the defaults, as "stdlb -backends URL" suggests.
		cfg, err = ParseConfig([]byte("{}"), over)
	} else {
		cfg, err = LoadConfig(path, over)
	}
	if err == nil {
		err = checkStartOnly(cfg)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if *check {
		clients, err := checkClientsFile(cfg, path)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		fmt.Fprintf(stdout, "%s: configuration ok (%s, %s; %s)\n", path, plural(len(cfg.Backends), "backend"), cfg.Algorithm, clients)
		return 0
	}

	logger, access := newLoggers(cfg.LogFormat, stderr, stdout)
	a, err := newApp(cfg, path, over, logger, access)
	if err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			fmt.Fprintln(stderr, err)
			return 2
		}
		logger.Error("cannot start", "err", err)
		return 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := a.serve(ctx, hup); err != nil {
		logger.Error("stopped with an error", "err", err)
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
