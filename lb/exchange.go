package lb

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"slices"
	"strings"
	"time"

	"stdlb/lb/h1"
)

// exchange is the balancer's state for one request: the backend chosen, the
// ones tried, what went wrong. ReverseProxy has no per-request hook for such
// state, so each exchange carries its own ReverseProxy whose Rewrite,
// Transport and ErrorHandler are bound to it. Exchanges are pooled, so the
// closures and the ReverseProxy are made once per pooled value, not once per
// request.
type exchange struct {
	b  *Balancer
	rp httputil.ReverseProxy
	rw recorder
	// proxyLog is ReverseProxy's ErrorLog; it writes into sink.
	proxyLog *log.Logger
	sink     errorLogSink

	in       *http.Request
	pool     *pool
	start    time.Time
	adm      Admission
	cur      int    // index of the backend in use, -1 before one is picked
	tried    uint64 // bit set of backend indexes tried
	attempts int
	fail     failure // last failure seen, for the answer and the log
	failErr  error
	upgraded bool
	badBody  bool        // the client's body broke: answered 400
	upgrade  io.Closer   // the backend's connection after a 101
	gone     bool        // the client went away
	body     *bodyReader // the request body, when there is one
	broken   bool        // the answer was cut off mid-body
	stats    reqStats    // attempt timing for the stats and the access log (stats.go)
	// scratch is the direct transport's memory for this request's response
	// head; the reset between requests is fastHead's own.
	scratch h1.Scratch
}

func newExchange(b *Balancer) *exchange {
	ex := &exchange{b: b, cur: -1}
	ex.rw.early = http.Header{}
	ex.proxyLog = log.New(&ex.sink, "", 0)
	ex.rp = httputil.ReverseProxy{
		Rewrite:        ex.rewrite,
		Transport:      ex,
		ModifyResponse: ex.modifyResponse,
		ErrorHandler:   ex.errorHandler,
		BufferPool:     &b.buffers,
		ErrorLog:       ex.proxyLog,
	}
	return ex
}

func (ex *exchange) begin(w http.ResponseWriter, r *http.Request, p *pool) {
	ex.in = r
	ex.pool = p
	ex.start = time.Now()
	ex.rw.w = w
	ex.rw.timeout = p.cfg.WriteTimeout
	ex.rw.wd, _ = w.(writeDeadliner)
	ex.rw.arm(ex.start)
}

// reset clears the per-request fields before the exchange is pooled again.
func (ex *exchange) reset() {
	early := ex.rw.early
	clear(early)
	ex.rw = recorder{early: early}
	ex.in, ex.pool, ex.adm = nil, nil, Admission{}
	ex.cur, ex.tried, ex.attempts = -1, 0, 0
	ex.fail, ex.failErr = failNone, nil
	ex.upgraded, ex.gone, ex.broken, ex.badBody = false, false, false, false
	ex.body, ex.upgrade = nil, nil
	ex.stats = reqStats{}
	ex.sink.msg = ""
	// Let go of the connection and request the pooled scratch points to.
	ex.scratch.Release()
}

func (ex *exchange) backend() *Backend { return ex.pool.backends[ex.cur] }

// use makes backend i the one in use, moving the in-flight count to it.
func (ex *exchange) use(i int) {
	if ex.cur >= 0 {
		ex.backend().inFlight.Add(-1)
	}
	ex.cur = i
	ex.tried |= 1 << (uint(i) & 63)
	ex.attempts++
	ex.backend().inFlight.Add(1)
}

