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
	p := collect(resp, br)
	for k := range p.Trailer {
		if !isToken(k) || !validTrailer(k) {
			delete(p.Trailer, k) // dropped by ours: not a name, or a framing or routing field
		}
	}
	if len(p.Trailer) == 0 {
		p.Trailer = nil
	}
	return p, nil
}

// viaOurs parses raw with readHead and parseResponse and reads the body as
// its framing says; err is the refusal.
func viaOurs(raw, method string, r io.Reader) (parsed, error) {
	br := bufio.NewReaderSize(r, 4096)
	head, err := readHead(br, nil, maxResponseHead, false)
	if err != nil {
		return parsed{}, err
	}
	var sc Scratch
	p, err := parseResponse(head, method, &sc)
	if err != nil {
		return parsed{}, err
	}
	resp := &sc.resp
	b := &respBody{c: &clientConn{br: br}, framing: p.framing, left: p.length, resp: resp}
	if p.framing == respChunked {
		b.ch = chunkedReader{br: br, trailerTo: &resp.Trailer}
	}
	resp.Body = framingOnly{b}
	return collect(resp, br), nil
}

// framingOnly reads a body by its framing without releasing a connection.
type framingOnly struct{ b *respBody }

func (f framingOnly) Read(p []byte) (int, error) { return f.b.readFraming(p) }
func (f framingOnly) Close() error               { return nil }

func collect(resp *http.Response, br *bufio.Reader) parsed {
	body, err := io.ReadAll(resp.Body)
	rest, _ := io.ReadAll(br)
	h := resp.Header.Clone()
	tr := resp.Trailer
	if len(tr) == 0 {
		tr = nil
	}
	return parsed{
		Status: resp.StatusCode, Header: h, ContentLength: resp.ContentLength, Close: resp.Close,
		Chunked: len(resp.TransferEncoding) > 0, Body: string(body), BodyErr: err != nil,
		Trailer: tr, Rest: string(rest),
	}
}

// agrees checks that what ours made of an answer is what http.ReadResponse
// made of it, but where ours is stricter by design: ours may close a
// connection net/http would keep (an HTTP/1.0 answer is always the last),
// and may refuse a body net/http reads (a chunk extension it would take).
func agrees(t *testing.T, raw string, ours, std parsed) {
	t.Helper()
	if ours.BodyErr && !std.BodyErr {
		return // stricter on the body: the connection is dropped
	}
	if std.Close && !ours.Close {
		t.Fatalf("%q: net/http closes after it, ours would reuse the connection", raw)
	}
	ours.Close, std.Close = false, false
	if ours.BodyErr {
		ours.Rest, std.Rest = "", "" // a broken body: what follows is never read
		ours.Body, std.Body = "", ""
	}
	if !reflect.DeepEqual(ours, std) {
		t.Fatalf("%q: ours and http.ReadResponse disagree:\nours %+v\nstd  %+v", raw, ours, std)
	}
}

