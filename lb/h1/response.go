package h1

import (
	"bytes"
	"net/http"
	"strings"
)

// Scratch is the memory a caller lends Client.RoundTrip for the response
// head: the Response, its Header map, the body reader. One Scratch serves
// one request at a time and may be reused for the next once the caller is
// done with the Response and its body (the balancer pools one per
// exchange; ReverseProxy lets go of the Response before its ServeHTTP
// returns). The header values are never pooled memory, so a caller may
// hand them on to a client's header map.
type Scratch struct {
	resp   http.Response
	hdr    http.Header
	head   []byte
	fields []field
	body   respBody
}

// Release lets go of the connection and the request the last response
// pointed to, so a pooled Scratch keeps neither alive.
func (sc *Scratch) Release() {
	sc.body = respBody{}
	sc.resp.Request, sc.resp.Body, sc.resp.Trailer = nil, nil, nil
}

// maxResponseHead bounds a response head. nginx refuses more than its
// proxy_buffer_size (4 or 8 KiB) and HAProxy more than its buffer (16 KiB);
// this is more generous, and still keeps what a backend can make the
// balancer hold before the body starts small.
const maxResponseHead = 64 << 10

// How a response's body is delimited.
type respFraming uint8

const (
	respNone       respFraming = iota // HEAD, 1xx, 204, 304: none, whatever the fields say
	respFixed                         // Content-Length bytes
	respChunked                       // chunked, then the trailer section
	respUntilClose                    // the rest of the connection
)

// protocolError is an answer that breaks the rules; the connection it came
// on cannot be trusted again.
type protocolError struct{ msg string }

func (e *protocolError) Error() string { return e.msg }

func protocolf(msg string) error { return &protocolError{msg} }

// parsedResponse is what the client needs of a response head beyond the
// Response itself.
type parsedResponse struct {
	framing   respFraming
	length    int64 // respFixed
	closeConn bool  // the connection's last answer: HTTP/1.0, or Connection: close
}

