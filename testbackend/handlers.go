package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// maxSleep bounds /sleep so a typo cannot park a goroutine for hours.
const maxSleep = 5 * time.Minute

// backend is one test backend's handlers and its switchable health.
type backend struct {
	name string
	// down is set by POST /health/down and read by every /healthz probe.
	down atomic.Bool
}

// newHandler returns the test backend's routes, each answer tagged with
// X-Backend: name.
func newHandler(name string) http.Handler {
	b := &backend{name: name}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", b.root)
	mux.HandleFunc("GET /healthz", b.healthz)
	mux.HandleFunc("POST /health/down", func(w http.ResponseWriter, r *http.Request) {
		b.down.Store(true)
		fmt.Fprintf(w, "%s: health checks now fail\n", b.name)
	})
	mux.HandleFunc("POST /health/up", func(w http.ResponseWriter, r *http.Request) {
		b.down.Store(false)
		fmt.Fprintf(w, "%s: health checks now pass\n", b.name)
	})
	mux.HandleFunc("GET /sleep", b.sleep)
	mux.HandleFunc("GET /status/{code}", b.status)
	mux.HandleFunc("GET /headers", b.headers)
	mux.HandleFunc("POST /echo", b.echo)
	mux.HandleFunc("GET /stream", b.stream)
	mux.HandleFunc("GET /ws", b.websocket)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["X-Backend"] = []string{b.name}
		mux.ServeHTTP(w, r)
	})
}

func (b *backend) root(w http.ResponseWriter, r *http.Request) {
	w.Header()["Content-Type"] = []string{"text/plain; charset=utf-8"}
	io.WriteString(w, "hello from "+b.name+"\n")
}

func (b *backend) healthz(w http.ResponseWriter, r *http.Request) {
	if b.down.Load() {
		http.Error(w, b.name+" is down (POST /health/up to bring it back)", http.StatusServiceUnavailable)
		return
	}
	io.WriteString(w, "ok\n")
}

func (b *backend) sleep(w http.ResponseWriter, r *http.Request) {
	d, err := time.ParseDuration(r.URL.Query().Get("delay"))
	if err != nil || d < 0 || d > maxSleep {
		http.Error(w, "delay: want a duration between 0 and 5m, e.g. ?delay=500ms", http.StatusBadRequest)
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		fmt.Fprintf(w, "%s slept %s\n", b.name, d)
	case <-r.Context().Done():
	}
}

func (b *backend) status(w http.ResponseWriter, r *http.Request) {
	code, err := strconv.Atoi(r.PathValue("code"))
	if err != nil || code < 200 || code > 599 {
		http.Error(w, "code: want a number between 200 and 599", http.StatusBadRequest)
		return
	}
	w.Header()["Content-Type"] = []string{"text/plain; charset=utf-8"}
	w.WriteHeader(code)
	fmt.Fprintf(w, "%s answered %d\n", b.name, code)
}

func (b *backend) headers(w http.ResponseWriter, r *http.Request) {
	h := make(map[string]string, len(r.Header)+1)
	for k, v := range r.Header {
		h[k] = v[0]
		for _, more := range v[1:] {
			h[k] += ", " + more
		}
	}
	h["Host"] = r.Host
	w.Header()["Content-Type"] = []string{"application/json"}
	json.NewEncoder(w).Encode(h)
}

func (b *backend) echo(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		w.Header()["Content-Type"] = []string{ct}
	}
	// Without full duplex, net/http closes the request body once the answer
	// starts, and an echo of more than a buffer's worth would be cut short.
	http.NewResponseController(w).EnableFullDuplex()
	io.Copy(w, r.Body)
}

func (b *backend) stream(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n, err := strconv.Atoi(q.Get("n"))
	if q.Get("n") == "" {
		n, err = 5, nil
	}
	every, err2 := time.ParseDuration(q.Get("every"))
	if q.Get("every") == "" {
		every, err2 = 100*time.Millisecond, nil
	}
	if err != nil || err2 != nil || n < 0 || n > 10000 || every < 0 || every > time.Minute {
		http.Error(w, "want ?n=0..10000&every=duration up to 1m", http.StatusBadRequest)
		return
	}
	rc := http.NewResponseController(w)
	w.Header()["Content-Type"] = []string{"text/plain; charset=utf-8"}
	w.WriteHeader(http.StatusOK)
	rc.Flush()
	t := time.NewTicker(max(every, time.Microsecond))
	defer t.Stop()
	for i := 1; i <= n; i++ {
		if i > 1 {
			select {
			case <-t.C:
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprintf(w, "%s line %d of %d\n", b.name, i, n)
		if err := rc.Flush(); err != nil {
			return
		}
	}
}