func TestParseResponse_TakesPlainAnswersAsNetHTTPDoes(t *testing.T) {
	tests := []struct{ name, method, raw string }{
		{"content-length", "GET", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhelloNEXT"},
		{"lower-case names", "GET", "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-request-id: 7\r\nset-COOKIE: a=1\r\nSet-Cookie: b=2\r\n\r\nokNEXT"},
		{"chunked", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT"},
		{"chunked, upper-case coding", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nNEXT"},
		{"chunk extensions", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;a=b;c=\"d e\"\r\nok\r\n0;last\r\n\r\nNEXT"},
		{"chunked with an unannounced trailer", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Sum: 9\r\n\r\nNEXT"},
		{"announced trailer", "GET", "HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Sum: 1\r\n\r\nNEXT"},
		{"until close", "GET", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it"},
		{"HTTP/1.0 closes", "GET", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"},
		{"HTTP/1.0 keep-alive is still the last", "GET", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nokNEXT"},
		{"Connection: close", "GET", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"},
		{"HEAD with a length", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nNEXT"},
		{"HEAD with chunked", "HEAD", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nNEXT"},
		{"204", "GET", "HTTP/1.1 204 No Content\r\n\r\nNEXT"},
		{"204 with a length", "GET", "HTTP/1.1 204 No Content\r\nContent-Length: 4\r\n\r\nNEXT"},
		{"304", "GET", "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\nNEXT"},
		{"103 early hints", "GET", "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nNEXT"},
		{"no reason phrase", "GET", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\nNEXT"},
		{"value whitespace trimmed", "GET", "HTTP/1.1 200 OK\r\nX-A:   padded \t\r\nContent-Length: 0\r\n\r\n"},
		{"obs-text in a value", "GET", "HTTP/1.1 200 OK\r\nX-A: caf\xc3\xa9\r\nContent-Length: 0\r\n\r\n"},
		{"short body", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"},
		{"bad chunk size", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ours, err := viaOurs(tt.raw, tt.method, strings.NewReader(tt.raw))
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			std, err := viaStd(tt.raw, tt.method)
			if err != nil {
				t.Fatalf("http.ReadResponse refuses what ours took: %v", err)
			}
			agrees(t, tt.raw, ours, std)
		})
	}
}

func TestParseResponse_RefusesAmbiguousFraming(t *testing.T) {
	for _, tt := range []struct{ name, raw string }{
		{"folded line", "HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\nContent-Length: 0\r\n\r\n"},
		{"folded Content-Length", "HTTP/1.1 200 OK\r\nX-A: one\r\n Content-Length: 5\r\n\r\n"},
		{"bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\n\n"},
		{"bare LF on one line", "HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n"},
		{"bare CR", "HTTP/1.1 200 OK\r\nX-A: a\rContent-Length: 5\r\n\r\n"},
		{"two equal lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx"},
		{"a list of lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\nx"},
		{"length and chunked", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"chunked and length", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n"},
		{"gzip coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"},
		{"chunked twice in a list", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"},
		{"two coding fields", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"identity coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\nabc"},
		{"chunked in HTTP/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"space before colon", "HTTP/1.1 200 OK\r\nX-A : b\r\nContent-Length: 0\r\n\r\n"},
		{"space before colon of Content-Length", "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello"},
		{"tab before colon", "HTTP/1.1 200 OK\r\nTransfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n"},
		{"signed length", "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello"},
		{"hex length", "HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\nhello"},
		{"empty length", "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n"},
		{"NUL in a value", "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n"},
		{"HTTP/2 line", "HTTP/2 200 OK\r\n\r\n"},
		{"HTTP/1.2", "HTTP/1.2 200 OK\r\nContent-Length: 0\r\n\r\n"},
		{"lower-case version", "http/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
		{"two-digit status", "HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n"},
		{"four-digit status", "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n"},
		{"status 099", "HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n"},
		{"no space after the version", "HTTP/1.1\t200 OK\r\nContent-Length: 0\r\n\r\n"},
		{"not HTTP", "SSH-2.0-OpenSSH_9.2\r\n\r\n"},
		{"empty line first", "\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
		{"no colon", "HTTP/1.1 200 OK\r\nContent-Length 5\r\n\r\nhello"},
		{"name not a token", "HTTP/1.1 200 OK\r\nX(A): b\r\nContent-Length: 0\r\n\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := viaOurs(tt.raw, "GET", strings.NewReader(tt.raw)); err == nil {
				t.Fatalf("accepted %q", tt.raw)
			}
		})
	}
}

func TestChunkedReader_RefusesWhatIsNotPlain(t *testing.T) {
	for _, tt := range []struct{ name, body string }{
		{"bare LF after the size", "5\nhello\r\n0\r\n\r\n"},
		{"bare LF after the data", "5\r\nhello\n0\r\n\r\n"},
		{"no CRLF after the data", "5\r\nhelloXX0\r\n\r\n"},
		{"too much data", "3\r\nhello\r\n0\r\n\r\n"},
		{"space inside the size", "1 0\r\n0123456789abcdef\r\n0\r\n\r\n"},
		{"size with a sign", "+5\r\nhello\r\n0\r\n\r\n"},
		{"size with 0x", "0x5\r\nhello\r\n0\r\n\r\n"},
		{"size too large", "1ffffffffffffffff\r\n"},
		{"seventeen digits", "00000000000000005\r\nhello\r\n0\r\n\r\n"},
		{"empty size", "\r\nhello\r\n0\r\n\r\n"},
		{"extension without a name", "5;\r\nhello\r\n0\r\n\r\n"},
		{"extension with an unterminated quote", "5;a=\"b\r\nhello\r\n0\r\n\r\n"},
		{"extension with a control byte", "5;a=b\x01\r\nhello\r\n0\r\n\r\n"},
		{"text after the size", "5 hello\r\nhello\r\n0\r\n\r\n"},
		{"whitespace after the size", "5 \r\nhello\r\n0\r\n\r\n"},
		{"tab after the size", "5\t\r\nhello\r\n0\r\n\r\n"},
		{"whitespace after the last chunk", "0 \r\n\r\n"},
		{"whitespace after an extension", "5;a=b \r\nhello\r\n0\r\n\r\n"},
		{"bare LF in the trailer", "0\r\nX-A: b\n\r\n"},
		{"folded trailer", "0\r\nX-A: b\r\n c\r\n\r\n"},
		{"cut off", "5\r\nhel"},
		{"cut off before the last chunk", "5\r\nhello\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := &chunkedReader{br: bufio.NewReaderSize(strings.NewReader(tt.body), 4096)}
			if b, err := io.ReadAll(r); err == nil {
				t.Fatalf("read %q without an error", b)
			}
		})
	}
}

// FuzzParseResponse checks the parser against http.ReadResponse on
// arbitrary input: whenever ours takes a response, the standard parser
// takes it too and reads the same status, fields, framing and body, but
// where ours is stricter by design (see agrees).
func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTrailer: X-A\r\nTransfer-Encoding: chunked\r\n\r\n5;x=\"y\"\r\nhello\r\n0\r\nX-A: 1\r\n\r\n",
		"HTTP/1.0 404 Not Found\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, raw string, head bool) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		ours, err := viaOurs(raw, method, strings.NewReader(raw))
		if err != nil {
			return
		}
		std, err := viaStd(raw, method)
		if err != nil {
			t.Fatalf("ours took %q, which http.ReadResponse refuses: %v", raw, err)
		}
		agrees(t, raw, ours, std)
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
	for _, bad := range []string{"a b", "a:b", "é"} {
		if canonicalize([]byte(bad)) {
			t.Errorf("canonicalize accepted %q", bad)
		}
	}
}

// TestParseResponse_PiecewiseArrival feeds heads, bodies and trailers one
// byte per read, as a slow network may deliver them.
func TestParseResponse_PiecewiseArrival(t *testing.T) {
	for _, raw := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloNEXT",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nX-Sum: 123\r\n\r\nNEXT",
	} {
		got, err := viaOurs(raw, "GET", iotest.OneByteReader(strings.NewReader(raw)))
		if err != nil {
			t.Fatalf("%q: refused when arriving byte by byte: %v", raw, err)
		}
		want, _ := viaStd(raw, "GET")
		agrees(t, raw, got, want)
	}
}
