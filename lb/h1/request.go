package h1

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"
)

// requestError is a request refused before its handler runs: the status
// to answer with and why. The connection is closed after the answer.
type requestError struct {
	status int
	msg    string
}

func refuse(status int, msg string) *requestError { return &requestError{status, msg} }

func (e *requestError) Error() string { return e.msg }

// framing is how a request's body is delimited.
type framing uint8

const (
	noBody framing = iota
	fixedBody
	chunkedBody
)

// parsedRequest is a request head taken apart: the Request the handler
// sees (Body still unset) and what the server needs to read the body and
// decide on the connection.
type parsedRequest struct {
	req    *http.Request
	body   framing
	length int64 // fixedBody: Content-Length
	expect bool  // Expect: 100-continue on HTTP/1.1
}

// parseRequest parses a request head from readHead into req. Field names
// are canonicalised in h in place, and every string of the request is a
// piece of one copy of h. fields is scratch memory for the field
// positions.
//
// It refuses what is not plain: see the package documentation for the
// list and the status each gets.
func parseRequest(h []byte, fields []field, req *http.Request) (parsedRequest, []field, *requestError) {
	p := parsedRequest{req: req}
	eol := bytes.IndexByte(h, '\n') - 1 // the CR
	line := h[:eol]
	// Request line: method SP request-target SP HTTP-version.
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return p, fields, refuse(400, "malformed request line")
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return p, fields, refuse(400, "malformed request line")
	}
	method, target, version := line[:sp1], rest[:sp2], rest[sp2+1:]
	for _, c := range method {
		if !isTokenByte(c) {
			return p, fields, refuse(400, "malformed request line: the method is not a token")
		}
	}
	major, minor := 1, 1
	switch string(version) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		minor = 0
	default:
		if string(method) == "PRI" && string(target) == "*" && string(version) == "HTTP/2.0" {
			return p, fields, refuse(400, "an HTTP/2 connection preface on an HTTP/1.1 listener")
		}
		if len(version) == 8 && string(version[:5]) == "HTTP/" && isDigit(version[5]) && version[6] == '.' && isDigit(version[7]) {
			return p, fields, refuse(505, "HTTP version not supported: only HTTP/1.1 and HTTP/1.0")
		}
		return p, fields, refuse(400, "malformed request line: no HTTP version")
	}
	for _, c := range target {
		// Bytes of 0x80 and up are let through, as net/http and nginx do:
		// clients send raw UTF-8 paths, and no parser reads them as framing.
		if c <= ' ' || c == 0x7f {
			return p, fields, refuse(400, "the request target has a control or space byte")
		}
	}
	if string(method) == http.MethodConnect {
		return p, fields, refuse(501, "CONNECT is not supported: this is a reverse proxy")
	}

	var err error
	fields, err = parseFields(h, eol+2, fields[:0], true)
	if err == errTooManyFields {
		return p, fields, refuse(431, "request header fields too large: more than 100 fields")
	}
	if err != nil {
		return p, fields, refuse(400, "malformed header: "+err.Error())
	}
	hosts, lengths, codings, expects := 0, 0, 0, 0
	host, length, coding := -1, -1, -1
	closeConn, keepAlive := false, false
	for i, f := range fields {
		switch string(h[f.k0:f.k1]) {
		case "Host":
			hosts++
			host = i
		case "Content-Length":
			lengths++
			length = i
		case "Transfer-Encoding":
			codings++
			coding = i
		case "Expect":
			expects++
			if minor == 1 && !asciiEqualFold(string(h[f.v0:f.v1]), "100-continue") {
				return p, fields, refuse(417, "expectation failed: only 100-continue is supported")
			}
			p.expect = minor == 1
		case "Connection":
			v := string(h[f.v0:f.v1])
			closeConn = closeConn || hasToken(v, "close")
			keepAlive = keepAlive || hasToken(v, "keep-alive")
		}
	}
	switch {
	case hosts > 1:
		return p, fields, refuse(400, "more than one Host field")
	case hosts == 0 && minor == 1:
		return p, fields, refuse(400, "no Host field (HTTP/1.1 requires one)")
	case hosts == 1 && !validHost(h[fields[host].v0:fields[host].v1]):
		return p, fields, refuse(400, "invalid Host field")
	case expects > 1 && minor == 1:
		return p, fields, refuse(417, "expectation failed: Expect given more than once")
	}
	value := func(i int) string { return string(h[fields[i].v0:fields[i].v1]) }
	switch {
	case codings > 0 && lengths > 0:
		// RFC 9112 section 6.3: a smuggling attempt, or a mistake; either
		// way the two parties on either side of a proxy may disagree on
		// where this body ends. nginx refuses it too.
		return p, fields, refuse(400, "both Content-Length and Transfer-Encoding")
	case codings > 1:
		return p, fields, refuse(400, "Transfer-Encoding given more than once")
	case codings == 1 && minor == 0:
		return p, fields, refuse(400, "Transfer-Encoding in an HTTP/1.0 request")
	case codings == 1 && !asciiEqualFold(value(coding), "chunked"):
		// RFC 9112 section 6.3: when chunked is not the final coding the
		// body's length cannot be known: 400. Codings before a final
		// chunked are merely not supported: 501 (section 6.1).
		if v := value(coding); isCodingList(v) && endsInChunked(v) {
			return p, fields, refuse(501, "transfer coding not implemented: only chunked alone")
		}
		return p, fields, refuse(400, "Transfer-Encoding whose final coding is not chunked")
	case codings == 1:
		p.body = chunkedBody
	case lengths > 1:
		return p, fields, refuse(400, "Content-Length given more than once")
	case lengths == 1:
		p.length = parseLength(value(length))
		if p.length < 0 {
			return p, fields, refuse(400, "Content-Length is not a plain decimal number")
		}
		if p.length > 0 {
			p.body = fixedBody
		}
	}

	s := string(h)
	req.Method = s[:sp1]
	req.RequestURI = s[sp1+1 : sp1+1+sp2]
	req.Proto, req.ProtoMajor, req.ProtoMinor = s[sp1+sp2+2:eol], major, minor
	if hosts == 1 {
		req.Host = s[fields[host].v0:fields[host].v1]
	}
	if rerr := setTarget(req); rerr != nil {
		return p, fields, rerr
	}
	// Host and Transfer-Encoding have fields of their own in the Request,
	// and net/http leaves them out of the map too.
	if host >= 0 {
		fields[host].k0 = -1
	}
	if coding >= 0 {
		fields[coding].k0 = -1
	}
	req.Header = buildHeader(make(http.Header, len(fields)), s, fields)
	switch p.body {
	case fixedBody:
		req.ContentLength = p.length
	case chunkedBody:
		req.ContentLength = -1
		req.TransferEncoding = chunkedEncoding
	}
	if minor == 1 {
		req.Close = closeConn
	} else {
		req.Close = closeConn || !keepAlive
	}
	return p, fields, nil
}