// rewrite points the outgoing request at the chosen backend and sets the
// X-Forwarded-* headers. The Host header is passed through as the client
// sent it, as HAProxy, Traefik and Caddy do; X-Forwarded-Host carries it too.
//
// ReverseProxy has already stripped any X-Forwarded-* headers from the
// outgoing request, because a client can write whatever it likes there. When
// the direct peer is a trusted proxy, its chain is kept and the peer
// appended, and its X-Forwarded-Host and -Proto are kept. This does what
// ProxyRequest.SetXForwarded does with one allocation instead of five.
func (ex *exchange) rewrite(pr *httputil.ProxyRequest) {
	u := ex.backend().URL
	in, out := pr.In, pr.Out
	out.URL.Scheme = u.Scheme
	out.URL.Host = u.Host
	// ReverseProxy re-encodes a query holding a ';' or a bad escape, and
	// drops the pairs it cannot parse ("z=1&a=2;c=3" becomes "z=1"): the
	// backend would be asked something the client did not ask. The query
	// goes as sent, as nginx and HAProxy pass it; h1 has checked its bytes.
	out.URL.RawQuery = in.URL.RawQuery
	if up, ok := out.Header["Upgrade"]; ok && (len(up) != 1 || !strings.EqualFold(strings.TrimSpace(up[0]), "websocket") || !in.ProtoAtLeast(1, 1)) {
		// Only WebSocket upgrades pass. Any other, h2c above all, would open
		// a tunnel to the backend whose requests pass the rate limiter and
		// the access log unseen ("h2c smuggling"); the request goes on
		// as a plain one (ReverseProxy has dropped HTTP2-Settings, which
		// Connection lists). An HTTP/1.0 request's Upgrade is ignored, as
		// RFC 9110 section 7.8 says: its client cannot take a 101.
		delete(out.Header, "Upgrade")
		delete(out.Header, "Connection")
	}
	peer := hostOnly(in.RemoteAddr)
	ip, err := netip.ParseAddr(peer)
	trusted := err == nil && ex.pool.cfg.TrustedProxies.Contains(ip)
	if !trusted {
		// ReverseProxy drops a client's Forwarded and X-Forwarded-*, but not
		// X-Real-IP, which many backends read as the client's address (the
		// nginx convention): from anyone but a trusted proxy it is made up.
		delete(out.Header, "X-Real-Ip")
	}
	if err != nil {
		return // not a TCP peer: nothing true to say about it
	}
	v := make([]string, 3)
	v[0], v[1], v[2] = peer, in.Host, "http"
	if in.TLS != nil {
		v[2] = "https"
	}
	if trusted {
		if prior := in.Header["X-Forwarded-For"]; len(prior) > 0 {
			v[0] = strings.Join(prior, ", ") + ", " + peer
		}
		if h := in.Header["X-Forwarded-Host"]; len(h) > 0 {
			v[1] = h[0]
		}
		if p := in.Header["X-Forwarded-Proto"]; len(p) > 0 {
			v[2] = p[0]
		}
	}
	out.Header["X-Forwarded-For"] = v[0:1:1]
	out.Header["X-Forwarded-Host"] = v[1:2:2]
	out.Header["X-Forwarded-Proto"] = v[2:3:3]
}

// RoundTrip sends the request to the backend in use and, when the failure
// allows it, to others in turn. It makes the exchange the ReverseProxy's
// Transport: retrying here, below ReverseProxy, means the response is
// written once, by ReverseProxy, from whichever attempt succeeded.
func (ex *exchange) RoundTrip(req *http.Request) (*http.Response, error) {
	sent := ex.start // the first attempt's send time; a retry reads the clock
	for {
		be := ex.backend()
		be.requests.Add(1)
		ex.stats.sent = sent
		t := ex.pool.timeouts
		t.Start = sent // the response timeout counts from here, without another read of the clock
		resp, err := be.client.RoundTrip(req, t, &ex.scratch)
		if err == nil {
			ex.stats.responded(sent, ex.pool.cfg.AccessLog)
			if resp.StatusCode == http.StatusSwitchingProtocols {
				ex.upgraded = true
				ex.upgrade = resp.Body
				ex.b.upgrades.Add(1)
			}
			return resp, nil
		}
		f := classify(err)
		if f == failClientGone || req.Context().Err() != nil {
			ex.gone = true
			return nil, err
		}
		ex.fail, ex.failErr = f, err
		if f == failClientBody || f == failClientRequest {
			return nil, err // the client's fault: no backend failed
		}
		be.failures.Add(1)
		what := describe(err, f, &ex.pool.cfg)
		if f == failConnect && be.markDown(what, time.Now()) {
			ex.b.log.Warn("backend "+be.name+" down: "+what+" (passive check); it returns after passing active health checks",
				"backend", be.name, "event", "backend_down")
		}
		next := -1
		if ex.attempts <= ex.pool.cfg.Retries && retryable(f, req) && (ex.body == nil || ex.body.untouched()) {
			next = ex.pool.policy.Pick(ex.tried)
		}
		if next < 0 {
			return nil, err
		}
		nb := ex.pool.backends[next]
		if ok, n := ex.b.logRetry.allow(time.Now()); ok {
			ex.b.log.Warn(fmt.Sprintf("retrying %s %s on %s after %s %s%s", req.Method, req.URL.Path, nb.name, be.name, what, more(n)),
				"backend", be.name, "next", nb.name, "attempt", ex.attempts+1, "event", "retry")
		}
		ex.b.retries.Add(1)
		be.stats.retries.Add(1)
		ex.use(next)
		sent = time.Now()
		req = req.Clone(req.Context())
		req.URL.Scheme, req.URL.Host = nb.URL.Scheme, nb.URL.Host
	}
}

