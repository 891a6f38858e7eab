// Package lb is an HTTP load balancer: it picks a healthy backend for each
// request with a pluggable policy, proxies the request with
// httputil.ReverseProxy over the backend's own HTTP/1.1 connections
// (package h1), retries on another backend when that is safe, checks
// backends' health actively and passively, and logs what it did in words a
// person can act on.
//
// # The request path
//
//  1. h1.Server reads the request (refusing what is not plain) and calls
//     Balancer.ServeHTTP on the connection's goroutine.
//  2. ServeHTTP takes a pooled exchange, asks Options.Admit (the rate
//     limiter), picks a backend with the pool's Policy, and wraps the body
//     in a bodyReader (per-read deadline; nothing reads it after the
//     request ends).
//  3. ReverseProxy rewrites the request (exchange.rewrite: X-Forwarded-*,
//     only WebSocket upgrades) and calls its Transport, the exchange:
//     exchange.RoundTrip sends it through the backend's h1.Client and, when
//     the failure allows it, to other backends in turn (failure.go says
//     which).
//  4. ReverseProxy copies the answer; a failure before it is answered by
//     exchange.errorHandler (502, 503, 504, 400, 408: one JSON writer).
//  5. Balancer.finish releases the backend, counts the request (stats.go,
//     metrics.go) and writes the access-log line (accesslog.go).
//
// # Files
//
//	balancer.go   Balancer: New, Apply (reload), ServeHTTP, finish; bodyReader
//	exchange.go   one request's state, RoundTrip with retries, the answers
//	              the balancer makes, the recorder ResponseWriter
//	failure.go    what went wrong, in the terms that decide what happens next
//	pool.go       a configuration generation, swapped atomically on reload
//	backend.go    one backend: its h1.Client, health and counters
//	policy.go     round robin, smooth weighted round robin, least connections
//	health.go     active checks
//	stats.go, window.go, metrics.go
//	              per-backend counters, the minute's rates, Metrics
//	accesslog.go, logformat.go
//	              the access-log line, written without slog's allocations
//	clientip.go   the client's address, from X-Forwarded-For only when trusted
//	throttle.go   log lines that would repeat once per request in an outage
package lb
