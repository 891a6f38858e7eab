package main

import (
	"bytes"
	"crypto/sha256"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// getRequest0 is a GET of /get/r7?size=10 as the soak makes it.
func getRequest0() *request {
	rq := &request{kind: "get", id: "r7", method: http.MethodGet, head: []byte("GET /get/r7?size=10 HTTP/1.1\r\n\r\n"), status: 200}
	rq.expectBody(fill("r7", 10))
	return rq
}

func replyOf(status int, hdr map[string]string, body []byte) *reply {
	h := http.Header{}
	for k, v := range hdr {
		h.Set(k, v)
	}
	return &reply{status: status, proto: "HTTP/1.1", header: h, length: int64(len(body)), sum: sha256.Sum256(body),
		prefix: body[:min(len(body), prefixKeep)]}
}

func TestCheck_SortsAnswers(t *testing.T) {
	jsonErr := func(status int, msg string) *reply {
		return replyOf(status, map[string]string{"Content-Type": "application/json"}, []byte(`{"error":"`+msg+`"}`+"\n"))
	}
	for _, tc := range []struct {
		name string
		rp   *reply
		want outcome
		why  string // a part of the verdict's reason
	}{
		{"its own answer", replyOf(200, map[string]string{idHeader: "r7"}, fill("r7", 10)), outOK, ""},
		{"another request's id", replyOf(200, map[string]string{idHeader: "r8"}, fill("r8", 10)), outMismatch, `id "r8"`},
		{"its id on another's body", replyOf(200, map[string]string{idHeader: "r7"}, fill("r8", 10)), outMismatch, "body"},
		{"a body cut short", replyOf(200, map[string]string{idHeader: "r7"}, fill("r7", 9)), outMismatch, "9 bytes, want 10"},
		{"no id", replyOf(200, nil, fill("r7", 10)), outMismatch, "without the request's id"},
		{"a refused answer passed on", replyOf(200, map[string]string{idHeader: "r7", badHeader: "two-cl"}, []byte(poisonText)), outMismatch, "two-cl"},
		{"poison in the body", replyOf(200, map[string]string{idHeader: "r7"}, []byte("r7|r7|"+poisonText)), outMismatch, "poison"},
		{"the backend's status, another's", replyOf(403, map[string]string{idHeader: "r7"}, []byte(rejectBody("r7"))), outMismatch, "status 403"},
		{"a 502 of the balancer", jsonErr(502, "bad gateway: the backend failed"), outBalancer, "502 bad gateway"},
		{"a 504 of the balancer", jsonErr(504, "gateway timeout"), outBalancer, "504"},
		{"a 400 of the balancer", jsonErr(400, "bad request"), outUnexpected, "400"},
		{"a 502 that is not JSON", replyOf(502, nil, []byte("bad gateway")), outUnexpected, "neither"},
		{"a 502 with another id", replyOf(502, map[string]string{idHeader: "r9", "Content-Type": "application/json"}, []byte(`{"error":"x"}`)), outMismatch, "r9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := check(getRequest0(), tc.rp)
			if v.out != tc.want || !strings.Contains(v.why, tc.why) {
				t.Errorf("check = %v %q, want %v with %q", v.out, v.why, tc.want, tc.why)
			}
		})
	}
}

func TestCheck_WebSocketAcceptMustAnswerItsKey(t *testing.T) {
	rq := &request{kind: "ws", id: "r1", method: http.MethodGet, status: 101, wsKey: "dGhlIHNhbXBsZSBub25jZQ=="}
	ok := replyOf(101, map[string]string{idHeader: "r1", "Sec-WebSocket-Accept": "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="}, nil)
	if v := check(rq, ok); v.out != outOK {
		t.Errorf("RFC 6455's own example: %v %q", v.out, v.why)
	}
	other := replyOf(101, map[string]string{idHeader: "r1", "Sec-WebSocket-Accept": wsAccept("another key")}, nil)
	if v := check(rq, other); v.out != outMismatch {
		t.Errorf("accept for another key: %v, want a mismatch", v.out)
	}
}