// modifyResponse hands the backend's header values to the client's header
// map as they are. ReverseProxy would otherwise copy them value by value,
// one allocation per field, and parse Content-Type once more to decide on
// flushing; without Content-Type left in the Response it decides from the
// length alone, which flushes every answer of unknown length (server-sent
// events included) as it comes. The values are never pooled memory (see
// respScratch), so the client's map may keep them.
func (ex *exchange) modifyResponse(res *http.Response) error {
	if res.StatusCode == http.StatusSwitchingProtocols {
		// ReverseProxy reads Upgrade from res.Header to switch, and writes
		// the 101 itself from it: the admission's headers go there. Not
		// marked merged: if ReverseProxy refuses the switch, they still
		// belong on its 502.
		addEarly(res.Header, ex.rw.early)
		return nil
	}
	dst := ex.rw.Header()
	for k, vv := range res.Header {
		if prev := dst[k]; len(prev) > 0 {
			dst[k] = append(prev, vv...)
		} else {
			dst[k] = vv
		}
	}
	clear(res.Header)
	return nil
}

// errorHandler answers a request that got no response from any backend.
func (ex *exchange) errorHandler(w http.ResponseWriter, req *http.Request, err error) {
	if ex.body != nil && ex.body.stalled.Load() {
		// The client stopped sending its body. net/http cancels the request
		// on the read error, but the client is still there to be told.
		ex.gone = false
		ex.b.log.Warn(fmt.Sprintf("%s %s: the client sent no more of its body within %s; answered 408 and closed the connection",
			req.Method, req.URL.Path, ex.pool.cfg.ReadBodyTimeout), "status", http.StatusRequestTimeout, "event", "body_timeout")
		w.Header().Set("Connection", "close")
		WriteError(w, http.StatusRequestTimeout, "request timeout: the request body stopped arriving")
		return
	}
	if ex.gone || ex.in.Context().Err() != nil {
		// Nobody is listening for an answer; this is not the backend's fault.
		ex.gone = true
		return
	}
	if ex.fail == failClientBody {
		// The client's body broke (bad chunked framing, or cut short): 400,
		// and the server closes the connection, since where the body ends
		// can no longer be known.
		ex.badBody = true
		if ok, n := ex.b.logFailed.allow(time.Now()); ok {
			ex.b.log.Warn(fmt.Sprintf("%s %s: %s; answered 400 and closed the connection%s",
				req.Method, req.URL.Path, clientBodyReason(ex.failErr), more(n)), "status", http.StatusBadRequest, "event", "bad_request_body")
		}
		w.Header().Set("Connection", "close")
		WriteError(w, http.StatusBadRequest, "bad request: "+clientBodyReason(ex.failErr))
		return
	}
	if ex.fail == failClientRequest {
		ex.refuse(ex.failErr)
		return
	}
	if ex.fail == failNone {
		// Not a transport error: ReverseProxy refused an upgrade or the like.
		ex.fail, ex.failErr = failProtocol, err
		if ex.upgraded {
			ex.upgraded = false // the switch did not happen
			ex.b.upgrades.Add(-1)
		}
	}
	status, msg := http.StatusBadGateway, "bad gateway: the backend failed"
	switch ex.fail {
	case failTimeout:
		status, msg = http.StatusGatewayTimeout, "gateway timeout: the backend did not answer in time"
	case failConnect:
		msg = "bad gateway: no backend could be reached"
	case failBroken:
		msg = "bad gateway: the backend closed the connection without answering"
	case failProtocol:
		msg = "bad gateway: the backend sent an invalid response"
	}
	be := ex.backend()
	if ok, n := ex.b.logFailed.allow(time.Now()); ok {
		ex.b.log.Error(fmt.Sprintf("%s %s failed: backend %s %s; answered %d after %s%s",
			req.Method, req.URL.Path, be.name, describe(ex.failErr, ex.fail, &ex.pool.cfg), status, plural(ex.attempts, "attempt"), more(n)),
			"backend", be.name, "status", status, "event", "proxy_error", "err", ex.failErr)
	}
	WriteError(w, status, msg)
}

// refuse answers 400 (CONNECT: 501) to a request that h1.CheckRequest
// refuses: one that HTTP/2 can carry and HTTP/1.1 cannot, such as a method
// with spaces (forwarded, it would be a second request line), or one that
// h1.Server refuses from HTTP/1.1 clients.
func (ex *exchange) refuse(err error) {
	status, what := http.StatusBadRequest, "bad request: the "
	if ex.in.Method == http.MethodConnect {
		status, what = http.StatusNotImplemented, "not implemented: the " // as h1.Server answers it
	}
	if ok, n := ex.b.logFailed.allow(time.Now()); ok {
		ex.b.log.Warn(fmt.Sprintf("%q %q: refused: %v; answered %d%s",
			ex.in.Method, ex.in.URL.Path, err, status, more(n)), "status", status, "event", "bad_request")
	}
	WriteError(&ex.rw, status, what+strings.TrimPrefix(err.Error(), "h1: "))
}

