package bucket

import (
	"errors"
	"io"
	"net/http"
	"strconv"
)

// maxBodyBytes bounds a PUT body: a Limits object is a few dozen bytes.
const maxBodyBytes = 64 << 10

// NewClientsHandler returns the admin API of per-client limits:
//
//	GET    /clients        {"clients": {"<key>": {"capacity": 10, "refill_rate": 1}, ...}}
//	GET    /clients/{key}  {"key": "<key>", "capacity": 10, "refill_rate": 1}, or 404
//	PUT    /clients/{key}  body {"capacity": 10, "refill_rate": 1}; answers like GET
//	DELETE /clients/{key}  {"deleted": "<key>"}, or 404
//
// Mount it on both "/clients" and "/clients/". Every answer is JSON; errors
// are {"error": "..."} with 400 (bad key or body; unknown fields included),
// 404, 405 or 500. A change is written to s first and applied to l only
// once it is on disk, so a failed write (500) changes nothing; a changed
// limit applies to the client's bucket at once. The handler does no
// authentication: wrap it. It is safe for concurrent use.
func NewClientsHandler(s *Store, l *Limiter) http.Handler {
	h := &clientsHandler{s: s, l: l}
	mux := http.NewServeMux()
	mux.HandleFunc("/clients", h.list)
	mux.HandleFunc("/clients/{key}", h.one)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: use /clients or /clients/{key}")
	})
	return mux
}

type clientsHandler struct {
	s *Store
	l *Limiter
}

type clientAnswer struct {
	Key string `json:"key"`
	Limits
}

func (h *clientsHandler) list(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		notAllowed(w, "GET, HEAD")
		return
	}
	writeJSON(w, http.StatusOK, clientsFile{h.s.All()})
}

func (h *clientsHandler) one(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if err := ValidateKey(key); err != nil {
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
		lim, err := readLimits(w, r)
		if err != nil {
			writeError(w, http.StatusBadRequest, "body: "+err.Error())
			return
		}
		if _, err := h.s.update(key, &lim, func() { h.l.SetLimits(key, lim) }); err != nil {
			writeError(w, http.StatusInternalServerError, "saving the limits failed: "+err.Error())
			return
		}
		writeJSON(w, http.StatusOK, clientAnswer{key, lim})
	case http.MethodDelete:
		existed, err := h.s.update(key, nil, func() { h.l.ClearLimits(key) })
		if err != nil {
			writeError(w, http.StatusInternalServerError, "saving the limits failed: "+err.Error())
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

// readLimits reads and validates a PUT body.
func readLimits(w http.ResponseWriter, r *http.Request) (Limits, error) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return Limits{}, errors.New("larger than 64 KiB")
		}
		return Limits{}, err
	}
	if len(data) == 0 {
		return Limits{}, errors.New(`empty; send {"capacity": 10, "refill_rate": 1}`)
	}
	return ParseLimits(data)
}

func notAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, http.StatusMethodNotAllowed, "method not allowed; use "+allow)
}
