package h1

import (
	"bufio"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// parsed is what a response parser made of some bytes, in comparable form.
type parsed struct {
	Status        int
	Header        http.Header
	ContentLength int64
	Close         bool
	Chunked       bool
	Body          string
	BodyErr       bool
	Trailer       http.Header
	Rest          string // what is left for the next response
}

// viaStd parses raw with http.ReadResponse, the reference.
func viaStd(raw, method string) (parsed, error) {
	br := bufio.NewReaderSize(strings.NewReader(raw), 4096)
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		return parsed{}, err
	}
	return collect(resp, br), nil
}

// viaFast parses raw with fastHead and the direct path's body framing; ok
// is false when fastHead declined.
func viaFast(raw, method string) (p parsed, ok bool) {
	br := bufio.NewReaderSize(strings.NewReader(raw), 4096)
	if _, err := br.Peek(1); err != nil {
		return parsed{}, false
	}
	var rs Scratch
	resp, ok, err := fastHead(br, &http.Request{Method: method}, &rs)
	if !ok || err != nil {
		if br.Buffered() != len(raw) && len(raw) <= 4096 {
			panic("fastHead declined after consuming input")
		}
		return parsed{}, false
	}
	b := &rs.body
	b.c = &h1conn{br: br}
	b.stop = func() bool { return true }
	resp.Body = framingOnly{b}
	return collect(resp, br), true
}

// framingOnly reads a direct-path body without releasing a connection.
type framingOnly struct{ b *h1body }

func (f framingOnly) Read(p []byte) (int, error) { return f.b.readFraming(p) }
func (f framingOnly) Close() error               { return nil }

func collect(resp *http.Response, br *bufio.Reader) parsed {
	body, err := io.ReadAll(resp.Body)
	rest, _ := io.ReadAll(br)
	h := resp.Header.Clone()
	delete(h, "Transfer-Encoding")
	return parsed{
		Status: resp.StatusCode, Header: h, ContentLength: resp.ContentLength, Close: resp.Close,
		Chunked: len(resp.TransferEncoding) > 0, Body: string(body), BodyErr: err != nil,
		Trailer: resp.Trailer, Rest: string(rest),
	}
}

func TestFastHead_AgreesWithReadResponse(t *testing.T) {
	tests := []struct {
		name, method, raw string
		fast              bool // fastHead takes it (else it must decline)
	}{
		{"content-length", "GET", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhelloNEXT", true},
		{"lower-case names", "GET", "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-request-id: 7\r\nset-COOKIE: a=1\r\nSet-Cookie: b=2\r\n\r\nokNEXT", true},
		{"chunked", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT", true},
		{"chunked with an unannounced trailer", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Sum: 9\r\n\r\nNEXT", true},
		{"until close", "GET", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it", true},
		{"HTTP/1.0 closes", "GET", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", true},
		{"HTTP/1.0 keep-alive", "GET", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nokNEXT", true},
		{"Connection: close", "GET", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", true},
		{"HEAD with a length", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nNEXT", true},
		{"204", "GET", "HTTP/1.1 204 No Content\r\n\r\nNEXT", true},
		{"304", "GET", "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\nNEXT", true},
		{"no reason phrase", "GET", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\nNEXT", true},
		{"value whitespace trimmed", "GET", "HTTP/1.1 200 OK\r\nX-A:   padded \t\r\nContent-Length: 0\r\n\r\n", true},
		{"short body", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", true},
		{"bad chunk", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n", true},

		{"1xx goes the standard way", "GET", "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", false},
		{"folded line", "GET", "HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\nContent-Length: 0\r\n\r\n", false},
		{"bare LF", "GET", "HTTP/1.1 200 OK\nContent-Length: 0\n\n", false},
		{"two lengths", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", false},
		{"length and chunked", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false},
		{"gzip coding", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", false},
		{"announced trailer", "GET", "HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Sum: 1\r\n\r\n", false},
		{"space before colon", "GET", "HTTP/1.1 200 OK\r\nX-A : b\r\nContent-Length: 0\r\n\r\n", false},
		{"signed length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello", false},
		{"HTTP/2 line", "GET", "HTTP/2 200 OK\r\n\r\n", false},
		{"not HTTP", "GET", "SSH-2.0-OpenSSH_9.2\r\n\r\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fast, ok := viaFast(tt.raw, tt.method)
			if ok != tt.fast {
				t.Fatalf("fastHead took it: %v, want %v", ok, tt.fast)
			}
			if !ok {
				return
			}
			want, err := viaStd(tt.raw, tt.method)
			if err != nil {
				t.Fatalf("http.ReadResponse refuses what fastHead took: %v", err)
			}
			if !reflect.DeepEqual(fast, want) {
				t.Fatalf("fastHead and http.ReadResponse disagree:\nfast %+v\nstd  %+v", fast, want)
			}
		})
	}
}

// FuzzFastHead checks the direct parser against http.ReadResponse on
// arbitrary input: whenever fastHead takes a response, the standard parser
// must take it too and read the same status, fields, framing and body.
func FuzzFastHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"HTTP/1.0 404 Not Found\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\n\r\n",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, raw string, head bool) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		fast, ok := viaFast(raw, method)
		if !ok {
			return
		}
		want, err := viaStd(raw, method)
		if err != nil {
			t.Fatalf("fastHead took %q, which http.ReadResponse refuses: %v", raw, err)
		}
		if !reflect.DeepEqual(fast, want) {
			t.Fatalf("disagreement on %q:\nfast %+v\nstd  %+v", raw, fast, want)
		}
	})
}

func TestCanonicalize(t *testing.T) {
	for in, want := range map[string]string{
		"content-type": "Content-Type", "X-REQUEST-ID": "X-Request-Id", "etag": "Etag", "a": "A", "x--y": "X--Y",
	} {
		b := []byte(in)
		if !canonicalize(b) || string(b) != want || want != http.CanonicalHeaderKey(in) {
			t.Errorf("canonicalize(%q) = %q, want %q", in, b, want)
		}
	}
	for _, bad := range []string{"a b", "a:b", "é", ""} {
		if bad != "" && canonicalize([]byte(bad)) {
			t.Errorf("canonicalize accepted %q", bad)
		}
	}
}

// TestFastHead_PiecewiseArrival feeds heads, bodies and trailers one byte
// per read, as a slow network may deliver them.
func TestFastHead_PiecewiseArrival(t *testing.T) {
	for _, raw := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloNEXT",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 123\r\n\r\nNEXT",
	} {
		br := bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(raw)), 4096)
		br.Peek(1)
		var rs Scratch
		resp, ok, err := fastHead(br, &http.Request{Method: "GET"}, &rs)
		if !ok || err != nil {
			t.Fatalf("%q: fastHead declined (%v) a head arriving byte by byte", raw, err)
		}
		rs.body.c = &h1conn{br: br}
		resp.Body = framingOnly{&rs.body}
		got := collect(resp, br)
		want, _ := viaStd(raw, "GET")
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("byte by byte:\nfast %+v\nstd  %+v", got, want)
		}
	}
}
