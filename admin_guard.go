package main

import (
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"stdlb/lb"
)

// loopbackHostOnly refuses, on a loopback admin listener, requests whose
// Host is not a loopback name. A web page on another site can point a name
// it controls at 127.0.0.1 (DNS rebinding) and have the operator's browser
// send requests to the admin API as if same-origin; such requests carry
// that name in Host. On any other listener the token guards the API and h
// is returned as it is.
func loopbackHostOnly(listen string, h http.HandlerFunc) http.Handler {
	if !isLoopback(listen) {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isLoopbackHost(r.Host) {
			lb.WriteError(w, http.StatusForbidden, "the admin API listens on loopback and answers only requests for a loopback host "+
				"(localhost, 127.0.0.1, [::1]), not "+r.Host)
			return
		}
		h(w, r)
	})
}

// isLoopbackHost reports whether a Host header names this machine:
// localhost (or a name under .localhost) or a loopback address, with or
// without a port.
func isLoopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// logEvery logs a repeating line at most once every logEveryPeriod, with
// the number of lines held back since the last one. The zero value is
// ready; it is safe for concurrent use.
type logEvery struct {
	mu      sync.Mutex
	last    time.Time
	dropped int
}

const logEveryPeriod = 5 * time.Second

func (e *logEvery) warn(log *slog.Logger, msg string, args ...any) {
	e.mu.Lock()
	now := time.Now()
	if !e.last.IsZero() && now.Sub(e.last) < logEveryPeriod {
		e.dropped++
		e.mu.Unlock()
		return
	}
	dropped := e.dropped
	e.last, e.dropped = now, 0
	e.mu.Unlock()
	if dropped > 0 {
		args = append(args, "not_logged_since_last", dropped)
	}
	log.Warn(msg, args...)
}
