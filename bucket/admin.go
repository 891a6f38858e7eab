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
// is applied and answered, so a refused or failed one changes nothing. The handler does no authentication: wrap it.
// It is safe for concurrent use.
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
		data, err := readBody(w, r, maxBulkBytes, bulkExample)
		if err == nil {
			var m map[string]Limits
			if m, err = parseBulk(data, h.s.l); err != nil {
				err = &InvalidError{err}
			} else {
				err = h.s.Replace(m)
			}
			if err == nil {
				writeJSON(w, http.StatusOK, struct {
					Clients int `json:"clients"`
				}{h.s.Len()})
				return
			}
		}
		h.fail(w, "body", err)
	default:
		notAllowed(w, "GET, HEAD, PUT")
	}
}

func (h *clientsHandler) one(w http.ResponseWriter, r *http.Request) {
	key, err := h.s.l.checkKey(r.PathValue("key"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		lim, ok := h.s.Get(key)
		if !ok {
			writeError(w, http.StatusNotFound, "client "+strconv.Quote(key)+" has no limits of its own; the default applies")
			return
		}
		writeJSON(w, http.StatusOK, clientAnswer{key, lim})
	case http.MethodPut:
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
			h.fail(w, "body", err)
			return
		}
		writeJSON(w, http.StatusOK, clientAnswer{key, lim})
	case http.MethodDelete:
		_, existed, err := h.s.Delete(key)
		if err != nil {
			h.fail(w, "", err)
			return
		}
		if !existed {
			writeError(w, http.StatusNotFound, "client "+strconv.Quote(key)+" has no limits of its own")
			return
		}
		writeJSON(w, http.StatusOK, struct {
			Deleted string `json:"deleted"`
		}{key})
	default:
		notAllowed(w, "GET, HEAD, PUT, DELETE")
	}
}

// fail answers a refused or failed change: 400 for what the request said
// (prefixed with what, e.g. "body: "), 409 for a clients file changed on
// disk, 500 (and an ERROR line) for a failure to save.
func (h *clientsHandler) fail(w http.ResponseWriter, what string, err error) {
	var invalid *InvalidError
	switch {
	case errors.As(err, &invalid):
		if what != "" && !strings.HasPrefix(err.Error(), "key:") {
			what += ": "
		} else {
			what = ""
		}
		writeError(w, http.StatusBadRequest, what+err.Error())
	case errors.Is(err, ErrChangedOnDisk):
		writeError(w, http.StatusConflict, err.Error())
	default:
		h.log.Error("admin: saving client limits failed; nothing changed", "err", err)
		writeError(w, http.StatusInternalServerError, "saving the limits failed: "+err.Error())
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
