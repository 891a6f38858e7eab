package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The flaky backend's ways of answering. Besides plain answers it sends
// some that a client may get (a 103 first; bytes after the answer, which
// must never reach anyone; a body cut short, which breaks the client's
// answer off) and many the balancer must refuse with a 502 or 504, never
// pass on.
const (
	modePlain      = "plain"
	modeEarlyHints = "103-first"      // a 103 Early Hints, then the answer
	modeTail       = "answer+tail"    // the answer and a whole poison answer after it
	modeShort      = "short-body"     // Content-Length more than the body, then close
	modeReset      = "reset"          // reset as soon as the head is read
	modeStall      = "stall"          // nothing for a while, then close
	modeGarbage    = "garbage"        // bytes that are not HTTP
	modeBadStatus  = "bad-status"     // a four-digit status
	modeCLTE       = "cl+te"          // both Content-Length and Transfer-Encoding
	modeTwoCL      = "two-cl"         // Content-Length twice, equal
	modeTwoCLDiff  = "two-cl-differ"  // Content-Length twice, different
	modeObsFold    = "obs-fold"       // a folded line hiding a Content-Length
	modeBareLF     = "bare-lf"        // lines ending in LF alone
	modeTEGzip     = "te-not-chunked" // Transfer-Encoding: gzip, chunked
	modeSpaceColon = "space-colon"    // "Content-Length : 6"
)

// refusedModes are the answers the balancer must refuse: the client gets a
// 502 or 504 (or, for a request it may retry, another backend's answer).
var refusedModes = []string{modeReset, modeStall, modeGarbage, modeBadStatus, modeCLTE, modeTwoCL,
	modeTwoCLDiff, modeObsFold, modeBareLF, modeTEGzip, modeSpaceColon}

// upgradeModes are the misbehaviours tried on an upgrade request; bytes
// after a 101 belong to the new protocol, so no tail there.
var upgradeModes = []string{modeReset, modeStall, modeGarbage, modeBadStatus, modeCLTE, modeTwoCL}

// flaky is a hand-written backend that misbehaves for a share of requests
// (health checks excepted: it stays in rotation). After an answer whose
// leftover bytes are poison it keeps the connection open and goes on
// reading requests, so a balancer that reused the connection would hand
// the poison to its next client.
type flaky struct {
	name  string
	onBad func(string)
	ex    *explainer    // told of every request answered so that it fails
	bad   float64       // the share of requests answered badly
	stall time.Duration // how long a stall lasts
	// pick, when set, chooses the mode for each request instead of chance
	// (tests).
	pick func(r *http.Request) string
	// closeAfter ends every connection after its first answer (tests: an
	// answer read until the connection closes ends at once).
	closeAfter bool

	poisonSeq atomic.Uint64

	// mu guards ln, conns, rng and modes.
	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	rng   *rand.Rand
	modes map[string]int64 // answers by mode
}

func newFlaky(name string, bad float64, stall time.Duration, seed uint64, onBad func(string), ex *explainer) *flaky {
	return &flaky{name: name, onBad: onBad, ex: ex, bad: bad, stall: stall, conns: map[net.Conn]struct{}{},
		rng: rand.New(rand.NewPCG(seed, 7)), modes: map[string]int64{}}
}

// start listens on addr and serves until close, one goroutine per
// connection.
func (f *flaky) start(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("flaky backend: %w", err)
	}
	f.mu.Lock()
	f.ln = ln
	f.mu.Unlock()
	go func() { // ends when close closes ln
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns[nc] = struct{}{}
			f.mu.Unlock()
			go f.serve(nc)
		}
	}()
	return ln.Addr().String(), nil
}

// close stops the listener and every connection.
func (f *flaky) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ln != nil {
		f.ln.Close()
	}
	for c := range f.conns {
		c.Close()
	}
}

func (f *flaky) counts() map[string]int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.modes)
}