func TestCheck_PendingBodyIsComputedOnlyWhenNeeded(t *testing.T) {
	p := payload{n: 1000, seed: 3}
	calls := 0
	rq := &request{kind: "echo", id: "r2", status: 200}
	rq.pending = func() { calls++; rq.length, rq.sum = p.n, p.sum() }
	var body bytes.Buffer
	io.Copy(&body, p.reader())
	if v := check(rq, jsonReply(502)); v.out != outBalancer || calls != 0 {
		t.Errorf("a 502: %v, pending called %d times; want a balancer error and no call", v.out, calls)
	}
	if v := check(rq, replyOf(200, map[string]string{idHeader: "r2"}, body.Bytes())); v.out != outOK || calls != 1 {
		t.Errorf("the echo: %v %q, pending called %d times", v.out, v.why, calls)
	}
}

func jsonReply(status int) *reply {
	return replyOf(status, map[string]string{"Content-Type": "application/json"}, []byte(`{"error":"x"}`))
}

// A payload must be the same bytes however it is read: a chunked upload
// reads it in pieces of every size, and its sum is computed in others.
func TestPayload_SameBytesWhateverTheReadSizes(t *testing.T) {
	for _, p := range []payload{{n: 100_003, seed: 9}, {n: 5000, smuggle: true}} {
		whole, _ := io.ReadAll(p.reader())
		var pieces []byte
		r := p.reader()
		for i := 1; ; i = i%13 + 1 {
			buf := make([]byte, i)
			n, err := r.Read(buf)
			pieces = append(pieces, buf[:n]...)
			if err != nil {
				break
			}
		}
		if int64(len(whole)) != p.n || !bytes.Equal(whole, pieces) {
			t.Errorf("%v: read whole %d bytes, in pieces %d, equal %v", p, len(whole), len(pieces), bytes.Equal(whole, pieces))
		}
		if sha256.Sum256(whole) != p.sum() {
			t.Errorf("%v: sum differs from the bytes' SHA-256", p)
		}
	}
}

func TestWriteBody_FramesChunksAndCuts(t *testing.T) {
	p := payload{n: 200_000, seed: 4}
	want, _ := io.ReadAll(p.reader())
	var chunked bytes.Buffer
	if err := writeBody(&chunked, p, true, -1); err != nil {
		t.Fatal(err)
	}
	req, err := http.ReadRequest(bufioReader("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked.String()))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(req.Body)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("chunked body: %d bytes, err %v; want the payload's %d", len(got), err, len(want))
	}
	var cut bytes.Buffer
	if err := writeBody(&cut, p, false, 1234); err != errCut || cut.Len() != 1234 || !bytes.Equal(cut.Bytes(), want[:1234]) {
		t.Errorf("cut at 1234: %d bytes, err %v", cut.Len(), err)
	}
}

func TestExplainer_ByIDThenByWindowElseUnexplained(t *testing.T) {
	e := newExplainer()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	e.mark("r1", "the flaky backend's stall")
	e.happened(t0, "killing b2")
	e.happened(t0.Add(10*time.Second), "a reload")
	for _, tc := range []struct {
		id   string
		at   time.Time
		want string
	}{
		{"r1", t0.Add(time.Hour), "the flaky backend's stall"},
		{"r2", t0.Add(time.Second), "within 2s of killing b2"},
		{"r2", t0.Add(11 * time.Second), "within 2s of a reload"},
		{"r2", t0.Add(5 * time.Second), unexplained},
		{"r2", t0.Add(-time.Second), unexplained},
	} {
		if got := e.why(tc.id, tc.at); got != tc.want {
			t.Errorf("why(%s, t0%+v) = %q, want %q", tc.id, tc.at.Sub(t0), got, tc.want)
		}
	}
}
