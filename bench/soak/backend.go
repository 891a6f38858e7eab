package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// backend is one of the soak's well-behaved backends: net/http's server on
// a loopback address it keeps across kills, so that the balancer's
// configuration stays valid while it is down and finds it again when it is
// restarted. It answers with the id each request carries (see answerFor)
// and reports to onBad any request it should never have received.
type backend struct {
	name  string
	onBad func(what string)
	ex    *explainer

	requests atomic.Int64 // requests served, health checks included

	// mu guards the fields below.
	mu      sync.Mutex
	addr    string // "127.0.0.1:0" until the first start picks the port
	srv     *http.Server
	conns   map[net.Conn]struct{} // open connections, hijacked (WebSocket) ones included
	up      bool
	serving map[string]int // ids of the requests being served (a retried request may be served twice)
}

// newBackend returns a backend for addr ("127.0.0.1:0" picks a port, kept
// from then on); start serves it. It tells ex what it was serving when
// killed.
func newBackend(name, addr string, onBad func(string), ex *explainer) *backend {
	return &backend{name: name, addr: addr, onBad: onBad, ex: ex, conns: map[net.Conn]struct{}{}, serving: map[string]int{}}
}

// start listens on the backend's address, trying for a while when the port
// is still taken (by a connection of the killed instance), and serves on a
// goroutine of its own that ends at kill.
func (b *backend) start() error {
	ln, err := listenRetry(b.address(), 5*time.Second)
	if err != nil {
		return fmt.Errorf("backend %s: %w", b.name, err)
	}
	srv := &http.Server{
		Handler:           b,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       90 * time.Second,
		ConnState:         b.track,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	b.mu.Lock()
	b.addr = ln.Addr().String()
	b.srv, b.up = srv, true
	b.mu.Unlock()
	go srv.Serve(ln) // returns when kill closes srv
	return nil
}

// listenRetry listens on addr, retrying on failure until wait has passed.
func listenRetry(addr string, wait time.Duration) (net.Listener, error) {
	deadline := time.Now().Add(wait)
	for {
		ln, err := net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			return ln, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (b *backend) track(c net.Conn, st http.ConnState) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch st {
	case http.StateNew:
		b.conns[c] = struct{}{}
	case http.StateClosed:
		delete(b.conns, c)
	}
}

func (b *backend) untrack(c net.Conn) {
	b.mu.Lock()
	delete(b.conns, c)
	b.mu.Unlock()
}

// kill closes the listener and every connection at once, as a crash would:
// those picked by reset are reset rather than closed.
func (b *backend) kill(reset func() bool) {
	b.ex.happened(time.Now(), "killing "+b.name)
	b.mu.Lock()
	srv, conns := b.srv, make([]net.Conn, 0, len(b.conns))
	for c := range b.conns {
		conns = append(conns, c)
	}
	for id := range b.serving {
		b.ex.mark(id, "backend "+b.name+" was killed while serving it")
	}
	clear(b.conns)
	b.srv, b.up = nil, false
	b.mu.Unlock()
	for _, c := range conns {
		if tc, ok := c.(*net.TCPConn); ok && reset() {
			tc.SetLinger(0)
		}
		c.Close()
	}
	if srv != nil {
		srv.Close()
	}
}

// address returns the backend's host:port, fixed once it has started.
func (b *backend) address() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.addr
}

func (b *backend) isUp() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.up
}

func (b *backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.requests.Add(1)
	if id := r.Header.Get(idHeader); id != "" {
		b.mu.Lock()
		b.serving[id]++
		b.mu.Unlock()
		defer func() {
			b.mu.Lock()
			if b.serving[id]--; b.serving[id] <= 0 {
				delete(b.serving, id)
			}
			b.mu.Unlock()
		}()
	}
	if !checkArrival(b.name, r, b.onBad) {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	h := w.Header()
	h.Set(backendHeader, b.name)
	switch kind, _ := splitPath(r.URL.Path); kind {
	case "echo":
		b.echo(w, r)
		return
	case "ws":
		b.websocket(w, r)
		return
	}
	a, err := answerFor(r)
	if err != nil {
		panic(http.ErrAbortHandler) // the body broke: drop the connection, answer nothing
	}
	for k, v := range a.header {
		h[k] = v
	}
	if !a.chunked {
		h.Set("Content-Length", strconv.Itoa(len(a.body)))
	}
	w.WriteHeader(a.status)
	if a.chunked && len(a.body) > 1 {
		w.Write(a.body[:len(a.body)/2])
		http.NewResponseController(w).Flush()
		w.Write(a.body[len(a.body)/2:])
		return
	}
	w.Write(a.body)
}

// checkArrival reports whether r, received by backend name, is a request
// some client sent: not a smuggled one, and its id header agrees with its
// path. It tells onBad what is not.
func checkArrival(name string, r *http.Request, onBad func(string)) bool {
	if strings.Contains(r.RequestURI, "smuggled") {
		dump, _ := httputil.DumpRequest(r, false)
		onBad(fmt.Sprintf("backend %s received a smuggled request from %s:\n%s", name, r.RemoteAddr, dump))
		return false
	}
	if kind, id := splitPath(r.URL.Path); kind != "healthz" && id != r.Header.Get(idHeader) {
		dump, _ := httputil.DumpRequest(r, false)
		onBad(fmt.Sprintf("backend %s received a request whose %s header is not its path's id:\n%s", name, idHeader, dump))
		return false
	}
	return true
}

// echo answers the body as it arrives, full duplex, with the request's
// framing.
func (b *backend) echo(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(idHeader, r.Header.Get(idHeader))
	if r.ContentLength >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(r.ContentLength, 10))
	}
	rc := http.NewResponseController(w)
	rc.EnableFullDuplex()
	w.WriteHeader(http.StatusOK)
	buf := make([]byte, 16<<10)
	for {
		n, err := r.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				panic(http.ErrAbortHandler)
			}
			rc.Flush()
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			panic(http.ErrAbortHandler) // a cut body must not end in a complete-looking answer
		}
	}
}

