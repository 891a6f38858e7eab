package h1

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The adversarial suite for the front side: a client sends a request
// whose head or body is not plain, often with a second request hidden
// behind it. The server must refuse what is not plain (with the status
// nginx and RFC 9112 give it) and close the connection after the answer,
// and the hidden request must never reach a handler. The shapes come from
// RFC 9112 (sections 2.2, 3, 5, 6.1-6.3, 7.1) and the public request
// smuggling literature (CL.TE, TE.CL, TE.TE obfuscations, obs-fold,
// chunk-extension and line-ending tricks).

// smuggle is the request a client tries to hide.
const smuggle = "GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"

type frontShape struct {
	name   string
	raw    string // what the client sends, ending with what it hides
	status int    // the answer to the first request
}

func refusals() []frontShape {
	post := "POST /p HTTP/1.1\r\nHost: h\r\n"
	chunked := post + "Transfer-Encoding: chunked\r\n\r\n"
	return []frontShape{
		// Content-Length and Transfer-Encoding: the classic CL.TE and TE.CL.
		{"Content-Length and Transfer-Encoding", post + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggle, 400},
		{"Transfer-Encoding and Content-Length", post + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\n" + smuggle + "\r\n0\r\n\r\n", 400},
		{"Transfer-Encoding and Content-Length: 0", post + "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n" + smuggle, 400},
		// Content-Length that is not one plain number.
		{"Content-Length twice, equal", post + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello" + smuggle, 400},
		{"Content-Length twice, different", post + "Content-Length: 5\r\nContent-Length: 0\r\n\r\nhello" + smuggle, 400},
		{"Content-Length list", post + "Content-Length: 5, 5\r\n\r\nhello" + smuggle, 400},
		{"Content-Length with a sign", post + "Content-Length: +5\r\n\r\nhello" + smuggle, 400},
		{"Content-Length negative", post + "Content-Length: -1\r\n\r\n" + smuggle, 400},
		{"Content-Length with an inner space", post + "Content-Length: 5 0\r\n\r\nhello" + smuggle, 400},
		{"Content-Length in hex", post + "Content-Length: 0x5\r\n\r\nhello" + smuggle, 400},
		{"Content-Length of 19 digits", post + "Content-Length: 1000000000000000000\r\n\r\n" + smuggle, 400},
		{"Content-Length empty", post + "Content-Length:\r\n\r\n" + smuggle, 400},
		// Transfer-Encoding other than chunked alone (TE.TE obfuscations).
		{"Transfer-Encoding gzip, chunked", post + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + smuggle, 501},
		{"Transfer-Encoding chunked, identity", post + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + smuggle, 400},
		{"Transfer-Encoding identity", post + "Transfer-Encoding: identity\r\n\r\n" + smuggle, 400},
		{"Transfer-Encoding xchunked", post + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + smuggle, 400},
		{"Transfer-Encoding twice", post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n" + smuggle, 400},
		{"Transfer-Encoding with a trailing comma", post + "Transfer-Encoding: chunked,\r\n\r\n0\r\n\r\n" + smuggle, 400},
		{"Transfer-Encoding quoted", post + "Transfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n" + smuggle, 400},
		{"Transfer-Encoding in HTTP/1.0", "POST /p HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggle, 400},
		{"Transfer-Encoding folded onto its line", post + "Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + smuggle, 400},
		{"Content-Length hidden in a folded line", post + "X-A: b\r\n Content-Length: 35\r\n\r\n" + smuggle, 400},
		{"space before the colon", post + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + smuggle, 400},
		{"tab before the colon", post + "Content-Length\t: 5\r\n\r\nhello" + smuggle, 400},
		// Line ends and bytes a head may not have.
		{"bare LF line ends", "POST /p HTTP/1.1\nHost: h\nContent-Length: 5\n\nhello" + smuggle, 400},
		{"bare LF after the request line", "POST /p HTTP/1.1\nHost: h\r\nContent-Length: 5\r\n\r\nhello" + smuggle, 400},
		{"bare CR in a value", post + "X-A: a\rContent-Length: 5\r\n\r\nhello" + smuggle, 400},
		{"NUL in a value", post + "X-A: a\x00b\r\nContent-Length: 5\r\n\r\nhello" + smuggle, 400},
		{"a control byte in a value", post + "X-A: a\x01b\r\n\r\n" + smuggle, 400},
		{"DEL in a value", post + "X-A: a\x7fb\r\n\r\n" + smuggle, 400},
		{"a name that is not a token", post + "X(A): b\r\n\r\n" + smuggle, 400},
		{"an empty name", post + ": b\r\n\r\n" + smuggle, 400},
		// Request lines.
		{"an HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + smuggle, 400},
		{"HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: h\r\n\r\n" + smuggle, 505},
		{"HTTP/1.2 request line", "GET / HTTP/1.2\r\nHost: h\r\n\r\n" + smuggle, 505},
		{"HTTP/0.9 request line", "GET /\r\n\r\n" + smuggle, 400},
		{"lower-case version", "GET / http/1.1\r\nHost: h\r\n\r\n" + smuggle, 400},
		{"two spaces after the method", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n" + smuggle, 400},
		{"a space before the method", " GET / HTTP/1.1\r\nHost: h\r\n\r\n" + smuggle, 400},
		{"a tab for a space", "GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n" + smuggle, 400},
		{"a fragment in the target", "GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n" + smuggle, 400},
		{"a bad escape in the target", "GET /%zz HTTP/1.1\r\nHost: h\r\n\r\n" + smuggle, 400},
		{"absolute-form with another scheme", "GET ftp://h/x HTTP/1.1\r\nHost: h\r\n\r\n" + smuggle, 400},
		{"CONNECT", "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n" + smuggle, 501},
		// Host.
		{"no Host", "GET / HTTP/1.1\r\n\r\n" + smuggle, 400},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" + smuggle, 400},
		{"an empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n" + smuggle, 400},
		{"a Host with a path", "GET / HTTP/1.1\r\nHost: h/x\r\n\r\n" + smuggle, 400},
		{"a Host with a bad port", "GET / HTTP/1.1\r\nHost: h:8o\r\n\r\n" + smuggle, 400},
		// Expectations and limits.
		{"Expect other than 100-continue", post + "Expect: 200-ok\r\nContent-Length: 5\r\n\r\nhello" + smuggle, 417},
		{"more than 100 fields", "GET / HTTP/1.1\r\nHost: h\r\n" + strings.Repeat("X-A: b\r\n", 101) + "\r\n" + smuggle, 431},
		{"a head over the limit", "GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("b", 1<<20+8192) + "\r\n\r\n" + smuggle, 431},
		{"a request line over the limit", "GET /" + strings.Repeat("a", 1<<20+8192) + " HTTP/1.1\r\nHost: h\r\n\r\n" + smuggle, 414},
		// Chunked bodies whose framing breaks: the handler sees an error and
		// answers 400, and the rest of the connection is never read.
		{"chunk size not hex", chunked + "zz\r\n" + smuggle, 400},
		{"chunk size with trailing space", chunked + "5 \r\nhello\r\n0\r\n\r\n" + smuggle, 400},
		{"chunk size with a bare LF", chunked + "5\nhello\r\n0\r\n\r\n" + smuggle, 400},
		{"chunk data without its CRLF", chunked + "5\r\nhelloXX0\r\n\r\n" + smuggle, 400},
		{"chunk data longer than its size", chunked + "2\r\nhello\r\n0\r\n\r\n" + smuggle, 400},
		{"chunk extension with a control byte", chunked + "5;a=\x01\r\nhello\r\n0\r\n\r\n" + smuggle, 400},
		{"chunk extension with a bare LF inside", chunked + "5;a\nb\r\nhello\r\n0\r\n\r\n" + smuggle, 400},
		{"chunk size of 17 digits", chunked + "00000000000000005\r\nhello\r\n0\r\n\r\n" + smuggle, 400},
		{"chunk size too large", chunked + "fffffffffffffffff\r\n" + smuggle, 400},
		{"a last chunk with a bare LF", chunked + "0\n\r\n" + smuggle, 400},
		{"a folded trailer", chunked + "0\r\nX-A: b\r\n c\r\n\r\n" + smuggle, 400},
		{"a trailer with a bare LF", chunked + "0\r\nX-A: b\n\r\n" + smuggle, 400},
	}
}

// recorder is a handler that reads each request's body, answers 400 when
// the body breaks (as the balancer does), and records every path.
type recorder struct {
	mu    sync.Mutex
	paths []string
	body  map[string]string
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.paths = append(rc.paths, r.URL.Path)
	if rc.body == nil {
		rc.body = map[string]string{}
	}
	rc.body[r.URL.Path] = string(b)
	rc.mu.Unlock()
	if err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":"bad request body"}`)
		return
	}
	msg := "ok " + r.URL.Path
	w.Header().Set("Content-Length", strconv.Itoa(len(msg))) // an HTTP/1.0 client may keep the connection
	io.WriteString(w, msg)
}

func (rc *recorder) saw(path string) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, p := range rc.paths {
		if p == path {
			return true
		}
	}
	return false
}

// frontModes are the ways the suite reaches the server: plain TCP, and
// TLS that negotiates HTTP/1.1 (served by the same loop).
var frontModes = []string{"tcp", "tls"}

// startFront serves h on a loopback port, over TLS when mode is "tls", and
// returns a dial function for it.
func startFront(t *testing.T, mode string, h http.Handler) func() net.Conn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	s := NewServer(&http.Server{Handler: h})
	var tcfg *tls.Config
	if mode == "tls" {
		tcfg = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, NextProtos: []string{"http/1.1"}}
		ln = tls.NewListener(ln, tcfg)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != http.ErrServerClosed {
			t.Errorf("Serve returned %v", err)
		}
	})
	return func() net.Conn {
		var c net.Conn
		var err error
		if mode == "tls" {
			c, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		} else {
			c, err = net.Dial("tcp", addr)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return c
	}
}

// selfSigned returns a certificate for 127.0.0.1 made in the test.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestServer_RefusesWhatIsNotPlainAndReadsNothingAfter(t *testing.T) {
	shapes := refusals()
	if len(shapes) < 30 {
		t.Fatalf("only %d front-side shapes", len(shapes))
	}
	for _, mode := range frontModes {
		for _, sh := range shapes {
			t.Run(mode+"/"+sh.name, func(t *testing.T) {
				t.Parallel()
				rc := &recorder{}
				dial := startFront(t, mode, rc)
				conn := dial()
				go io.WriteString(conn, sh.raw) // the server may stop reading before all of it
				br := bufio.NewReader(conn)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("no answer: %v", err)
				}
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != sh.status {
					t.Fatalf("answered %d %q, want %d", resp.StatusCode, body, sh.status)
				}
				var e struct{ Error string }
				if json.Unmarshal(body, &e) != nil || e.Error == "" {
					t.Fatalf("the %d is not a JSON error: %q", resp.StatusCode, body)
				}
				if !resp.Close {
					t.Fatalf("the %d does not say Connection: close", resp.StatusCode)
				}
				if rest, _ := io.ReadAll(br); len(rest) != 0 {
					t.Fatalf("after the %d the connection carried %q", resp.StatusCode, rest)
				}
				if rc.saw("/smuggled") {
					t.Fatal("the hidden request reached the handler")
				}
			})
		}
	}
}

// TestServer_TakesWhatIsPlainThoughOdd: what RFC 9112 allows stays allowed,
// and the next request on the connection is read where this one ends.
func TestServer_TakesWhatIsPlainThoughOdd(t *testing.T) {
	post := "POST /p HTTP/1.1\r\nHost: h\r\n"
	body := "GET /inside HTTP/1.1\r\nHost: h\r\n\r\n" // a body that looks like a request is a body
	chunk := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body)
	next := "GET /next HTTP/1.1\r\nHost: h\r\n\r\n"
	for _, mode := range frontModes {
		for _, tc := range []struct{ name, raw, path, body string }{
			{"Content-Length with whitespace around it", post + "Content-Length:  33 \r\n\r\n" + body, "/p", body},
			{"chunked with whitespace around it", post + "Transfer-Encoding:  chunked \t\r\n\r\n" + chunk, "/p", body},
			{"chunked in capitals", post + "Transfer-Encoding: CHUNKED\r\n\r\n" + chunk, "/p", body},
			{"chunk extensions", post + "Transfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x;a=b;c=\"d;e\"\r\n%s\r\n0;x\r\n\r\n", len(body), body), "/p", body},
			{"a trailer", post + "Transfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x\r\n%s\r\n0\r\nX-Sum: 1\r\n\r\n", len(body), body), "/p", body},
			{"an empty line before the request", "\r\n" + post + "Content-Length: 33\r\n\r\n" + body, "/p", body},
			{"absolute-form target", "POST http://h/p HTTP/1.1\r\nHost: other\r\nContent-Length: 33\r\n\r\n" + body, "/p", body},
			{"HTTP/1.0 keep-alive", "POST /p HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 33\r\n\r\n" + body, "/p", body},
			{"Expect: 100-continue", post + "Expect: 100-continue\r\nContent-Length: 33\r\n\r\n" + body, "/p", body},
			{"obs-text in a value", "GET /p HTTP/1.1\r\nHost: h\r\nX-Name: caf\xc3\xa9\r\n\r\n", "/p", ""},
			{"raw UTF-8 in the target", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", "/caf\xc3\xa9", ""},
			{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", "*", ""},
		} {
			t.Run(mode+"/"+tc.name, func(t *testing.T) {
				rc := &recorder{}
				dial := startFront(t, mode, rc)
				conn := dial()
				io.WriteString(conn, tc.raw+next)
				br := bufio.NewReader(conn)
				for _, want := range []string{tc.path, "/next"} {
					resp, err := http.ReadResponse(br, nil)
					for err == nil && resp.StatusCode == http.StatusContinue {
						resp, err = http.ReadResponse(br, nil)
					}
					if err != nil {
						t.Fatalf("%s: %v", want, err)
					}
					got, _ := io.ReadAll(resp.Body)
					if resp.StatusCode != 200 || string(got) != "ok "+want {
						t.Fatalf("%s: %d %q", want, resp.StatusCode, got)
					}
				}
				rc.mu.Lock()
				defer rc.mu.Unlock()
				if rc.body[tc.path] != tc.body || len(rc.paths) != 2 {
					t.Fatalf("handler saw %v with body %q; want %s with %q, then /next", rc.paths, rc.body[tc.path], tc.path, tc.body)
				}
			})
		}
	}
}
