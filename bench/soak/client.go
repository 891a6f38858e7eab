package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// worker is one client of the soak: it runs scenarios one after another,
// on its keep-alive connection or, for upgrades and hang-ups, on a fresh
// one, and tallies every answer. A worker belongs to one goroutine.
type worker struct {
	addr      string
	rng       *rand.Rand
	t         *tally
	ids       *atomic.Uint64 // shared by all workers: ids are unique in a run
	timeout   time.Duration  // for one scenario, from its first write
	maxUpload int64
	c         *conn // the keep-alive connection; nil when none is open
}

// conn is a client connection and its reader.
type conn struct {
	nc   net.Conn
	br   *bufio.Reader
	tap  *tap
	used int    // answers read on it
	last string // the last exchange on it, for reports
	at   time.Time
}

// answered notes rq's answer rp as the last exchange on c.
func (c *conn) answered(rq *request, rp *reply) {
	c.used++
	c.last = fmt.Sprintf("%s %s %s answered %d by %q %s (Connection: %q, %d body bytes)", rq.kind, rq.method, rq.id,
		rp.status, rp.header.Get(backendHeader), rp.header.Get(modeHeader), rp.header.Get("Connection"), rp.length)
	c.at = time.Now()
}

// tap is what a conn's reader reads: the connection, keeping the last
// bytes read, to show what an answer that could not be parsed held.
type tap struct {
	r    io.Reader
	last []byte
}

const tapKeep = 1024

func (t *tap) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.last = append(t.last, p[:n]...)
	if len(t.last) > 2*tapKeep {
		t.last = append(t.last[:0], t.last[len(t.last)-tapKeep:]...)
	}
	return n, err
}

func dial(addr string) (*conn, error) {
	nc, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return nil, err
	}
	t := &tap{r: nc}
	return &conn{nc: nc, br: bufio.NewReaderSize(t, 16<<10), tap: t}, nil
}

func (w *worker) newID() string { return "r" + strconv.FormatUint(w.ids.Add(1), 10) }

// conn returns the keep-alive connection, dialling one when none is open.
func (w *worker) conn() (*conn, error) {
	if w.c == nil {
		c, err := dial(w.addr)
		if err != nil {
			return nil, err
		}
		w.c = c
	}
	w.c.nc.SetDeadline(time.Now().Add(w.timeout))
	return w.c, nil
}

// drop closes the keep-alive connection.
func (w *worker) drop() {
	if w.c != nil {
		w.c.nc.Close()
		w.c = nil
	}
}

// phaseErr is a failure and where in the exchange it came.
type phaseErr struct {
	where string
	err   error
}

func (e *phaseErr) Error() string { return e.where + ": " + e.err.Error() }
func (e *phaseErr) Unwrap() error { return e.err }

const (
	beforeAnswer = "before the answer"
	inBody       = "in the answer's body"
)

// maxAnswer bounds the answer bodies read: the largest the soak asks for
// is a few MiB.
const maxAnswer = 16 << 20

// readReply reads the answer to a request made with method: interim (1xx)
// answers are passed to interim (may be nil) and skipped. It reports
// whether the connection is done after it (Connection: close, or a 101).
// A reply comes back with an error when the head was read and the body
// broke off.
func readReply(c *conn, method string, interim func(code int)) (*reply, bool, error) {
	for {
		resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
		if err != nil {
			return nil, true, &phaseErr{beforeAnswer, err}
		}
		if resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			if interim != nil {
				interim(resp.StatusCode)
			}
			continue
		}
		d := newDigest()
		_, err = io.Copy(d, io.LimitReader(resp.Body, maxAnswer))
		resp.Body.Close()
		rp := &reply{status: resp.StatusCode, proto: resp.Proto, header: resp.Header, length: d.n, sum: d.value(), prefix: d.prefix}
		if err != nil {
			return rp, true, &phaseErr{inBody, err}
		}
		return rp, resp.Close || resp.StatusCode == http.StatusSwitchingProtocols, nil
	}
}

// read reads and checks the answer to rq on c. It reports whether the
// connection can carry another request.
func (w *worker) read(c *conn, rq *request, interim func(int)) bool {
	rp, done, err := readReply(c, rq.method, interim)
	if err != nil {
		w.lost(c, rq, rp, err)
		return false
	}
	c.answered(rq, rp)
	w.t.got(rq, rp)
	if done && c == w.c {
		w.drop()
	}
	return !done
}

