package lb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"stdlb/lb/h1"
)

// Admission is an admission hook's verdict on a request (see
// Options.Admit).
type Admission struct {
	// Allowed lets the request through. When false, the hook has already
	// written the answer.
	Allowed bool
	// Limited marks a rate-limit refusal in the access log.
	Limited bool
	// KeyKind names what the client was identified by ("ip" or "key") for
	// the access log; empty when no limiter ran.
	KeyKind string
	// Key identifies an API-key client in the access log. It must be safe
	// to print: a tag of the key, never the key itself.
	Key string
}

// Options are the balancer's collaborators. The zero value is usable: no
// logging, no admission hook.
type Options struct {
	// Logger receives events and errors: backends going down and coming
	// back, retries, failed requests, reloads. Nil discards them.
	Logger *slog.Logger
	// AccessLog receives one line per request when Config.AccessLog is on.
	// Nil uses Logger.
	AccessLog *slog.Logger
	// AccessWriter, if set, takes the access log instead of AccessLog: the
	// balancer writes each line itself, with one Write, as slog's
	// TextHandler would (JSONHandler with AccessJSON), durations aside
	// (seconds: see lineLog), for a fraction of slog's cost per record.
	// Writes come from many goroutines at once:
	// the writer must be safe for that, and keep each Write whole.
	AccessWriter io.Writer
	AccessJSON   bool
	// Admit, if set, is called for every request before a backend is
	// picked, with the writer the access log records. Rate limiting plugs
	// in here.
	Admit func(http.ResponseWriter, *http.Request) Admission
}

// Balancer is an http.Handler that spreads requests over backends. Create
// it with New; run its health checks with RunHealthChecks; change its
// configuration with Apply. It is safe for concurrent use.
//
// A request whose backend cannot be reached is retried on another backend,
// up to Config.Retries times: after a connection failure always (the
// backend never saw it), after a broken connection only when the method is
// idempotent and there is no body to replay. Answers the balancer makes
// itself are JSON {"error": ...}: 503 when no backend is healthy, 502 when
// backends failed and retries ran out, 504 when a backend sent no response
// headers within Config.ResponseTimeout.
type Balancer struct {
	opts   Options
	log    *slog.Logger
	access *slog.Logger
	lines  *lineLog // nil: the access log goes through access

	// pool is the configuration generation in use; Apply swaps it.
	pool atomic.Pointer[pool]
	// applyMu serialises Apply so two reloads cannot interleave their
	// read-modify-swap of pool.
	applyMu sync.Mutex

	exchanges sync.Pool // *exchange, reused across requests
	buffers   bufferPool
	upgrades  atomic.Int64 // upgraded (WebSocket) connections open now
	started   time.Time

	// Throttles for log lines that repeat once per request in an outage.
	logNoBackend, logFailed, logRetry, logAborted throttle

	// Counters for Metrics, each independent, hence atomics.
	local     statusCounts // answers made without a backend
	retries   atomic.Uint64
	durations durationHistogram // answers from backends (502 and 504 included)
	stats     balancerStats     // the rest, and the samples (stats.go)
}

// New returns a balancer for cfg. It starts no goroutine: call
// RunHealthChecks.
func New(cfg Config, opts Options) (*Balancer, error) {
	b := &Balancer{opts: opts, log: opts.Logger, access: opts.AccessLog, started: time.Now()}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.access == nil {
		b.access = b.log
	}
	if opts.AccessWriter != nil {
		b.lines = newLineLog(opts.AccessWriter, opts.AccessJSON)
	}
	b.exchanges.New = func() any { return newExchange(b) }
	p, err := newPool(cfg, nil)
	if err != nil {
		return nil, err
	}
	b.adopt(p)
	b.pool.Store(p)
	return b, nil
}

// Apply makes cfg the configuration for new requests, atomically. Requests
// in flight finish with the configuration they started with. Backends that
// stay keep their health and counters. On error nothing changes.
func (b *Balancer) Apply(cfg Config) error {
	b.applyMu.Lock()
	old := b.pool.Load()
	p, err := newPool(cfg, old)
	if err == nil {
		b.adopt(p)
		b.pool.Store(p)
	}
	b.applyMu.Unlock()
	if err != nil {
		return err
	}
	var added, removed []string
	inNew := map[*Backend]bool{}
	for _, be := range p.backends {
		inNew[be] = true
	}
	inOld := map[*Backend]bool{}
	for _, be := range old.backends {
		inOld[be] = true
		if !inNew[be] {
			removed = append(removed, be.name)
			be.closeIdle()
		}
	}
	for _, be := range p.backends {
		if !inOld[be] {
			added = append(added, be.name)
		}
	}
	b.log.Info("configuration applied", "backends", len(p.backends), "algorithm", p.cfg.Algorithm,
		"added", added, "removed", removed)
	return nil
}