// parseResponse parses a response head from readHead into sc.resp, for a
// request made with method. It refuses what is not plain: a status line
// other than "HTTP/1.x DDD reason"; field lines that break the rules (see
// parseFields); ambiguous framing: Content-Length with Transfer-Encoding,
// either one repeated, a Content-Length that is not a plain decimal, a
// Transfer-Encoding other than chunked alone, or any in HTTP/1.0. An
// interim (1xx) answer is parsed the same way.
func parseResponse(h []byte, method string, sc *Scratch) (parsedResponse, error) {
	var p parsedResponse
	eol := bytes.IndexByte(h, '\n') - 1
	line := h[:eol]
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || (line[7] != '0' && line[7] != '1') || line[8] != ' ' ||
		(len(line) > 12 && line[12] != ' ') || line[9] < '1' || line[9] > '9' || !isDigit(line[10]) || !isDigit(line[11]) {
		return p, protocolf("a status line that is not HTTP/1.x and a three-digit status")
	}
	for _, c := range line[12:] {
		if c < ' ' && c != '\t' || c == 0x7f {
			return p, protocolf("a control character in the status line")
		}
	}
	code := int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	http10 := line[7] == '0'
	fields, err := parseFields(h, eol+2, sc.fields[:0], false)
	sc.fields = fields
	if err != nil {
		return p, protocolf("malformed header: " + err.Error())
	}
	lengths, codings, length, coding, trailer := 0, 0, -1, -1, -1
	p.closeConn = http10
	for i, f := range fields {
		switch string(h[f.k0:f.k1]) {
		case "Content-Length":
			lengths++
			length = i
		case "Transfer-Encoding":
			codings++
			coding = i
		case "Connection":
			if hasToken(string(h[f.v0:f.v1]), "close") { // no copy: the compiler sees the string does not escape
				p.closeConn = true
			}
		case "Trailer":
			trailer = i
		}
	}
	switch {
	case lengths > 0 && codings > 0:
		return p, protocolf("both Content-Length and Transfer-Encoding")
	case lengths > 1:
		return p, protocolf("Content-Length given more than once")
	case codings > 1:
		return p, protocolf("Transfer-Encoding given more than once")
	case codings == 1 && http10:
		return p, protocolf("Transfer-Encoding in an HTTP/1.0 answer")
	case codings == 1 && !asciiEqualFold(string(h[fields[coding].v0:fields[coding].v1]), "chunked"):
		return p, protocolf("a Transfer-Encoding other than chunked alone")
	}
	p.length = -1
	if lengths == 1 {
		if p.length = parseLength(string(h[fields[length].v0:fields[length].v1])); p.length < 0 {
			return p, protocolf("a Content-Length that is not a plain decimal number")
		}
	}
	switch {
	case code < 200 || code == http.StatusNoContent || code == http.StatusNotModified || method == http.MethodHead:
		p.framing = respNone
		// A 1xx or 204 that announces a body says that bytes follow where
		// HTTP allows none (RFC 9110 section 8.6, RFC 9112 section 6.1). If
		// they come late, after the check of the idle connection, they
		// would be read as the next request's answer: an interim answer is
		// refused, a final one is the connection's last. (A HEAD answer's
		// and a 304's fields describe the GET's body, as RFC 9112 section
		// 6.1 allows: both are plain.)
		if announced := codings == 1 || p.length > 0; announced && (code < 200 || code == http.StatusNoContent) {
			if code < 200 && code != http.StatusSwitchingProtocols {
				return p, protocolf("an interim (1xx) answer that announces a body")
			}
			p.closeConn = true
		}
	case codings == 1:
		p.framing = respChunked
	case lengths == 1:
		p.framing = respFixed
	default:
		p.framing = respUntilClose
		p.closeConn = true
	}

	s := string(h)
	if sc.hdr == nil {
		sc.hdr = make(http.Header, 16)
	}
	clear(sc.hdr)
	// Transfer-Encoding is described by TransferEncoding, Trailer (of a
	// chunked answer) by the keys of Trailer, and an HTTP/1.1
	// Connection: close by Close, as net/http reads a response.
	for i, f := range fields {
		switch s[f.k0:f.k1] {
		case "Transfer-Encoding":
			fields[i].k0 = -1
		case "Trailer":
			if codings == 1 {
				fields[i].k0 = -1
			}
		case "Connection":
			if p.closeConn && !http10 {
				fields[i].k0 = -1
			}
		}
	}
	hdr := buildHeader(sc.hdr, s, fields)
	resp := &sc.resp
	*resp = http.Response{
		Status:     strings.TrimLeft(s[9:eol], " "),
		StatusCode: code,
		Proto:      s[:8],
		ProtoMajor: 1,
		ProtoMinor: int(line[7] - '0'),
		Header:     hdr,
		Close:      p.closeConn,
	}
	switch p.framing {
	case respNone:
		resp.ContentLength = 0
		if method == http.MethodHead {
			resp.ContentLength = p.length // what a GET would have had, or -1
		}
		if codings == 1 {
			resp.TransferEncoding = chunkedEncoding // as net/http says, though no body follows
		}
	case respChunked:
		resp.ContentLength, resp.TransferEncoding = -1, chunkedEncoding
	case respFixed:
		resp.ContentLength = p.length
	default:
		resp.ContentLength = -1
	}
	if trailer >= 0 && codings == 1 {
		f := fields[trailer]
		for k := range strings.SplitSeq(s[f.v0:f.v1], ",") {
			k = trimOWS(k)
			b := []byte(k)
			if len(b) > 0 && canonicalize(b) && validTrailer(string(b)) {
				if resp.Trailer == nil {
					resp.Trailer = make(http.Header)
				}
				resp.Trailer[string(b)] = nil
			}
		}
	}
	return p, nil
}
