package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"
)

// scenario is one kind of client behaviour, picked with a weight.
type scenario struct {
	name   string
	weight int
	run    func(*worker)
}

// scenarios is the mix the workers draw from.
var scenarios = []scenario{
	{"get", 18, func(w *worker) { w.one(w.getRequest("get", http.MethodGet)) }},
	{"head", 6, func(w *worker) { w.one(w.getRequest("head", http.MethodHead)) }},
	{"pipeline", 10, (*worker).pipeline},
	{"upload-length", 6, func(w *worker) { w.upload("upload-length", false, false) }},
	{"upload-chunked", 6, func(w *worker) { w.upload("upload-chunked", true, false) }},
	{"upload-expect", 5, func(w *worker) { w.upload("upload-expect", w.rng.IntN(2) == 0, true) }},
	{"echo", 8, func(w *worker) { w.echo("echo", false) }},
	{"echo-smuggle", 5, func(w *worker) { w.echo("echo-smuggle", true) }},
	{"reject", 8, (*worker).reject},
	{"ws", 5, (*worker).websocket},
	{"hangup-head", 3, (*worker).hangupHead},
	{"hangup-body", 4, (*worker).hangupBody},
	{"hangup-wait", 2, (*worker).hangupWait},
	{"reset", 4, (*worker).reset},
}

// mixOf returns the scenarios named in only (comma-separated), or all of
// them for "".
func mixOf(only string) ([]scenario, error) {
	if only == "" {
		return scenarios, nil
	}
	var mix []scenario
	for name := range strings.SplitSeq(only, ",") {
		i := slices.IndexFunc(scenarios, func(s scenario) bool { return s.name == name })
		if i < 0 {
			return nil, fmt.Errorf("-only: no scenario %q", name)
		}
		mix = append(mix, scenarios[i])
	}
	return mix, nil
}

// run runs scenarios until ctx ends.
func (w *worker) run(ctx context.Context, mix []scenario) {
	total := 0
	for _, s := range mix {
		total += s.weight
	}
	for ctx.Err() == nil {
		n := w.rng.IntN(total)
		for _, s := range mix {
			if n -= s.weight; n < 0 {
				start := time.Now()
				s.run(w)
				w.t.took(s.name, time.Since(start))
				break
			}
		}
	}
	w.drop()
}

// pick returns one of vs, the first ones weighted more: vs go from common
// to rare.
func pick[T any](w *worker, vs ...T) T {
	return vs[min(w.rng.IntN(len(vs)), w.rng.IntN(len(vs)))]
}

// getRequest makes a GET or HEAD of /get/ID: a body of 0 to 300 KB,
// sometimes chunked, sometimes a little late (so that the balancer starts
// watching the client for a hang-up).
func (w *worker) getRequest(kind, method string) *request {
	id := w.newID()
	size := pick(w, 0, 100, 2000, 16<<10, 1, 64<<10, 300<<10)
	q := fmt.Sprintf("size=%d", size)
	if w.rng.IntN(5) == 0 {
		q += "&te=chunked"
	}
	if w.rng.IntN(20) == 0 {
		q += "&delay=80ms"
	}
	head := fmt.Sprintf("%s /get/%s?%s HTTP/1.1\r\nHost: soak\r\n%s: %s\r\n\r\n", method, id, q, idHeader, id)
	rq := &request{kind: kind, id: id, method: method, head: []byte(head), status: http.StatusOK}
	if method == http.MethodHead {
		rq.expectBody(nil)
	} else {
		rq.expectBody(fill(id, size))
	}
	return rq
}