// adopt tells the backends new in p where to report connections they drop
// for bytes nobody asked for: one line per backend at most every few
// seconds, saying how many it stands for.
func (b *Balancer) adopt(p *pool) {
	for _, be := range p.backends {
		if be.client.OnDiscard == nil {
			be.client.OnDiscard = func(reason string) {
				if ok, n := be.logDiscard.allow(time.Now()); ok {
					b.log.Warn("backend "+be.name+" "+reason+more(n), "backend", be.name, "event", "unsolicited_bytes")
				}
			}
		}
	}
}

// ServeHTTP proxies r to a backend.
func (b *Balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ex := b.exchanges.Get().(*exchange)
	ex.begin(w, r, b.pool.Load())
	defer b.finish(ex)
	if r.ProtoMajor != 1 && !b.plainHTTP2(ex, r) {
		return
	}
	if b.opts.Admit != nil {
		ex.rw.admitting = true
		ex.adm = b.opts.Admit(&ex.rw, r)
		ex.rw.admitting = false
		if !ex.adm.Allowed {
			return
		}
	}
	i := ex.pool.policy.Pick(0)
	if i < 0 {
		ex.noBackend()
		return
	}
	ex.use(i)
	if r.Body != nil && r.Body != http.NoBody {
		ex.body = newBodyReader(r.Body, http.NewResponseController(w), ex.pool.cfg.ReadBodyTimeout)
		// A backend may answer before it has read the whole body (an echo,
		// an early refusal, a stream both ways). Without full duplex,
		// net/http's server would discard up to 256 KiB of the unread body
		// once the answer starts and close the rest: a hole in what the
		// backend gets, or a hang.
		ex.body.ctl.EnableFullDuplex()
		r.Body = ex.body
	}
	ex.rp.ServeHTTP(&ex.rw, r)
}

// plainHTTP2 holds a request that came over HTTP/2 to the rules h1.Server
// applies to HTTP/1.1 ones, and answers it when it cannot go on: HTTP/2
// carries what HTTP/1.1 cannot (a method with spaces: h1.CheckRequest),
// more than 100 fields in a small block (HPACK repeats an indexed one:
// 431), an Expect other than 100-continue (417), and names with '_', which
// h1.Server leaves out (see parseFields in lb/h1) and so does this.
func (b *Balancer) plainHTTP2(ex *exchange, r *http.Request) bool {
	if err := h1.CheckRequest(r); err != nil {
		ex.refuse(err)
		return false
	}
	n := 0
	for k, vv := range r.Header {
		n += len(vv)
		if strings.IndexByte(k, '_') >= 0 {
			delete(r.Header, k)
		}
	}
	if _, ok := r.Header["Expect"]; ok {
		// net/http's HTTP/2 server takes 100-continue out; what is left is
		// an expectation nothing here meets, as h1.Server answers it.
		WriteError(&ex.rw, http.StatusExpectationFailed, "expectation failed: only 100-continue is supported")
		return false
	}
	if n > h1.MaxFields {
		WriteError(&ex.rw, http.StatusRequestHeaderFieldsTooLarge, "request header fields too large: more than "+strconv.Itoa(h1.MaxFields)+" fields")
		return false
	}
	return true
}

// finish runs after every request, also when ReverseProxy aborts the
// response by panicking with http.ErrAbortHandler: it releases the backend,
// logs, and lets the panic go on to net/http, which drops the connection.
func (b *Balancer) finish(ex *exchange) {
	p := recover()
	if ex.body != nil {
		ex.body.end()
	}
	if ex.cur >= 0 {
		ex.backend().inFlight.Add(-1)
	}
	if ex.upgraded {
		b.upgrades.Add(-1)
	}
	if ex.upgrade != nil {
		ex.upgrade.Close() // ReverseProxy has relayed it, or refused the switch
	}
	if p != nil {
		ex.aborted(p)
	}
	status, dur := ex.status(), time.Since(ex.start)
	b.record(ex, status, dur)
	if ex.pool.cfg.AccessLog {
		ex.logAccess(status, dur)
	}
	if p == nil && ex.gone && ex.rw.status == 0 && !ex.upgraded {
		// Nothing was written for a client that left (or half-closed):
		// the server must not make up an empty 200 for it. Aborting makes
		// net/http, and Server, close the connection without a word, as
		// nginx does after a 499.
		p = http.ErrAbortHandler
	}
	ex.reset()
	b.exchanges.Put(ex)
	if p != nil {
		panic(p)
	}
}

// Upgrades returns the number of upgraded (WebSocket) connections open now.
// http.Server.Shutdown does not wait for them; a caller draining the
// balancer waits for this to reach zero, then cancels the requests' base
// context to close the rest.
func (b *Balancer) Upgrades() int64 { return b.upgrades.Load() }