// chunkedEncoding is Request.TransferEncoding for a chunked body; never
// modified.
var chunkedEncoding = []string{"chunked"}

// setTarget sets req.URL from req.RequestURI: origin-form ("/path?q"),
// absolute-form ("http://host/path", whose host then stands for the Host
// field, RFC 9112 section 3.2.2), or "*" for OPTIONS.
func setTarget(req *http.Request) *requestError {
	t := req.RequestURI
	switch {
	case t == "*":
		if req.Method != http.MethodOptions {
			return refuse(400, "the request target * is for OPTIONS only")
		}
		req.URL = &url.URL{Path: "*"}
		return nil
	case strings.IndexByte(t, '#') >= 0:
		return refuse(400, "the request target has a fragment (#)")
	case t[0] == '/':
		u, err := url.ParseRequestURI(t)
		if err != nil {
			return refuse(400, "malformed request target")
		}
		req.URL = u
		return nil
	}
	u, err := url.ParseRequestURI(t)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		!validHost(u.Host) || u.Opaque != "" {
		return refuse(400, "malformed request target: want a path, or an absolute http(s) URL")
	}
	req.URL = u
	req.Host = u.Host
	return nil
}

// CheckRequest returns an *Error of KindRequest when req cannot be sent
// to a backend as plain HTTP/1.1, or is refused as Server refuses it: its
// method is not a token or is CONNECT, its target is * but for OPTIONS,
// its path or query holds a space, a control byte or a '#', or its Host (req.Host, else
// req.URL.Host) is neither empty nor a plain host (empty, as HTTP/1.0
// allows, the Host field is written empty). Server never hands a
// handler such a request, but HTTP/2 carries a method or an :authority as
// any string, and written into a request line or a Host field such a
// string is a second request line, or a target of the client's choosing
// (request smuggling by downgrade). Client.RoundTrip refuses them too; a
// front end that serves HTTP/2 checks first, to answer 400.
func CheckRequest(req *http.Request) error {
	if !isToken(req.Method) {
		return &Error{Kind: KindRequest, Reason: "method is not a token"}
	}
	if req.Method == http.MethodConnect {
		// A 2xx to CONNECT makes the connection a tunnel whatever its
		// fields say (RFC 9112 section 6.3): never one for the idle pool.
		return &Error{Kind: KindRequest, Reason: "method CONNECT is not proxied: this is a reverse proxy"}
	}
	if req.URL.Path == "*" && req.Method != http.MethodOptions {
		return &Error{Kind: KindRequest, Reason: "target * is for OPTIONS only"}
	}
	for i := 0; i < len(req.URL.RawQuery); i++ {
		if c := req.URL.RawQuery[i]; c <= ' ' || c == 0x7f || c == '#' {
			return &Error{Kind: KindRequest, Reason: "target has a space, a control byte or a fragment in its query"}
		}
	}
	for i := 0; i < len(req.URL.RawPath); i++ { // written as it is (writeHead)
		if c := req.URL.RawPath[i]; c <= ' ' || c == 0x7f || c == '#' {
			return &Error{Kind: KindRequest, Reason: "target has a space, a control byte or a fragment in its path"}
		}
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if host != "" && !validHost(host) {
		return &Error{Kind: KindRequest, Reason: "Host is not a valid host"}
	}
	return nil
}

// validHost reports whether v is a plain Host value: a registered name or
// an IPv4 address, or an IPv6 address in brackets, then optionally a
// colon and a port of digits.
func validHost[S string | []byte](v S) bool {
	if len(v) == 0 {
		return false
	}
	var name S
	hasName := true
	if v[0] == '[' {
		end := index(v, ']')
		if end < 2 {
			return false
		}
		for i := 1; i < end; i++ {
			if c := v[i]; !isHexDigit(c) && c != ':' && c != '.' {
				return false
			}
		}
		hasName, v = false, v[end+1:]
		if len(v) > 0 && v[0] != ':' {
			return false
		}
	} else if i := lastIndex(v, ':'); i >= 0 {
		name, v = v[:i], v[i:]
	} else {
		name, v = v, v[:0]
	}
	for i := 0; i < len(name); i++ {
		if !hostBytes[name[i]] {
			return false
		}
	}
	if len(v) > 0 { // ":port"
		if len(v) > 6 {
			return false
		}
		for i := 1; i < len(v); i++ {
			if !isDigit(v[i]) {
				return false
			}
		}
	}
	return !hasName || len(name) > 0
}

// hostBytes are the bytes of a reg-name or IPv4 address (RFC 3986
// section 3.2.2: unreserved, sub-delims, and % of pct-encoded).
var hostBytes = alnumAnd("-._~!$&'()*+,;=%")

func index[S string | []byte](s S, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func lastIndex[S string | []byte](s S, c byte) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// isCodingList reports whether v is a list of transfer codings: tokens
// (with parameters) separated by commas.
func isCodingList(v string) bool {
	for t := range strings.SplitSeq(v, ",") {
		t = trimOWS(t)
		if i := strings.IndexByte(t, ';'); i >= 0 {
			t = trimOWS(t[:i])
		}
		if !isToken(t) {
			return false
		}
	}
	return true
}

// endsInChunked reports whether the last coding of the list v is chunked.
func endsInChunked(v string) bool {
	if i := strings.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return asciiEqualFold(trimOWS(v), "chunked")
}

func isDigit(c byte) bool    { return '0' <= c && c <= '9' }
func isHexDigit(c byte) bool { return unhex(c) >= 0 }