// websocket switches to WebSocket and echoes frames until a close frame.
func (b *backend) websocket(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || key == "" {
		w.Header().Set(idHeader, r.Header.Get(idHeader))
		http.Error(w, "not a websocket request", http.StatusBadRequest)
		return
	}
	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	b.mu.Lock()
	b.conns[nc] = struct{}{} // net/http forgets a hijacked connection; kill must not
	b.mu.Unlock()
	defer b.untrack(nc)
	defer nc.Close()
	nc.SetDeadline(time.Time{})
	io.WriteString(nc, wsSwitch(key, r.Header.Get(idHeader), b.name))
	wsEcho(nc, brw.Reader)
}

// wsSwitch is a backend's 101 answer to a WebSocket handshake.
func wsSwitch(key, id, name string) string {
	return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + wsAccept(key) + "\r\n" + idHeader + ": " + id + "\r\n" +
		backendHeader + ": " + name + "\r\n\r\n"
}

// wsEcho echoes data frames until a close frame, which it echoes too, or an
// error (a frame not masked, the connection gone).
func wsEcho(nc net.Conn, br *bufio.Reader) {
	for {
		nc.SetReadDeadline(time.Now().Add(60 * time.Second))
		f, err := readWS(br, true)
		if err != nil {
			return
		}
		if writeWS(nc, f, nil) != nil || f.op == wsClose {
			return
		}
	}
}

// answer is what a backend sends for a request, framing aside.
type answer struct {
	status  int
	header  http.Header
	body    []byte
	chunked bool // sent without a Content-Length
}

// answerFor is the answer to r for every path but /echo and /ws, which
// stream. It reads r's body for /upload only: /reject answers without
// reading it, as a backend refusing an upload does.
//
//	GET|HEAD /get/ID?size=N[&delay=D][&te=chunked]  200, fill(ID, N)
//	POST /upload/ID                                 200, uploadAnswer
//	POST /reject/ID?code=403|413                    code, rejectBody
//	GET /healthz                                    200
func answerFor(r *http.Request) (answer, error) {
	id := r.Header.Get(idHeader)
	q := r.URL.Query()
	a := answer{status: http.StatusOK, header: http.Header{}}
	if id != "" {
		a.header.Set(idHeader, id)
	}
	switch kind, _ := splitPath(r.URL.Path); kind {
	case "healthz":
		a.body = []byte("ok\n")
	case "get":
		if d, err := time.ParseDuration(q.Get("delay")); err == nil {
			t := time.NewTimer(min(d, 10*time.Second))
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return a, context.Cause(r.Context())
			}
		}
		size, _ := strconv.Atoi(q.Get("size"))
		a.body = fill(id, min(size, 8<<20))
		a.chunked = q.Get("te") == "chunked"
	case "upload":
		d := newDigest()
		if _, err := io.Copy(d, r.Body); err != nil {
			return a, err
		}
		a.body = []byte(uploadAnswer(id, d.n, d.value()))
	case "echo":
		var buf bytes.Buffer
		if _, err := io.Copy(&buf, r.Body); err != nil {
			return a, err
		}
		a.body = buf.Bytes()
	case "reject":
		a.status, _ = strconv.Atoi(q.Get("code"))
		if a.status < 400 || a.status > 499 {
			a.status = http.StatusForbidden
		}
		a.body = []byte(rejectBody(id))
	default:
		a.status = http.StatusNotFound
		a.body = []byte("no such path\n")
	}
	return a, nil
}

// splitPath splits /KIND/ID.
func splitPath(p string) (kind, id string) {
	p = strings.TrimPrefix(p, "/")
	kind, id, _ = strings.Cut(p, "/")
	return kind, id
}