// lost counts a request whose answer did not come whole. Even then the
// part that came must not be another request's: a head carrying another
// id, or poison in the bytes read, is a mismatch.
func (w *worker) lost(c *conn, rq *request, rp *reply, err error) {
	if c == w.c {
		w.drop()
	}
	if rp != nil {
		if v, decided := checkHead(rq, rp); decided && v.out == outMismatch {
			w.t.mismatch(rq.kind, v.why+" (the body then broke off: "+err.Error()+")\n"+describe(rq, rp))
			return
		}
	}
	if bytes.Contains(c.tap.last, []byte(poisonText)) {
		w.t.mismatch(rq.kind, fmt.Sprintf("the flaky backend's poison reached a client (%v); last bytes read: %q\n%s",
			err, c.tap.last, describe(rq, nil)))
		return
	}
	where := beforeAnswer
	var pe *phaseErr
	if errors.As(err, &pe) {
		where = pe.where
	}
	if where == beforeAnswer && c.used > 0 {
		where += " on a reused connection"
		err = fmt.Errorf("%w; the connection's previous exchange, %v before: %s", err, time.Since(c.at).Round(time.Millisecond), c.last)
	}
	if errKind(err) == "malformed answer" {
		err = fmt.Errorf("%w; last bytes read: %q", err, c.tap.last)
	}
	w.t.failed(rq, where, err)
}

// one sends a request without a body on the keep-alive connection and
// checks its answer.
func (w *worker) one(rq *request) {
	if c := w.send(rq); c != nil {
		w.read(c, rq, nil)
	}
}

// send counts rq and writes its head on the keep-alive connection, which
// it returns; nil (the failure counted) when it could not.
func (w *worker) send(rq *request) *conn {
	w.t.sent(rq.kind)
	c, err := w.conn()
	if err != nil {
		w.t.failed(rq, "connecting", err)
		return nil
	}
	if _, err := c.nc.Write(rq.head); err != nil {
		w.drop()
		w.t.failed(rq, "writing the request", err)
		return nil
	}
	return c
}

// expectWait is how long a client that sent Expect: 100-continue waits for
// the 100 before it sends the body anyway (curl waits 1 s).
const expectWait = 1500 * time.Millisecond

// withBody sends a request with body p on the keep-alive connection, the
// body from a goroutine of its own while the answer is read (a backend may
// answer early, or echo as it reads), and checks the answer. With expect,
// the body waits for a 100 Continue, or for expectWait.
func (w *worker) withBody(rq *request, p payload, chunked, expect bool) {
	c := w.send(rq)
	if c == nil {
		return
	}
	wrote := make(chan error, 1)
	started := false
	start := func() {
		if !started {
			started = true
			go func() { wrote <- writeBody(c.nc, p, chunked, -1) }() // ends when written or the connection fails
		}
	}
	if !expect {
		start()
	} else {
		c.nc.SetReadDeadline(time.Now().Add(expectWait))
		_, err := c.br.Peek(1)
		c.nc.SetReadDeadline(time.Now().Add(w.timeout))
		switch {
		case err == nil: // an answer has begun: a 100, or a final answer that refuses the body
		case errKind(err) == "TIMEOUT":
			start()
		default:
			w.lost(c, rq, nil, &phaseErr{beforeAnswer, err})
			return
		}
	}
	rp, done, err := readReply(c, rq.method, func(code int) {
		if code == http.StatusContinue {
			start()
		}
	})
	if !started {
		done = true // the body was never sent: the connection cannot say where the next request starts
	}
	if done || err != nil {
		w.drop() // also stops a writer still sending
	}
	var werr error
	if started {
		werr = <-wrote
	}
	if err != nil {
		w.lost(c, rq, rp, err)
		return
	}
	c.answered(rq, rp)
	w.t.got(rq, rp)
	if !done && werr != nil {
		// The answer kept the connection open, yet the rest of the body
		// could not be sent: the balancer stopped reading it.
		w.drop()
		w.t.failed(rq, "sending the body after a keep-alive answer", werr)
	}
}

// writeBody writes p, chunked or as is, stopping with errCut after limit
// bytes of the body when limit >= 0 (a client hanging up mid-body).
func writeBody(nc io.Writer, p payload, chunked bool, limit int64) error {
	rng := rand.New(rand.NewPCG(p.seed, 1))
	src := p.reader()
	buf := make([]byte, 64<<10)
	frame := make([]byte, 0, 64<<10+32)
	var sent int64
	for {
		n := 32 << 10
		if chunked {
			n = 1 + rng.IntN(48<<10)
		}
		if limit >= 0 && int64(n) > limit-sent {
			n = int(limit - sent)
		}
		k, err := io.ReadFull(src, buf[:n])
		frame = frame[:0]
		if chunked && k > 0 {
			frame = fmt.Appendf(frame, "%x\r\n", k)
		}
		frame = append(frame, buf[:k]...)
		if chunked && k > 0 {
			frame = append(frame, "\r\n"...)
		}
		sent += int64(k)
		last := err != nil || limit >= 0 && sent >= limit
		if last && chunked && limit < 0 {
			frame = append(frame, "0\r\n\r\n"...)
		}
		if len(frame) > 0 {
			if _, werr := nc.Write(frame); werr != nil {
				return werr
			}
		}
		if limit >= 0 && sent >= limit {
			return errCut
		}
		if err != nil {
			return nil
		}
	}
}

var errCut = errors.New("the body was cut short on purpose")
