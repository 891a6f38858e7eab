package bucket

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
)

// NewClientsHandler returns the admin API of per-client limits:
//
//	GET    /clients        {"clients": {"<key>": {"capacity": 10, "refill_rate": 1}, ...}}
//	PUT    /clients        body {"clients": {...}}: the whole set, replaced atomically; {"clients": N}
//	                       ("clients" is required: {"clients": {}} removes every client's limits)
//	GET    /clients/{key}  {"key": "<key>", "capacity": 10, "refill_rate": 1}, or 404
//	PUT    /clients/{key}  body {"capacity": 10, "refill_rate": 1}; answers like GET
//	DELETE /clients/{key}  {"deleted": "<key>"}, or 404
//
// Keys are answered in canonical form (Limiter.CanonicalKey): an IPv6
// address names its prefix. Mount it on both "/clients" and "/clients/".
// Every answer is JSON; errors are {"error": "..."} with 400 (bad key or
// body: empty or only whitespace, a field missing, unknown, repeated or
// miscased fields, limits the limiter cannot honour), 404, 405, 409 (the
// clients file changed on disk since it was read: reload first) or 500
// (saving failed, logged at ERROR on log). A change is on disk before it
// is applied and answered, so a refused or failed one changes nothing.
// Every PUT and DELETE is logged at INFO on log, whatever came of it: the
// client in canonical form (an API key only as its KeyTag) or, for a bulk
// replace, how many clients it added, changed and removed; the status; the
// remote address. The handler does no authentication: wrap it. It is safe
// for concurrent use.
func NewClientsHandler(s *Store, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &clientsHandler{s: s, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("/clients", h.list)
	mux.HandleFunc("/clients/{key}", h.one)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: use /clients or /clients/{key}")
	})
	return mux
}

type clientsHandler struct {
	s   *Store
	log *slog.Logger
}

type clientAnswer struct {
	Key string `json:"key"`
	Limits
}

func (h *clientsHandler) list(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		writeJSON(w, http.StatusOK, clientsFile{h.s.All()})
	case http.MethodPut:
		status, attrs := h.replace(w, r)
		h.audit(r, "admin: PUT client limits (bulk replace)", status, attrs)
	default:
		notAllowed(w, "GET, HEAD, PUT")
	}
}

// replace answers PUT /clients. It returns the status and, when it
// replaced the set, the counts of what changed.
func (h *clientsHandler) replace(w http.ResponseWriter, r *http.Request) (int, []any) {
	data, err := readBody(w, r, maxBulkBytes, bulkExample)
	var c Changes
	if err == nil {
		var m map[string]Limits
		if m, err = parseBulk(data, h.s.l); err != nil {
			err = &InvalidError{err}
		} else {
			c, err = h.s.Replace(m)
		}
	}
	if err != nil {
		return h.fail(w, "body", err), nil
	}
	n := h.s.Len()
	writeJSON(w, http.StatusOK, struct {
		Clients int `json:"clients"`
	}{n})
	return http.StatusOK, []any{"added", c.Added, "changed", c.Changed, "removed", c.Removed, "clients", n}
}

func (h *clientsHandler) one(w http.ResponseWriter, r *http.Request) {
	raw := r.PathValue("key")
	key, err := h.s.l.checkKey(raw)
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		lim, ok := h.s.Get(key)
		if !ok {
			writeError(w, http.StatusNotFound, "client "+strconv.Quote(key)+" has no limits of its own; the default applies")
			return
		}
		writeJSON(w, http.StatusOK, clientAnswer{key, lim})
	case http.MethodPut, http.MethodDelete:
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			h.audit(r, "admin: "+r.Method+" client limits", http.StatusBadRequest, []any{"client", "key:" + KeyTag(raw)})
			return
		}
		status, attrs := h.change(w, r, key)
		h.audit(r, "admin: "+r.Method+" client limits", status, append([]any{"client", logKey(key)}, attrs...))
	default:
		notAllowed(w, "GET, HEAD, PUT, DELETE")
	}
}

// change answers PUT or DELETE /clients/{key} for the client key, in
// canonical form. It returns the status and, for a PUT that listed it, the
// limits.
func (h *clientsHandler) change(w http.ResponseWriter, r *http.Request, key string) (int, []any) {
	if r.Method == http.MethodDelete {
		_, existed, err := h.s.Delete(key)
		switch {
		case err != nil:
			return h.fail(w, "", err), nil
		case !existed:
			writeError(w, http.StatusNotFound, "client "+strconv.Quote(key)+" has no limits of its own")
			return http.StatusNotFound, nil
		}
		writeJSON(w, http.StatusOK, struct {
			Deleted string `json:"deleted"`
		}{key})
		return http.StatusOK, nil
	}
	data, err := readBody(w, r, maxBodyBytes, `{"capacity": 10, "refill_rate": 1}`)
	var lim Limits
	if err == nil {
		if lim, err = ParseLimits(data); err != nil {
			err = &InvalidError{err}
		}
	}
	if err == nil {
		_, err = h.s.Put(key, lim)
	}
	if err != nil {
		return h.fail(w, "body", err), nil
	}
	writeJSON(w, http.StatusOK, clientAnswer{key, lim})
	return http.StatusOK, []any{"capacity", lim.Capacity, "refill_rate", lim.RefillRate}
}

// audit logs a change asked of the API at INFO, whatever came of it: what
// it was about (attrs: the client, API keys only as their KeyTag, or a bulk
// replace's counts), the status answered and who asked.
func (h *clientsHandler) audit(r *http.Request, msg string, status int, attrs []any) {
	h.log.Info(msg, append(attrs, "status", status, "remote", r.RemoteAddr)...)
}

// fail answers a refused or failed change and returns the status: 400 for
// what the request said (prefixed with what, e.g. "body: "), 409 for a
// clients file changed on disk, 500 (and an ERROR line) for a failure to
// save.
func (h *clientsHandler) fail(w http.ResponseWriter, what string, err error) int {
	var invalid *InvalidError
	switch {
	case errors.As(err, &invalid):
		if what != "" && !strings.HasPrefix(err.Error(), "key:") {
			what += ": "
		} else {
			what = ""
		}
		writeError(w, http.StatusBadRequest, what+err.Error())
		return http.StatusBadRequest
	case errors.Is(err, ErrChangedOnDisk):
		writeError(w, http.StatusConflict, err.Error())
		return http.StatusConflict
	default:
		h.log.Error("admin: saving client limits failed; nothing changed", "err", err)
		writeError(w, http.StatusInternalServerError, "saving the limits failed: "+err.Error())
		return http.StatusInternalServerError
	}
}

// Body bounds: a Limits object is a few dozen bytes; a whole set of a
// million clients some 80 MB.
const (
	maxBodyBytes = 64 << 10
	maxBulkBytes = 256 << 20
)

// bulkExample is what readBody suggests for an empty PUT /clients.
const bulkExample = `{"clients": {"<key>": {"capacity": 10, "refill_rate": 1}}}, or {"clients": {}} to remove every client's limits`

// readBody reads a PUT body of at most max bytes; problems are
// *InvalidError. A body of only whitespace is empty, and the error
// suggests example.
func readBody(w http.ResponseWriter, r *http.Request, max int64, example string) ([]byte, error) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, &InvalidError{fmt.Errorf("larger than %d KiB", max>>10)}
		}
		return nil, &InvalidError{err}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &InvalidError{errors.New("empty; send " + example)}
	}
	return data, nil
}

func notAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, http.StatusMethodNotAllowed, "method not allowed; use "+allow)
}
