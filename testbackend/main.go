// Command testbackend is a small HTTP server to put behind the balancer in
// tests, demos and benchmarks. Every answer carries X-Backend: <name>, so a
// client can see which backend served it.
//
// Endpoints:
//
//	GET  /                  200, a short text naming the backend
//	GET  /healthz           200, or 503 after POST /health/down (until POST /health/up)
//	POST /health/down       make /healthz fail
//	POST /health/up         make /healthz succeed again
//	GET  /sleep?delay=500ms answer after the delay (or when the client goes away)
//	GET  /status/{code}     answer with that status code
//	GET  /headers           the request's headers as a JSON object
//	POST /echo              echo the request body
//	GET  /stream?n=5&every=100ms  n lines, each flushed as it is written
//	GET  /ws                WebSocket echo (text and binary messages)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9001", "listen address")
	name := flag.String("name", "", "backend name sent in X-Backend (default: the listen address)")
	quiet := flag.Bool("quiet", false, "do not log each request")
	flag.Parse()
	if *name == "" {
		*name = *addr
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("backend", *name)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, *name, *quiet, logger); err != nil {
		logger.Error("testbackend stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr, name string, quiet bool, logger *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	var h http.Handler = newHandler(name)
	if !quiet {
		h = logRequests(h, logger)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	logger.Info("testbackend listening", "addr", ln.Addr().String())

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

func logRequests(next http.Handler, logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		next.ServeHTTP(w, r)
		logger.Info("request", "method", r.Method, "path", r.URL.Path, "dur", time.Since(start))
	})
}
