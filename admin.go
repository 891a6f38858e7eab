package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"

	"stdlb/bucket"
	"stdlb/lb"
)

// newAdmin returns the admin API's routes:
//
//	GET  /healthz   200 while the balancer is up (no token ever)
//	GET  /status    backends and limiter as JSON
//	GET  /metrics   Prometheus text format
//	GET  /          the status page
//	     /clients…  per-client limits (always behind the bearer token)
//
// /status, /metrics and / are open on a loopback listener, where only this
// machine can reach them, and need the token on any other address.
func newAdmin(a *app) http.Handler {
	cfg := a.cfg.Load()
	token := os.Getenv(cfg.Admin.TokenEnv)
	auth := &tokenAuth{env: cfg.Admin.TokenEnv, log: a.log}
	if token != "" {
		sum := sha256.Sum256([]byte(token))
		auth.sum = &sum
	}
	readOnly := func(h http.HandlerFunc) http.Handler {
		if isLoopback(cfg.Admin.Listen) {
			return h
		}
		return auth.wrap(h)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	mux.Handle("GET /status", readOnly(a.serveStatus))
	mux.Handle("GET /metrics", readOnly(a.serveMetrics))
	mux.Handle("GET /{$}", readOnly(a.servePage))
	clients := auth.wrap(bucket.NewClientsHandler(a.limit.store, a.log)) // logs every change
	mux.Handle("/clients", clients)
	mux.Handle("/clients/", clients)
	a.opsRoutes(mux, auth)
	mux.Handle("/", notFoundOrNotAllowed(mux))
	return loopbackHostOnly(cfg.Admin.Listen, func(w http.ResponseWriter, r *http.Request) {
		// ServeMux answers a path with . or .. segments with a redirect to the
		// cleaned path; an API answers such a key with an error instead.
		if p := r.URL.Path; strings.Contains(p, "/./") || strings.Contains(p, "/../") ||
			strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..") || strings.Contains(p, "//") {
			lb.WriteError(w, http.StatusBadRequest, "path "+p+": empty, . and .. segments are not allowed")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// tokenAuth checks "Authorization: Bearer <token>" (or, for reading, the
// token as an HTTP Basic password: see credential). The token is compared
// by its SHA-256 in constant time, so neither its bytes nor its length leak
// through timing.
type tokenAuth struct {
	env     string
	sum     *[sha256.Size]byte // nil: no token configured
	log     *slog.Logger
	refused logEvery // refusals are logged at most once every few seconds
}

func (t *tokenAuth) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if t.sum == nil {
			lb.WriteError(w, http.StatusForbidden, "this endpoint needs an admin token: set the environment variable "+
				t.env+" (admin.token_env) to a secret, restart, and send Authorization: Bearer <token>")
			return
		}
		given, ok := credential(r)
		sum := sha256.Sum256([]byte(given))
		if !ok || subtle.ConstantTimeCompare(sum[:], t.sum[:]) != 1 {
			t.refused.warn(t.log, "admin: refused "+r.Method+" "+r.URL.Path+": missing or wrong token", "remote", r.RemoteAddr)
			w.Header()["Www-Authenticate"] = challenges // the canonical key, as Header().Add would write
			lb.WriteError(w, http.StatusUnauthorized, "missing or wrong token: send Authorization: Bearer <token>")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// isLoopback reports whether addr listens only on this machine.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
