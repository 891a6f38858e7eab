package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
)

// request is one request as the soak wrote it, and what its answer must be
// when a backend made it.
type request struct {
	kind   string // the scenario that sent it
	id     string
	method string
	head   []byte // as written, up to and including the blank line
	body   string // what the body was, for reports; "" for none

	status  int      // the status the backend answers
	length  int64    // the answer body's length
	sum     [32]byte // and its SHA-256
	wsKey   string   // Sec-WebSocket-Key, for an upgrade
	pending func()   // when set, fills length and sum before the check (costly: done only for answers that need it)
}

// expectBody sets the answer body r must get.
func (r *request) expectBody(b []byte) {
	r.length, r.sum = int64(len(b)), sha256.Sum256(b)
}

// reply is an answer as the soak read it: head, and the body's length,
// SHA-256 and first bytes.
type reply struct {
	status int
	proto  string
	header http.Header
	length int64
	sum    [32]byte
	prefix []byte
}

// outcome sorts answers, from fine to worst.
type outcome int

const (
	outOK         outcome = iota // the backend's answer to this request
	outBalancer                  // a 502, 503 or 504 the balancer made: expected under faults
	outUnexpected                // an answer no request of the soak should get, not another's
	outMismatch                  // another request's answer, or bytes the balancer had to refuse
)

func (o outcome) String() string {
	return [...]string{"ok", "balancer error", "unexpected answer", "MISMATCH"}[o]
}

// verdict is check's finding: the outcome and, but for outOK, why.
type verdict struct {
	out outcome
	why string
}

// check compares an answer with the request it was read for. An answer
// is the backend's only if it carries the request's id, the status the
// backend gives that request and, to the byte, the body. An answer that
// carries another id, the flaky backend's mark of a malformed answer, or
// its poison bytes, is a mismatch: the worst a proxy can do. An answer
// with no id is either the balancer's own (a JSON error) or unexpected.
func check(rq *request, rp *reply) verdict {
	if v, decided := checkHead(rq, rp); decided {
		return v
	}
	if rq.pending != nil {
		rq.pending()
		rq.pending = nil
	}
	if rp.length != rq.length || rp.sum != rq.sum {
		return verdict{outMismatch, fmt.Sprintf("the body is not the one its backend sends (%d bytes, want %d)", rp.length, rq.length)}
	}
	return verdict{outOK, ""}
}

// checkHead is check up to the body: it reports whether the head (and the
// first bytes of the body) decide the verdict.
func checkHead(rq *request, rp *reply) (verdict, bool) {
	id := rp.header.Get(idHeader)
	switch {
	case rp.header.Get(badHeader) != "":
		return verdict{outMismatch, fmt.Sprintf("the flaky backend's %q answer was passed on", rp.header.Get(badHeader))}, true
	case bytes.Contains(rp.prefix, []byte(poisonText)):
		return verdict{outMismatch, "the answer's body holds the flaky backend's poison bytes"}, true
	case id != "" && id != rq.id:
		return verdict{outMismatch, fmt.Sprintf("the answer carries the id %q of another request", id)}, true
	case id == "" && rp.status == rq.status:
		return verdict{outMismatch, fmt.Sprintf("a %d without the request's id", rp.status)}, true
	case id == "":
		if msg, ok := balancerError(rp, rq.method == http.MethodHead); ok {
			if rp.status == http.StatusBadGateway || rp.status == http.StatusServiceUnavailable || rp.status == http.StatusGatewayTimeout {
				return verdict{outBalancer, fmt.Sprintf("%d %s", rp.status, msg)}, true
			}
			return verdict{outUnexpected, fmt.Sprintf("the balancer answered %d %s", rp.status, msg)}, true
		}
		return verdict{outUnexpected, fmt.Sprintf("a %d that is neither the backend's nor a balancer error", rp.status)}, true
	case rp.status != rq.status:
		return verdict{outMismatch, fmt.Sprintf("status %d with the request's id; its backend answers %d", rp.status, rq.status)}, true
	}
	if rq.status == http.StatusSwitchingProtocols {
		if got, want := rp.header.Get("Sec-WebSocket-Accept"), wsAccept(rq.wsKey); got != want {
			return verdict{outMismatch, fmt.Sprintf("Sec-WebSocket-Accept %q answers another key (want %q)", got, want)}, true
		}
		return verdict{outOK, ""}, true
	}
	return verdict{}, false
}

// balancerError returns the message of an answer the balancer made itself:
// JSON {"error": "..."}, whole in the reply's prefix; no body when it
// answers a HEAD.
func balancerError(rp *reply, head bool) (string, bool) {
	if !strings.HasPrefix(rp.header.Get("Content-Type"), "application/json") || rp.length > int64(len(rp.prefix)) {
		return "", false
	}
	if head && rp.length == 0 && rp.header.Get("X-Content-Type-Options") == "nosniff" {
		return "(an answer to HEAD: no body)", true // with the headers of lb.WriteError
	}
	var e struct {
		Error *string `json:"error"`
	}
	if json.Unmarshal(rp.prefix, &e) != nil || e.Error == nil {
		return "", false
	}
	return *e.Error, true
}

// describe is a request and its answer written out for a report: the
// request's head and body as sent, the answer's head and first bytes.
func describe(rq *request, rp *reply) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  request (%s, id %s):\n", rq.kind, rq.id)
	writeIndented(&b, string(rq.head))
	if rq.body != "" {
		fmt.Fprintf(&b, "    body: %s\n", rq.body)
	}
	if rp == nil {
		return b.String()
	}
	fmt.Fprintf(&b, "  answer:\n    %s %d\n", rp.proto, rp.status)
	for _, k := range slices.Sorted(maps.Keys(rp.header)) {
		for _, v := range rp.header[k] {
			fmt.Fprintf(&b, "    %s: %s\n", k, v)
		}
	}
	fmt.Fprintf(&b, "    body: %d bytes, first %d: %q\n", rp.length, len(rp.prefix), rp.prefix)
	return b.String()
}

// writeIndented writes s a line to a line, each quoted with its line end.
func writeIndented(b *strings.Builder, s string) {
	for len(s) > 0 {
		line, rest, _ := strings.Cut(s, "\n")
		fmt.Fprintf(b, "    %q\n", line+"\n")
		s = rest
	}
}
