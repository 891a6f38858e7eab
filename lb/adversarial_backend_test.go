package lb

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// The adversarial suite for the back side: a scripted backend answers one
// request (A) with a malformed, ambiguous or poisoned answer, and the
// requests after it (B and C, each on a client connection of its own)
// must each get their own answer, or an error the balancer made: never
// another request's, and never the bytes A's answer left behind. The
// shapes come from RFC 9112 (sections 2.2, 5, 6.1-6.3, 7.1) and the
// public request-smuggling and response-splitting literature.

// forged is an answer a malicious or broken backend leaves behind, meant
// for whichever request the connection carries next.
const forged = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nFORGED"

// ok is a plain answer with body.
func ok(body string) string {
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

// How request A must end.
const (
	wantOwn     = "own"     // 200 with its own id: the answer was taken, what followed it dropped
	wantRefused = "refused" // 502: the balancer refused the answer
	wantAborted = "aborted" // the answer began, then broke off: the client sees an error
)

type backShape struct {
	name   string
	method string // A's method, when the shape needs one (HEAD)
	answer string // A's answer; "{id}" becomes A's id
	want   string // wantOwn, wantRefused, wantAborted, or a status code ("204")
	late   string // written when A's answer has been taken, while the connection sits idle
	close  bool   // the backend closes the connection after answer
}

var backShapes = []backShape{
	// More than the answer: what follows must never reach anyone.
	{name: "two final answers in one write", answer: ok("{id}") + forged, want: wantOwn},
	{name: "bytes after a chunked body", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{id}\r\n0\r\n\r\n" + forged, want: wantOwn},
	{name: "bytes after a chunked body's trailer", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{id}\r\n0\r\nX-Sum: 1\r\n\r\n" + forged, want: wantOwn},
	{name: "204 with a body", answer: "HTTP/1.1 204 No Content\r\nContent-Length: 40\r\n\r\n" + forged, want: "204"},
	{name: "204 with a chunked body", answer: "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n" + forged, want: "204"},
	{name: "304 with a body", answer: "HTTP/1.1 304 Not Modified\r\nContent-Length: 40\r\n\r\n" + forged, want: "304"},
	{name: "HEAD answered with a body", method: "HEAD", answer: ok("{id}") + forged, want: "200"},
	{name: "HTTP/1.0 keep-alive, then bytes", answer: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 4\r\n\r\n{id}" + forged, want: wantOwn},
	{name: "Connection: close, then bytes", answer: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 4\r\n\r\n{id}" + forged, want: wantOwn},
	{name: "an answer arriving on the idle connection", answer: ok("{id}"), late: forged, want: wantOwn},
	{name: "half an answer arriving on the idle connection", answer: ok("{id}"), late: "HTTP/1.1 200 OK\r\nContent-Len", want: wantOwn},
	{name: "a stray CRLF on the idle connection", answer: ok("{id}"), late: "\r\n", want: wantOwn},
	{name: "an interim answer with a body", answer: "HTTP/1.1 100 Continue\r\nContent-Length: 6\r\n\r\nFORGED" + ok("{id}"), want: wantRefused},

	// Ambiguous framing: refused, and the connection closed.
	{name: "Content-Length and Transfer-Encoding", answer: "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{id}\r\n0\r\n\r\n" + forged, want: wantRefused},
	{name: "Transfer-Encoding and Content-Length", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 33\r\n\r\n4\r\n{id}\r\n0\r\n\r\n" + forged, want: wantRefused},
	{name: "Content-Length twice, equal", answer: "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n{id}" + forged, want: wantRefused},
	{name: "Content-Length twice, different", answer: "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 44\r\n\r\n{id}" + forged, want: wantRefused},
	{name: "Content-Length list", answer: "HTTP/1.1 200 OK\r\nContent-Length: 4, 4\r\n\r\n{id}" + forged, want: wantRefused},
	{name: "Content-Length with a sign", answer: "HTTP/1.1 200 OK\r\nContent-Length: +4\r\n\r\n{id}" + forged, want: wantRefused},
	{name: "Content-Length in hex", answer: "HTTP/1.1 200 OK\r\nContent-Length: 0x4\r\n\r\n{id}" + forged, want: wantRefused},
	{name: "Content-Length with junk", answer: "HTTP/1.1 200 OK\r\nContent-Length: 4abc\r\n\r\n{id}" + forged, want: wantRefused},
	{name: "Content-Length too large", answer: "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n{id}", want: wantRefused},
	{name: "Content-Length empty", answer: "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n{id}" + forged, want: wantRefused},
	{name: "Transfer-Encoding gzip, chunked", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n4\r\n{id}\r\n0\r\n\r\n", want: wantRefused},
	{name: "Transfer-Encoding chunked, chunked", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n4\r\n{id}\r\n0\r\n\r\n", want: wantRefused},
	{name: "Transfer-Encoding identity", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n{id}" + forged, want: wantRefused},
	{name: "Transfer-Encoding twice", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{id}\r\n0\r\n\r\n", want: wantRefused},
	{name: "Transfer-Encoding xchunked", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n{id}" + forged, want: wantRefused},
	{name: "chunked in HTTP/1.0", answer: "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{id}\r\n0\r\n\r\n", want: wantRefused},
	{name: "Transfer-Encoding folded onto its line", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 4\r\n\r\n{id}" + forged, want: wantRefused},
	{name: "Content-Length hidden in a folded line", answer: "HTTP/1.1 200 OK\r\nX-A: b\r\n Content-Length: 40\r\nContent-Length: 4\r\n\r\n{id}" + forged, want: wantRefused},
	{name: "space before the colon", answer: "HTTP/1.1 200 OK\r\nContent-Length : 44\r\nContent-Length: 4\r\n\r\n{id}" + forged, want: wantRefused},
	{name: "tab before the colon", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding\t: chunked\r\nContent-Length: 4\r\n\r\n{id}" + forged, want: wantRefused},
	{name: "bare LF line ends", answer: "HTTP/1.1 200 OK\nContent-Length: 4\n\n{id}" + forged, want: wantRefused},
	{name: "bare LF on one line", answer: "HTTP/1.1 200 OK\r\nContent-Length: 44\nX-A: b\r\nContent-Length: 4\r\n\r\n{id}" + forged, want: wantRefused},
	{name: "bare CR in a line", answer: "HTTP/1.1 200 OK\r\nX-A: b\rContent-Length: 44\r\nContent-Length: 4\r\n\r\n{id}" + forged, want: wantRefused},
	{name: "NUL in a value", answer: "HTTP/1.1 200 OK\r\nX-A: b\x00c\r\nContent-Length: 4\r\n\r\n{id}", want: wantRefused},
	{name: "a line without a colon", answer: "HTTP/1.1 200 OK\r\nContent-Length 4\r\n\r\n{id}" + forged, want: wantRefused},
	{name: "a name that is not a token", answer: "HTTP/1.1 200 OK\r\nX(A): b\r\nContent-Length: 4\r\n\r\n{id}", want: wantRefused},
	{name: "an empty name", answer: "HTTP/1.1 200 OK\r\n: b\r\nContent-Length: 4\r\n\r\n{id}", want: wantRefused},
	{name: "status line without the space", answer: "HTTP/1.1 200OK\r\nContent-Length: 4\r\n\r\n{id}", want: wantRefused},
	{name: "HTTP/2 status line", answer: "HTTP/2 200 OK\r\nContent-Length: 4\r\n\r\n{id}", want: wantRefused},
	{name: "HTTP/1.2 status line", answer: "HTTP/1.2 200 OK\r\nContent-Length: 4\r\n\r\n{id}", want: wantRefused},
	{name: "two-digit status", answer: "HTTP/1.1 20 OK\r\nContent-Length: 4\r\n\r\n{id}", want: wantRefused},
	{name: "not HTTP at all", answer: "SSH-2.0-OpenSSH_9.2\r\n\r\n" + forged, want: wantRefused},
	{name: "an empty line before the status line", answer: "\r\n" + ok("{id}") + forged, want: wantRefused},
	{name: "an unasked switch of protocols", answer: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n" + forged, want: wantRefused},
	{name: "six interim answers", answer: strings.Repeat("HTTP/1.1 103 Early Hints\r\n\r\n", 6) + ok("{id}"), want: wantRefused},
	{name: "an interim answer in HTTP/1.0", answer: "HTTP/1.0 103 Early Hints\r\n\r\n" + ok("{id}"), want: wantRefused},
	{name: "a head over 64 KiB", answer: "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", 70<<10) + "\r\nContent-Length: 4\r\n\r\n{id}", want: wantRefused},

	// A body whose framing breaks: the answer is cut off, the connection closed.
	{name: "chunk size not hex", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{id}\r\n0\r\n\r\n" + forged, want: wantAborted},
	{name: "chunk size with trailing space", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4 \r\n{id}\r\n0\r\n\r\n" + forged, want: wantAborted},
	{name: "chunk size with a bare LF", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\n{id}\r\n0\r\n\r\n" + forged, want: wantAborted},
	{name: "chunk data without its CRLF", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{id}XX0\r\n\r\n" + forged, want: wantAborted},
	{name: "chunk data longer than its size", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{id}\r\n0\r\n\r\n" + forged, want: wantAborted},
	{name: "chunk extension with a control byte", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;a=\x01\r\n{id}\r\n0\r\n\r\n" + forged, want: wantAborted},
	{name: "chunk size of 17 digits", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000004\r\n{id}\r\n0\r\n\r\n", want: wantAborted},
	{name: "a folded trailer", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{id}\r\n0\r\nX-A: b\r\n c\r\n\r\n" + forged, want: wantAborted},
	{name: "a last chunk with a bare LF", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{id}\r\n0\n\r\n" + forged, want: wantAborted},
	{name: "a body shorter than its length", answer: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{id}", close: true, want: wantAborted},
}

// scriptedBackend answers every request with its X-Req-Id, as a plain
// answer, except request A, which gets the shape's answer.
type scriptedBackend struct {
	t     *testing.T
	addr  string
	shape backShape
	// lateGo is closed by the test when A's client has its answer: the
	// late bytes may go. lateSent is closed when they are in the
	// balancer's receive buffer.
	lateGo, lateSent chan struct{}
	mu               sync.Mutex
	seen             []string // ids and paths of the requests received
}

func startScriptedBackend(t *testing.T, shape backShape) *scriptedBackend {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sb := &scriptedBackend{t: t, addr: ln.Addr().String(), shape: shape,
		lateGo: make(chan struct{}), lateSent: make(chan struct{})}
	var wg sync.WaitGroup
	var connsMu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			connsMu.Lock()
			conns = append(conns, c)
			connsMu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); sb.serve(c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		connsMu.Lock()
		for _, c := range conns {
			c.Close()
		}
		connsMu.Unlock()
		wg.Wait()
	})
	return sb
}

func (sb *scriptedBackend) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		id := req.Header.Get("X-Req-Id")
		sb.mu.Lock()
		sb.seen = append(sb.seen, id+" "+req.URL.Path)
		sb.mu.Unlock()
		if req.URL.Path == "/healthz" {
			io.WriteString(c, ok("healthy"))
			continue
		}
		if id != "reqA" {
			io.WriteString(c, ok(id))
			continue
		}
		io.WriteString(c, strings.ReplaceAll(sb.shape.answer, "{id}", id))
		if sb.shape.close {
			return
		}
		if sb.shape.late != "" {
			select {
			case <-sb.lateGo:
			case <-time.After(10 * time.Second):
				return
			}
			io.WriteString(c, sb.shape.late)
			waitAcked(c)
			close(sb.lateSent)
		}
	}
}

// waitAcked waits until the peer has acknowledged every byte written on c
// (the socket's send queue is empty), so that they are in the peer's
// receive buffer: a test can then rely on the peer being able to see them.
func waitAcked(c net.Conn) {
	sc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		var unacked int32
		sc.Control(func(fd uintptr) {
			const siocoutq = 0x5411 // TIOCOUTQ: bytes not yet acknowledged
			syscall.Syscall(syscall.SYS_IOCTL, fd, siocoutq, uintptr(unsafe.Pointer(&unacked)))
		})
		if unacked == 0 {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// reqResult is what a client got for one request.
type reqResult struct {
	status int
	body   string
	err    error // the request failed, or its body broke off
}

// doReq sends one request on a client connection of its own.
func doReq(f *front, method, id string, withBody bool) reqResult {
	var body io.Reader
	if withBody {
		body = strings.NewReader("payload of " + id)
	}
	// A balancer that waits forever for an answer that never comes is a
	// failure too: a deadline turns it into one.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, f.URL+"/item/"+id, body)
	req.Header.Set("X-Req-Id", id)
	req.Close = true // a client connection of its own, not a kept one
	resp, err := f.Client().Do(req)
	if err != nil {
		return reqResult{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reqResult{status: resp.StatusCode, body: string(b), err: err}
}

// ownOrBalancerError fails unless r is id's own answer, or an error the
// balancer made (a JSON 5xx).
func ownOrBalancerError(t *testing.T, id string, r reqResult) {
	t.Helper()
	switch {
	case r.err != nil:
		t.Fatalf("%s: %v", id, r.err)
	case r.status == 200 && r.body == id:
	case r.status >= 500 && isJSONError(r.body):
	default:
		t.Fatalf("%s got %d %q: another request's answer, or bytes left behind", id, r.status, r.body)
	}
}

func isJSONError(body string) bool {
	var e struct{ Error string }
	return json.Unmarshal([]byte(body), &e) == nil && e.Error != ""
}

func TestBalancer_NeverGivesAClientAnotherRequestsAnswer(t *testing.T) {
	if len(backShapes) < 30 {
		t.Fatalf("only %d back-side shapes", len(backShapes))
	}
	for _, fp := range frontPaths[:2] { // HTTP/1.1, plain and over TLS
		for _, withBody := range []bool{false, true} {
			clientPath := "GET"
			if withBody {
				clientPath = "POST"
			}
			for _, shape := range backShapes {
				t.Run(fp.name+"/"+clientPath+"/"+shape.name, func(t *testing.T) {
					t.Parallel()
					sb := startScriptedBackend(t, shape)
					cfg := testConfig(t, "http://"+sb.addr)
					cfg.HealthCheck.Interval = time.Hour // no probes in the middle of the script
					logs := &logBuffer{}
					f := fp.start(t, newBalancer(t, cfg, logs))

					method := clientPath
					if shape.method != "" {
						method = shape.method
					}
					a := doReq(f, method, "reqA", withBody && method != "HEAD")
					checkA(t, shape, a, logs)
					if shape.late != "" {
						close(sb.lateGo)
						select {
						case <-sb.lateSent:
						case <-time.After(10 * time.Second):
							t.Fatal("the late bytes were not sent")
						}
					}
					for _, id := range []string{"reqB", "reqC"} {
						ownOrBalancerError(t, id, doReq(f, clientPath, id, withBody))
					}
				})
			}
		}
	}
}

// checkA checks how request A ended.
func checkA(t *testing.T, shape backShape, a reqResult, logs *logBuffer) {
	t.Helper()
	switch shape.want {
	case wantOwn:
		if a.err != nil || a.status != 200 || a.body != "reqA" {
			t.Fatalf("A: %d %q %v, want its own answer", a.status, a.body, a.err)
		}
	case wantRefused:
		if a.err != nil || a.status != http.StatusBadGateway || !isJSONError(a.body) {
			t.Fatalf("A: %d %q %v, want a 502 from the balancer", a.status, a.body, a.err)
		}
		if logs.count("sent an invalid response") == 0 {
			t.Fatalf("the 502 is not explained in the log:\n%s", logs)
		}
	case wantAborted:
		if a.err == nil {
			t.Fatalf("A: %d %q, want the answer broken off", a.status, a.body)
		}
	default:
		if a.err != nil || fmt.Sprint(a.status) != shape.want || a.body != "" {
			t.Fatalf("A: %d %q %v, want %s and no body", a.status, a.body, a.err, shape.want)
		}
	}
}

// TestBalancer_LogsWhatABackendSentUnasked: a connection dropped for bytes
// nobody asked for is logged, once per backend within the throttle, saying
// what came: bytes after an answer, or on an idle connection.
func TestBalancer_LogsWhatABackendSentUnasked(t *testing.T) {
	after := startScriptedBackend(t, backShape{answer: ok("{id}") + forged})
	idle := startScriptedBackend(t, backShape{answer: ok("{id}"), late: forged})
	cfg := testConfig(t, "http://"+after.addr, "http://"+idle.addr)
	cfg.HealthCheck.Interval = time.Hour
	logs := &logBuffer{}
	b := newBalancer(t, cfg, logs)
	f := startBalancer(t, b)
	// Round robin: A to the first backend, then A to the second.
	for _, id := range []string{"reqA", "reqA"} {
		if r := doReq(f, "GET", id, false); r.status != 200 || r.body != id {
			t.Fatalf("%s: %d %q %v", id, r.status, r.body, r.err)
		}
	}
	close(idle.lateGo)
	receive(t, idle.lateSent, "the late bytes to be sent")
	for _, id := range []string{"reqB", "reqC", "reqD", "reqE"} {
		ownOrBalancerError(t, id, doReq(f, "GET", id, false))
	}
	if n := logs.count("backend "+b.Status()[0].Name, "bytes after the end of an answer"); n != 1 {
		t.Errorf("%d lines about the bytes after an answer, want 1:\n%s", n, logs)
	}
	if n := logs.count("backend "+b.Status()[1].Name, "on an idle connection, unasked", `HTTP/1.1 200 OK`); n != 1 {
		t.Errorf("%d lines about the answer on an idle connection, want 1:\n%s", n, logs)
	}
}