// pipeline writes 2 to 6 GETs and HEADs at once on the keep-alive
// connection, then reads their answers in order.
func (w *worker) pipeline() {
	rqs := make([]*request, 2+w.rng.IntN(5))
	var all []byte
	for i := range rqs {
		m := http.MethodGet
		if w.rng.IntN(4) == 0 {
			m = http.MethodHead
		}
		rqs[i] = w.getRequest("pipeline", m)
		all = append(all, rqs[i].head...)
		w.t.sent("pipeline")
	}
	c, err := w.conn()
	if err == nil {
		_, err = c.nc.Write(all)
	}
	if err != nil {
		w.drop()
		for _, rq := range rqs {
			w.t.failed(rq, "writing the pipeline", err)
		}
		return
	}
	for i, rq := range rqs {
		if !w.read(c, rq, nil) {
			for _, rest := range rqs[i+1:] {
				w.t.failed(rest, "after an earlier answer in the pipeline ended the connection", errUnanswered)
			}
			return
		}
	}
}

// errUnanswered is the failure of a pipelined request left unanswered
// when an earlier answer on its connection broke off.
var errUnanswered = errors.New("not answered")

// bodyHead is the head of a POST to path with body p.
func bodyHead(path, id string, p payload, chunked, expect bool) []byte {
	h := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: soak\r\n%s: %s\r\n", path, idHeader, id)
	if chunked {
		h += "Transfer-Encoding: chunked\r\n"
	} else {
		h += fmt.Sprintf("Content-Length: %d\r\n", p.n)
	}
	if expect {
		h += "Expect: 100-continue\r\n"
	}
	return []byte(h + "\r\n")
}

func bodyDesc(p payload, chunked, expect bool) string {
	s := p.String()
	if chunked {
		s += ", chunked"
	}
	if expect {
		s += ", after Expect: 100-continue"
	}
	return s
}

// upload POSTs 1 byte to maxUpload to /upload/ID, which answers with the
// body's length and SHA-256.
func (w *worker) upload(kind string, chunked, expect bool) {
	id := w.newID()
	p := payload{n: pick(w, int64(100), 4<<10, 1, 64<<10, 256<<10, 1<<20, w.maxUpload), seed: w.rng.Uint64()}
	rq := &request{kind: kind, id: id, method: http.MethodPost, head: bodyHead("/upload/"+id, id, p, chunked, expect),
		body: bodyDesc(p, chunked, expect), status: http.StatusOK}
	rq.pending = func() { rq.expectBody([]byte(uploadAnswer(id, p.n, p.sum()))) }
	w.withBody(rq, p, chunked, expect)
}

// echo POSTs up to 256 KiB to /echo/ID, which sends it back as it reads
// it; with smuggle, a body of request lines.
func (w *worker) echo(kind string, smuggle bool) {
	id := w.newID()
	p := payload{n: pick(w, int64(1000), 100, 16<<10, 64<<10, 256<<10), seed: w.rng.Uint64(), smuggle: smuggle}
	chunked := w.rng.IntN(2) == 0
	rq := &request{kind: kind, id: id, method: http.MethodPost, head: bodyHead("/echo/"+id, id, p, chunked, false),
		body: bodyDesc(p, chunked, false), status: http.StatusOK}
	rq.pending = func() { rq.length, rq.sum = p.n, p.sum() }
	w.withBody(rq, p, chunked, false)
}

// reject POSTs to /reject/ID, which answers 403 or 413 without reading
// the body: bodies from nothing to 4 MiB, half of them request lines.
func (w *worker) reject() {
	id := w.newID()
	code := pick(w, http.StatusForbidden, http.StatusRequestEntityTooLarge)
	p := payload{n: pick(w, int64(100), 64<<10, 0, 256<<10, 1<<20, 4<<20), seed: w.rng.Uint64(), smuggle: w.rng.IntN(2) == 0}
	chunked, expect := w.rng.IntN(5) < 2, w.rng.IntN(10) < 3
	path := fmt.Sprintf("/reject/%s?code=%d", id, code)
	rq := &request{kind: "reject", id: id, method: http.MethodPost, head: bodyHead(path, id, p, chunked, expect),
		body: bodyDesc(p, chunked, expect), status: code}
	rq.expectBody([]byte(rejectBody(id)))
	w.withBody(rq, p, chunked, expect)
}

