package h1

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Review finding 1: readHead takes the last piece of a line longer than
// the 4096-byte read buffer, when that piece is exactly "\r\n", for the
// empty line that ends the head; when the piece is "\n" it refuses a bare
// LF. A field line of 4096 bytes (or 8192, ...) therefore cuts the head
// short, and the field lines after it are read as the body or as a request
// of their own: a parser that follows RFC 9112 (a CDN or proxy in front, a
// backend behind) sees one message where h1 sees another. A line of 4095
// (or 8191, ...) bytes is refused as a bare LF.

// padLine returns a field line "name: vvv" of exactly n bytes before its CRLF.
func padLine(name string, n int) string {
	return name + ": " + strings.Repeat("v", n-len(name)-2) + "\r\n"
}

var longLineLengths = []int{4095, 4096, 8191, 8192}

// TestServer_LongFieldLineDoesNotEndTheHead: a request with a 4096-byte
// field line, as a proxy in front would forward it. By RFC 9112 it is one
// POST whose field Yy happens to read "GET /smuggled HTTP/1.0", with the
// 4-byte body "\r\n\r\n". h1 must see that, and nothing else.
func TestServer_LongFieldLineDoesNotEndTheHead(t *testing.T) {
	for _, mode := range frontModes {
		for _, n := range longLineLengths {
			t.Run(mode+"/"+strconv.Itoa(n), func(t *testing.T) {
				rc := &recorder{}
				dial := startFront(t, mode, rc)
				conn := dial()
				raw := "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n" + padLine("X-Pad", n) +
					"Yy: GET /smuggled HTTP/1.0\r\n\r\n" + "\r\n\r\n" + "GET /next HTTP/1.1\r\nHost: h\r\n\r\n"
				io.WriteString(conn, raw)
				br := bufio.NewReader(conn)
				for _, want := range []string{"ok /p", "ok /next"} {
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						t.Fatalf("no answer where %q was due: %v", want, err)
					}
					got, _ := io.ReadAll(resp.Body)
					if resp.StatusCode != 200 || string(got) != want {
						t.Fatalf("answered %d %q where %q was due", resp.StatusCode, got, want)
					}
				}
				rc.mu.Lock()
				defer rc.mu.Unlock()
				if len(rc.paths) != 2 || rc.body["/p"] != "\r\n\r\n" {
					t.Fatalf("handler saw %q with body %q; want /p with body \"\\r\\n\\r\\n\", then /next", rc.paths, rc.body["/p"])
				}
			})
		}
	}
}

// TestParseResponse_LongFieldLineAsNetHTTPDoes: an answer with a long
// field line (a Content-Security-Policy or Set-Cookie of 4 KiB is not
// rare, and a reflected value lets a client choose the length) is read as
// http.ReadResponse reads it.
func TestParseResponse_LongFieldLineAsNetHTTPDoes(t *testing.T) {
	for _, n := range longLineLengths {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			raw := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + padLine("X-Long", n) + "X-After: 1\r\n\r\nokNEXT"
			ours, err := viaOurs(raw, "GET", strings.NewReader(raw))
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			std, err := viaStd(raw, "GET")
			if err != nil {
				t.Fatal(err)
			}
			if ours.Header.Get("X-After") != "1" || ours.Body != "ok" {
				t.Fatalf("X-After %q, body %q, rest %q; want X-After 1, body \"ok\", rest \"NEXT\"",
					ours.Header.Get("X-After"), ours.Body, ours.Rest)
			}
			agrees(t, raw[:40], ours, std)
		})
	}
}

// TestClient_LongFieldLineDoesNotEndTheHead: the same through RoundTrip
// from a backend on a socket.
func TestClient_LongFieldLineDoesNotEndTheHead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	answer := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + padLine("X-Long", 4096) + "X-After: 1\r\n\r\nok"
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					io.WriteString(c, answer)
				}
			}()
		}
	}()
	cl := NewClient(ln.Addr().String())
	defer cl.Close()
	req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/", nil)
	resp, err := cl.RoundTrip(req, Timeouts{Response: 5 * time.Second}, new(Scratch))
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("X-After") != "1" || string(body) != "ok" {
		t.Fatalf("got X-After %q and body %q; want X-After 1 and body \"ok\"", resp.Header.Get("X-After"), body)
	}
}