func (f *flaky) choose(r *http.Request) string {
	if f.pick != nil {
		return f.pick(r)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.URL.Path == "/healthz" || f.rng.Float64() >= f.bad {
		return modePlain
	}
	if r.Header.Get("Upgrade") != "" {
		return upgradeModes[f.rng.IntN(len(upgradeModes))]
	}
	all := append([]string{modeEarlyHints, modeTail, modeShort}, refusedModes...)
	return all[f.rng.IntN(len(all))]
}

func (f *flaky) serve(nc net.Conn) {
	defer func() {
		f.mu.Lock()
		delete(f.conns, nc)
		f.mu.Unlock()
		nc.Close()
	}()
	br := bufio.NewReader(nc)
	bw := &answerWriter{nc: nc}
	for {
		nc.SetReadDeadline(time.Now().Add(90 * time.Second))
		r, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		nc.SetReadDeadline(time.Time{})
		if !checkArrival(f.name, r, f.onBad) {
			return
		}
		mode := f.choose(r)
		f.mu.Lock()
		f.modes[mode]++
		f.mu.Unlock()
		if id := r.Header.Get(idHeader); id != "" && (mode == modeShort || slices.Contains(refusedModes, mode)) {
			f.ex.mark(id, "the flaky backend's "+mode)
		}
		if !f.answer(nc, br, bw, r, mode) || f.closeAfter {
			return
		}
	}
}

// answer answers r as mode says, and reports whether the connection may
// carry another request.
func (f *flaky) answer(nc net.Conn, br *bufio.Reader, bw *answerWriter, r *http.Request, mode string) bool {
	id := r.Header.Get(idHeader)
	kind, _ := splitPath(r.URL.Path)
	switch mode {
	case modeReset:
		nc.(*net.TCPConn).SetLinger(0)
		return false
	case modeStall:
		nc.SetReadDeadline(time.Now().Add(f.stall))
		io.Copy(io.Discard, nc) // ends at the deadline, or when the balancer gives up
		return false
	}
	if kind == "ws" && mode == modePlain {
		key := r.Header.Get("Sec-WebSocket-Key")
		bw.WriteString(wsSwitch(key, id, f.name))
		if bw.Flush() == nil {
			wsEcho(nc, br)
		}
		return false
	}
	if kind == "reject" && mode == modePlain {
		// Answered before the body is read, as a backend refusing an upload
		// does; then the rest of the body is read away.
		a, _ := answerFor(r)
		a.header.Set("Connection", "close")
		writeAnswer(bw, r, a, f.name, "")
		bw.Flush()
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, r.Body)
		return false
	}
	var a answer
	if mode == modePlain || mode == modeEarlyHints || mode == modeTail || mode == modeShort {
		if r.Header.Get("Expect") == "100-continue" {
			bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			if bw.Flush() != nil {
				return false
			}
		}
		var err error
		if a, err = answerFor(r); err != nil {
			return false
		}
	}
	// Read what is left of the body, so that the poison after a refused
	// answer lies where the next answer would.
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		return false
	}
	keep := true
	poison := f.poison(mode)
	if a.header != nil {
		a.header.Set(modeHeader, mode)
	}
	switch mode {
	case modePlain:
		writeAnswer(bw, r, a, f.name, "")
	case modeEarlyHints:
		bw.WriteString("HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
		writeAnswer(bw, r, a, f.name, "")
	case modeTail:
		writeAnswer(bw, r, a, f.name, poison)
	case modeShort:
		a.chunked = false
		a.header.Set("Content-Length", strconv.Itoa(len(a.body)+100))
		writeAnswer(bw, r, a, f.name, "")
		keep = false
	case modeGarbage:
		bw.WriteString("\x16\x03\x01 " + poisonText + " garbage " + id + "\r\n\r\n")
		keep = false
	case modeBadStatus:
		f.badHead(bw, "HTTP/1.1 2000 OK\r\n", id, mode, "Content-Length: 6\r\n", poisonText)
		keep = false
	case modeCLTE:
		f.badHead(bw, "", id, mode, "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", "6\r\n"+poisonText+"\r\n0\r\n\r\n"+poison)
	case modeTwoCL:
		f.badHead(bw, "", id, mode, "Content-Length: 6\r\nContent-Length: 6\r\n", poisonText+poison)
	case modeTwoCLDiff:
		f.badHead(bw, "", id, mode, "Content-Length: 0\r\nContent-Length: 6\r\n", poisonText+poison)
	case modeObsFold:
		f.badHead(bw, "", id, mode, "X-Folded: a\r\n Content-Length: 0\r\nContent-Length: 6\r\n", poisonText+poison)
	case modeBareLF:
		bw.WriteString("HTTP/1.1 200 OK\n" + idHeader + ": " + id + "\n" + badHeader + ": " + mode +
			"\nContent-Length: 6\n\n" + poisonText + poison)
	case modeTEGzip:
		f.badHead(bw, "", id, mode, "Transfer-Encoding: gzip, chunked\r\n", "6\r\n"+poisonText+"\r\n0\r\n\r\n"+poison)
	case modeSpaceColon:
		f.badHead(bw, "", id, mode, "Content-Length : 6\r\n", poisonText+poison)
	}
	if bw.Flush() != nil {
		return false
	}
	return keep && !r.Close && kind != "ws"
}

