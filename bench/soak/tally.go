package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// tally counts what the clients sent and got, and keeps examples: every
// mismatch up to keepMismatches, the first of each kind of error. It is
// safe for concurrent use.
type tally struct {
	ex *explainer // why failures happened; set at creation

	// mu guards the fields below.
	mu          sync.Mutex
	kinds       map[string]*kindCount
	statuses    map[int]int64
	errs        map[string]*example // by kind: connection errors, balancer and unexpected answers
	mismatches  []string
	mismatchN   int64
	wsMessages  int64
	unexplained int64 // balancer errors, unexpected answers and connection errors the explainer could not explain
}

// kindCount is what one scenario's requests came to.
type kindCount struct {
	sent, ok, balancer, unexpected, mismatch, connErr int64
	slowest                                           time.Duration // one run of the scenario, requests and all
}

type example struct {
	n     int64
	first string
}

const keepMismatches = 50

func newTally() *tally {
	return &tally{ex: newExplainer(), kinds: map[string]*kindCount{}, statuses: map[int]int64{}, errs: map[string]*example{}}
}

func (t *tally) kind(k string) *kindCount {
	c := t.kinds[k]
	if c == nil {
		c = &kindCount{}
		t.kinds[k] = c
	}
	return c
}

// sent counts a request written (or begun, for the hang-ups).
func (t *tally) sent(kind string) {
	t.mu.Lock()
	t.kind(kind).sent++
	t.mu.Unlock()
}

// got checks an answer against its request and counts the verdict.
func (t *tally) got(rq *request, rp *reply) verdict {
	v := check(rq, rp)
	why := ""
	if v.out == outBalancer || v.out == outUnexpected {
		why = t.ex.why(rq.id, time.Now())
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.statuses[rp.status]++
	c := t.kind(rq.kind)
	switch v.out {
	case outOK:
		c.ok++
	case outBalancer:
		c.balancer++
		t.note("balancer "+v.why, why, describe(rq, rp))
	case outUnexpected:
		c.unexpected++
		t.note("unexpected: "+v.why, why, describe(rq, rp))
	case outMismatch:
		c.mismatch++
		t.addMismatch(v.why + "\n" + describe(rq, rp))
	}
	return v
}

// mismatch records a mismatch found outside an answer: by a backend (a
// smuggled request) or in a WebSocket's echo.
func (t *tally) mismatch(kind, detail string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if kind != "" {
		t.kind(kind).mismatch++
	}
	t.addMismatch(detail)
}

func (t *tally) addMismatch(detail string) {
	t.mismatchN++
	if len(t.mismatches) < keepMismatches {
		t.mismatches = append(t.mismatches, detail)
	}
}

// failed counts a request that got no answer, by what happened: what is
// the error's kind (errKind) and where ("before the answer", ...).
func (t *tally) failed(rq *request, where string, err error) {
	k := errKind(err) + " " + where
	why := "follows the failure before it"
	if err != errUnanswered {
		why = t.ex.why(rq.id, time.Now())
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.kind(rq.kind).connErr++
	t.note(k, why, fmt.Sprintf("%v\n%s", err, describe(rq, nil)))
}

// note counts one of kind k, which happened because of why, keeping the
// first example.
func (t *tally) note(k, why, detail string) {
	if why == unexplained {
		t.unexplained++
	}
	k += " [" + why + "]"
	e := t.errs[k]
	if e == nil {
		e = &example{first: detail}
		t.errs[k] = e
	}
	e.n++
}

// took counts a run of scenario kind that lasted d.
func (t *tally) took(kind string, d time.Duration) {
	t.mu.Lock()
	c := t.kind(kind)
	c.slowest = max(c.slowest, d)
	t.mu.Unlock()
}

func (t *tally) wsMessage() {
	t.mu.Lock()
	t.wsMessages++
	t.mu.Unlock()
}

// totals returns requests sent, failures of any kind (balancer errors,
// unexpected answers, connection errors) and mismatches so far.
func (t *tally) totals() (sent, failures, mismatches int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.kinds {
		sent += c.sent
		failures += c.balancer + c.unexpected + c.connErr
	}
	return sent, failures, t.mismatchN
}

// errKind names what kind of failure err is, in a word or two.
func errKind(err error) string {
	var ne net.Error
	var oe *net.OpError
	switch {
	case err == nil:
		return "no error"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "TIMEOUT"
	case errors.As(err, &oe):
		return oe.Op + " error"
	case strings.Contains(err.Error(), "malformed"):
		return "malformed answer"
	}
	return "error"
}