// WaitUpgrades waits until no upgraded connection is open or ctx ends.
func (b *Balancer) WaitUpgrades(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for b.upgrades.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// Status returns a snapshot of every backend in the configuration in use.
func (b *Balancer) Status() []BackendStatus {
	p := b.pool.Load()
	out := make([]BackendStatus, len(p.backends))
	now := time.Now()
	for i, be := range p.backends {
		out[i] = be.status(p.weights[i])
		out[i].BackendTraffic = be.stats.traffic(be, now)
	}
	return out
}

// Started returns when the balancer was created.
func (b *Balancer) Started() time.Time { return b.started }

// bodyReader gives each read of a request body its own deadline, like
// nginx's client_body_timeout: a slow but steady upload goes on, a stalled
// one fails after timeout. When the body ends the deadline is cleared, so
// it cannot cut a long streaming answer that follows.
//
// The backend client reads the body on a goroutine of its own, which may
// still be waiting for the client when the answer is over (a backend that
// answered early). end, called before the handler returns, interrupts such
// a read and waits for it: no read of the body, and no change of the
// connection's deadlines, happens after the request is over.
type bodyReader struct {
	rc      io.ReadCloser
	ctl     *http.ResponseController
	timeout time.Duration
	// stalled is set when a read hit the deadline. Read by the handler
	// goroutine after the client's reader has returned its error.
	stalled atomic.Bool
	// n counts the bytes read, for the stats and the access log: added to
	// by the client's reader, read by the handler after end.
	n atomic.Int64
	// mu guards the fields below; cond, on mu, signals the end of a read.
	mu      sync.Mutex
	cond    sync.Cond
	reading bool // a Read is waiting for the client
	done    bool // the request is over
	touched bool // Read was called: the body can no longer be sent again
}

func newBodyReader(rc io.ReadCloser, ctl *http.ResponseController, timeout time.Duration) *bodyReader {
	b := &bodyReader{rc: rc, ctl: ctl, timeout: timeout}
	b.cond.L = &b.mu
	return b
}

func (b *bodyReader) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.done {
		b.mu.Unlock()
		return 0, errBodyAfterRequest
	}
	b.ctl.SetReadDeadline(time.Now().Add(b.timeout))
	b.reading, b.touched = true, true
	b.mu.Unlock()
	n, err := b.rc.Read(p)
	b.n.Add(int64(n))
	b.mu.Lock()
	b.reading = false
	switch {
	case err == io.EOF && !b.done:
		b.ctl.SetReadDeadline(time.Time{})
	case err != nil && isTimeout(err) && !b.done:
		b.stalled.Store(true)
	}
	b.cond.Broadcast()
	b.mu.Unlock()
	return n, err
}

// untouched reports whether nothing has read the body yet, so that the
// request may still be sent whole to another backend.
func (b *bodyReader) untouched() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.touched
}

// errBodyAfterRequest is what a read of the body gets once the request is
// over.
var errBodyAfterRequest = errors.New("lb: request body read after the request ended")

// end marks the request over, and interrupts and waits for a read still
// waiting for the client.
func (b *bodyReader) end() {
	b.mu.Lock()
	b.done = true
	if b.reading {
		b.ctl.SetReadDeadline(aLongTimeAgo)
		for b.reading {
			b.cond.Wait()
		}
	}
	b.mu.Unlock()
}

// aLongTimeAgo is a deadline in the past: setting it interrupts a blocked
// read at once.
var aLongTimeAgo = time.Unix(1, 0)

func (b *bodyReader) Close() error { return b.rc.Close() }

// bufferPool gives ReverseProxy 32 KiB copy buffers. It stores array
// pointers so that Put does not allocate an interface box for a slice.
type bufferPool struct{ p sync.Pool }

const copyBufferSize = 32 << 10

func (bp *bufferPool) Get() []byte {
	if v := bp.p.Get(); v != nil {
		return v.(*[copyBufferSize]byte)[:]
	}
	return make([]byte, copyBufferSize)
}

func (bp *bufferPool) Put(buf []byte) {
	if len(buf) == copyBufferSize {
		bp.p.Put((*[copyBufferSize]byte)(buf))
	}
}

// errorLogSink collects what ReverseProxy logs about one request (a body
// copy that failed, an upgrade that went wrong) so the balancer can log it
// once, with the backend and the request it concerns.
type errorLogSink struct{ msg string }

func (s *errorLogSink) Write(p []byte) (int, error) {
	s.msg = string(p[:len(p)-min(len(p), 1)])
	return len(p), nil
}

var _ io.Writer = (*errorLogSink)(nil)

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