// websocket upgrades a fresh connection and exchanges 1 to 5 messages of
// up to 70 KB with the backend's echo, then closes.
func (w *worker) websocket() {
	id := w.newID()
	var k [16]byte
	for i := range k {
		k[i] = byte(w.rng.Uint32())
	}
	key := base64.StdEncoding.EncodeToString(k[:])
	head := fmt.Sprintf("GET /ws/%s HTTP/1.1\r\nHost: soak\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s: %s\r\n\r\n", id, key, idHeader, id)
	rq := &request{kind: "ws", id: id, method: http.MethodGet, head: []byte(head), status: http.StatusSwitchingProtocols, wsKey: key}
	w.t.sent("ws")
	c, err := dial(w.addr)
	if err != nil {
		w.t.failed(rq, "connecting", err)
		return
	}
	defer c.nc.Close()
	c.nc.SetDeadline(time.Now().Add(w.timeout))
	if _, err := c.nc.Write(rq.head); err != nil {
		w.t.failed(rq, "writing the request", err)
		return
	}
	rp, _, err := readReply(c, http.MethodGet, nil)
	if err != nil {
		w.lost(c, rq, rp, err)
		return
	}
	if v := w.t.got(rq, rp); v.out != outOK {
		return
	}
	mask := func() []byte { m := w.rng.Uint32(); return []byte{byte(m), byte(m >> 8), byte(m >> 16), byte(m >> 24)} }
	for i := range 1 + w.rng.IntN(5) {
		msg := wsFrame{op: wsText, payload: fmt.Appendf(nil, "%s#%d#", id, i)}
		if n := pick(w, 0, 200, 10, 5000, 70000); n > 0 {
			msg.op = wsBinary
			msg.payload = append(msg.payload, make([]byte, n)...)
			(&randReader{r: randSource(w.rng.Uint64())}).Read(msg.payload[len(msg.payload)-n:])
		}
		if err := writeWS(c.nc, msg, mask()); err != nil {
			w.t.failed(rq, "sending a websocket message", err)
			return
		}
		got, err := readWS(c.br, false)
		if err != nil {
			w.t.failed(rq, "waiting for a websocket echo", err)
			return
		}
		if got.op != msg.op || !bytes.Equal(got.payload, msg.payload) {
			w.t.mismatch("ws", fmt.Sprintf("websocket message %d came back different: sent op %d, %d bytes %.80q; got op %d, %d bytes %.80q\n%s",
				i, msg.op, len(msg.payload), msg.payload, got.op, len(got.payload), got.payload, describe(rq, rp)))
			return
		}
		w.t.wsMessage()
	}
	if err := writeWS(c.nc, wsFrame{op: wsClose, payload: []byte{0x03, 0xe8}}, mask()); err != nil {
		w.t.failed(rq, "sending a websocket close", err)
		return
	}
	if got, err := readWS(c.br, false); err != nil || got.op != wsClose {
		w.t.failed(rq, "waiting for the websocket close", fmt.Errorf("op %d: %w", got.op, err))
		return
	}
	io.Copy(io.Discard, c.br) // the backend closes, and the balancer after it
}

// hangupHead writes part of a request's head on a fresh connection, then
// closes or resets it.
func (w *worker) hangupHead() {
	rq := w.getRequest("hangup-head", http.MethodGet)
	w.t.sent(rq.kind)
	nc, err := net.DialTimeout("tcp", w.addr, 3*time.Second)
	if err != nil {
		w.t.failed(rq, "connecting", err)
		return
	}
	nc.Write(rq.head[:1+w.rng.IntN(len(rq.head)-1)])
	w.hangUp(nc)
}

