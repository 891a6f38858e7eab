package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"stdlb/lb"
)

// opsRoutes adds the admin API's operations to mux, behind the token:
//
//	POST /reload   what SIGHUP does; 200 with what changed, or 422 with
//	               every problem (the running configuration stays)
func (a *app) opsRoutes(mux *http.ServeMux, auth *tokenAuth) {
	mux.Handle("POST /reload", auth.wrap(http.HandlerFunc(a.serveReload)))
}

// serveReload answers POST /reload.
func (a *app) serveReload(w http.ResponseWriter, r *http.Request) {
	out, err := a.reload("POST /reload from " + r.RemoteAddr)
	if err != nil {
		status := http.StatusInternalServerError
		var ce *ConfigError
		if errors.As(err, &ce) {
			status = http.StatusUnprocessableEntity // the file is wrong, not the request
		}
		writeJSON(w, status, struct {
			Error    string   `json:"error"`
			Problems []string `json:"problems"`
		}{"reload rejected: the running configuration stays", problems(err)})
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Status string `json:"status"`
		reloadOutcome
	}{"reloaded", out})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// notFoundOrNotAllowed answers a request no route of mux took: 405 with
// Allow when its path is known with other methods (ServeMux would say so
// itself, but the catch-all route this answers for takes every method),
// else 404.
func notFoundOrNotAllowed(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
			probe := &http.Request{Method: m, URL: r.URL, Host: r.Host, Header: http.Header{}}
			if _, pattern := mux.Handler(probe); pattern != "" && pattern != "/" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			lb.WriteError(w, http.StatusMethodNotAllowed, r.Method+" "+r.URL.Path+": method not allowed; use "+strings.Join(allow, " or "))
			return
		}
		lb.WriteError(w, http.StatusNotFound, "no such admin endpoint: "+r.URL.Path+
			" (try /status, /metrics, /clients, /reload or /healthz)")
	})
}

// credential returns the token a request presents, and whether it presents
// one: the bearer token, or, for GET and HEAD only, the password of HTTP
// Basic authentication (any user name), which is how a browser sends it.
// Basic is not taken for changes: a browser replays it on requests other
// sites make it send, and a form can POST across sites.
func credential(r *http.Request) (string, bool) {
	if _, pass, ok := r.BasicAuth(); ok {
		return pass, r.Method == http.MethodGet || r.Method == http.MethodHead
	}
	scheme, given, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	return strings.TrimSpace(given), strings.EqualFold(scheme, "Bearer")
}

// challenges are the WWW-Authenticate values of a 401: Basic first, so
// that a browser asks for the token (as the password), then Bearer.
var challenges = []string{`Basic realm="stdlb admin", charset="UTF-8"`, `Bearer realm="stdlb admin"`}