// poison returns a whole answer for a request nobody made, for the modes
// that leave bytes after their answer.
func (f *flaky) poison(mode string) string {
	return fmt.Sprintf("HTTP/1.1 200 OK\r\n%s: poison-%d\r\n%s: %s leftover\r\nContent-Length: 6\r\n\r\n%s",
		idHeader, f.poisonSeq.Add(1), badHeader, mode, poisonText)
}

// badHead writes a head marked bad for mode, with framing fields and rest.
func (f *flaky) badHead(bw *answerWriter, status, id, mode, framing, rest string) {
	if status == "" {
		status = "HTTP/1.1 200 OK\r\n"
	}
	bw.WriteString(status + idHeader + ": " + id + "\r\n" + badHeader + ": " + mode + "\r\n" + framing + "\r\n" + rest)
}

// writeAnswer writes a, framed as HTTP/1.1 for r, then tail.
func writeAnswer(bw *answerWriter, r *http.Request, a answer, name, tail string) {
	fmt.Fprintf(bw, "HTTP/1.1 %d %s\r\n", a.status, http.StatusText(a.status))
	a.header.Set(backendHeader, name)
	if a.header.Get("Content-Length") == "" && !a.chunked {
		a.header.Set("Content-Length", strconv.Itoa(len(a.body)))
	}
	if a.chunked {
		a.header.Set("Transfer-Encoding", "chunked")
	}
	for _, k := range slices.Sorted(maps.Keys(a.header)) {
		for _, v := range a.header[k] {
			bw.WriteString(k + ": " + v + "\r\n")
		}
	}
	bw.WriteString("\r\n")
	if r.Method != http.MethodHead {
		if a.chunked {
			if len(a.body) > 0 {
				fmt.Fprintf(bw, "%x\r\n", len(a.body))
				bw.Write(a.body)
				bw.WriteString("\r\n")
			}
			bw.WriteString("0\r\n\r\n")
		} else {
			bw.Write(a.body)
		}
	}
	bw.WriteString(tail)
}

// answerWriter collects what the flaky backend sends and writes it with
// one write on Flush. Bytes sent after an answer then come with it, as
// one segment, so the balancer finds them, in its buffer or by its peek
// before it reuses the connection. Sent in a write of their own, they
// could arrive after the balancer had checked the connection and sent the
// next request on it: then they are indistinguishable from that request's
// answer, to any proxy.
type answerWriter struct {
	bytes.Buffer
	nc net.Conn
}

func (w *answerWriter) Flush() error {
	_, err := w.nc.Write(w.Bytes())
	w.Reset()
	return err
}