// hangupBody sends a head and part of its body, then hangs up: closes,
// resets, or half-closes and reads what comes back until the balancer
// closes (which it must, soon).
func (w *worker) hangupBody() {
	id := w.newID()
	p := payload{n: pick(w, int64(64<<10), 16<<10, 256<<10, 1<<20), seed: w.rng.Uint64(), smuggle: w.rng.IntN(3) == 0}
	chunked := w.rng.IntN(2) == 0
	path := pick(w, "/upload/", "/echo/", "/reject/") + id
	rq := &request{kind: "hangup-body", id: id, method: http.MethodPost, head: bodyHead(path, id, p, chunked, false),
		body: bodyDesc(p, chunked, false) + ", cut short"}
	w.t.sent(rq.kind)
	nc, err := net.DialTimeout("tcp", w.addr, 3*time.Second)
	if err != nil {
		w.t.failed(rq, "connecting", err)
		return
	}
	nc.SetDeadline(time.Now().Add(w.timeout))
	nc.Write(rq.head)
	writeBody(nc, p, chunked, w.rng.Int64N(p.n))
	if w.rng.IntN(4) == 0 {
		nc.(*net.TCPConn).CloseWrite()
		if _, err := io.Copy(io.Discard, nc); err != nil && errKind(err) == "TIMEOUT" {
			w.t.failed(rq, "waiting for the balancer to close after a half-close mid-body", err)
		}
		nc.Close()
		return
	}
	w.hangUp(nc)
}

// hangupWait sends a GET that the backend answers late, and hangs up
// before the answer.
func (w *worker) hangupWait() {
	id := w.newID()
	head := fmt.Sprintf("GET /get/%s?size=1000&delay=300ms HTTP/1.1\r\nHost: soak\r\n%s: %s\r\n\r\n", id, idHeader, id)
	rq := &request{kind: "hangup-wait", id: id, method: http.MethodGet, head: []byte(head)}
	w.t.sent(rq.kind)
	nc, err := net.DialTimeout("tcp", w.addr, 3*time.Second)
	if err != nil {
		w.t.failed(rq, "connecting", err)
		return
	}
	nc.Write(rq.head)
	time.Sleep(time.Duration(w.rng.IntN(200)) * time.Millisecond)
	w.hangUp(nc)
}

// reset asks for 2 MiB, reads the start of it, and resets the connection.
func (w *worker) reset() {
	id := w.newID()
	head := fmt.Sprintf("GET /get/%s?size=%d HTTP/1.1\r\nHost: soak\r\n%s: %s\r\n\r\n", id, 2<<20, idHeader, id)
	rq := &request{kind: "reset", id: id, method: http.MethodGet, head: []byte(head), status: http.StatusOK}
	w.t.sent(rq.kind)
	nc, err := net.DialTimeout("tcp", w.addr, 3*time.Second)
	if err != nil {
		w.t.failed(rq, "connecting", err)
		return
	}
	c := &conn{nc: nc, tap: &tap{r: nc}}
	c.br = bufio.NewReader(c.tap)
	nc.SetDeadline(time.Now().Add(w.timeout))
	nc.Write(rq.head)
	// The head is checked (it must not be another request's), then part
	// of the body read: all of it when it is a short error.
	if resp, err := http.ReadResponse(c.br, &http.Request{Method: rq.method}); err == nil {
		rp := &reply{status: resp.StatusCode, proto: resp.Proto, header: resp.Header}
		if v, _ := checkHead(rq, rp); v.out == outMismatch {
			w.t.mismatch(rq.kind, v.why+"\n"+describe(rq, rp))
		}
		io.CopyN(io.Discard, resp.Body, 1+w.rng.Int64N(64<<10))
	}
	nc.(*net.TCPConn).SetLinger(0)
	nc.Close()
}

// hangUp ends a connection mid-request: closes it, or (one time in three)
// resets it.
func (w *worker) hangUp(nc net.Conn) {
	if w.rng.IntN(3) == 0 {
		nc.(*net.TCPConn).SetLinger(0)
	}
	nc.Close()
}