// noBackend answers 503 when the policy finds no healthy backend.
func (ex *exchange) noBackend() {
	if ok, n := ex.b.logNoBackend.allow(time.Now()); ok {
		why := fmt.Sprintf("all %d backends failing health checks", len(ex.pool.backends))
		if len(ex.pool.backends) == 1 {
			why = "the only backend is failing health checks"
		}
		ex.b.log.Error(fmt.Sprintf("%s %s: no healthy backend (%s); answered 503%s",
			ex.in.Method, ex.in.URL.Path, why, more(n)), "status", 503, "event", "no_backend")
	}
	WriteError(&ex.rw, http.StatusServiceUnavailable, "service unavailable: no healthy backend")
}

// aborted records why ReverseProxy gave up on a response mid-body: the client
// stopped reading (not the backend's fault) or the backend broke off.
func (ex *exchange) aborted(panicValue any) {
	if ex.rw.err != nil || ex.in.Context().Err() != nil {
		ex.gone = true
		return
	}
	ex.broken = true
	if ex.cur < 0 {
		ex.b.log.Error("request handler panicked", "panic", fmt.Sprint(panicValue))
		return
	}
	be := ex.backend()
	be.failures.Add(1)
	detail := ex.sink.msg
	if detail == "" {
		detail = fmt.Sprint(panicValue)
	}
	if ok, n := ex.b.logAborted.allow(time.Now()); ok {
		ex.b.log.Error(fmt.Sprintf("%s %s: backend %s broke off the response after %d bytes; the client's response was aborted%s",
			ex.in.Method, ex.in.URL.Path, be.name, ex.rw.bytes, more(n)), "backend", be.name, "event", "response_aborted", "err", detail)
	}
}

// status is the request's outcome for logs and metrics: the status sent,
// 101 for an upgrade, 499 when the client went away first.
func (ex *exchange) status() int {
	switch {
	case ex.gone:
		return StatusClientClosed
	case ex.upgraded:
		return http.StatusSwitchingProtocols
	case ex.rw.status == 0:
		return http.StatusOK // the handler wrote nothing: net/http sends 200
	}
	return ex.rw.status
}

// recorder is the ResponseWriter ReverseProxy writes to: it notes the
// status and size for the access log, keeps a write deadline ahead of each
// write, and passes everything through. Unwrap lets
// http.ResponseController reach the underlying writer's Flush, Hijack and
// deadlines, which streaming and upgrades need.
type recorder struct {
	w      http.ResponseWriter
	status int
	bytes  int64
	err    error // first write error: the client stopped reading

	// early holds the headers set while admitting the request (the rate
	// limiter's). They join the answer when its final status is written:
	// ReverseProxy clears the header map after relaying an interim answer
	// (103 Early Hints), which would take them away otherwise.
	early     http.Header
	admitting bool // Header returns early
	merged    bool // early has joined the answer

	// The write deadline: armed at the start of the request and moved on
	// whenever half of it has passed, so each write has at least half of
	// timeout to complete (net/http clears it after each response).
	wd      writeDeadliner
	timeout time.Duration
	armed   time.Time
}

// writeDeadliner is what net/http's ResponseWriter offers for deadlines.
type writeDeadliner interface{ SetWriteDeadline(time.Time) error }

func (r *recorder) arm(now time.Time) {
	if r.wd != nil {
		r.wd.SetWriteDeadline(now.Add(r.timeout))
		r.armed = now
	}
}

// rearm moves the deadline on when half of it has passed.
func (r *recorder) rearm() {
	if r.wd != nil {
		if now := time.Now(); now.Sub(r.armed) > r.timeout/2 {
			r.arm(now)
		}
	}
}

func (r *recorder) Header() http.Header {
	if r.admitting {
		return r.early
	}
	return r.w.Header()
}

// mergeEarly adds the admission's headers to the answer's, once, ahead of
// any the backend sent under the same name.
func (r *recorder) mergeEarly(h http.Header) {
	if r.merged {
		return
	}
	r.merged = true
	addEarly(h, r.early)
}

func addEarly(h, early http.Header) {
	for k, v := range early {
		h[k] = append(slices.Clip(v), h[k]...)
	}
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
		r.mergeEarly(r.w.Header())
		r.rearm()
	}
	r.w.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
		r.mergeEarly(r.w.Header())
	}
	r.rearm()
	n, err := r.w.Write(p)
	r.bytes += int64(n)
	if err != nil && r.err == nil {
		r.err = err
	}
	return n, err
}

// FlushError flushes buffered data to the client; ReverseProxy calls it
// (through http.ResponseController) for streaming answers.
func (r *recorder) FlushError() error {
	r.rearm()
	return http.NewResponseController(r.w).Flush()
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.w }
