package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strconv"
)

// Scratch is the memory a caller lends Client.RoundTrip for the response
// head: the Response, its Header map, the body reader. One Scratch serves
// one request at a time and may be reused for the next once the caller is
// done with the Response and its body (the balancer pools one per
// exchange; ReverseProxy lets go of the Response before its ServeHTTP
// returns). The header values are never pooled memory, so a caller may
// hand them on to a client's header map.
type Scratch struct {
	resp http.Response
	hdr  http.Header
	head []byte
	body h1body
}

// maxFastHead is the largest response head parsed by parseHead; anything
// larger (or unusual) is left to http.ReadResponse.
const maxFastHead = 4096

// fastHead parses the response head waiting in br when it is an ordinary
// one: HTTP/1.x, final status, CRLF line ends, no folded lines, no
// announced trailers, at most one Content-Length and no transfer coding but
// chunked. It allocates one string for the whole head. When the head is
// anything else it returns ok false having consumed nothing, and the caller
// hands the bytes to http.ReadResponse, which knows every corner of the
// protocol.
func fastHead(br *bufio.Reader, req *http.Request, rs *Scratch) (resp *http.Response, ok bool, err error) {
	n := br.Buffered()
	var raw []byte
	for {
		raw, err = br.Peek(n)
		if err != nil {
			return nil, false, nil // let ReadResponse meet the same error
		}
		if i := bytes.Index(raw, []byte("\r\n\r\n")); i >= 0 {
			raw = raw[:i+4]
			break
		}
		if bareLF(raw) || n >= maxFastHead || n >= br.Size() {
			// A head with bare LF line ends would never show "\r\n\r\n":
			// waiting for one would stall until the response timeout.
			return nil, false, nil
		}
		n = max(n+1, br.Buffered()) // wait for more of the head
	}
	rs.head = append(rs.head[:0], raw...)
	h := rs.head
	// Status line: "HTTP/1.1 200 OK".
	eol := bytes.IndexByte(h, '\n')
	if eol < 1 || h[eol-1] != '\r' {
		return nil, false, nil
	}
	line := h[:eol-1]
	if len(line) < 12 || bytes.IndexByte(line, '\r') >= 0 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || (line[7] != '0' && line[7] != '1') ||
		line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return nil, false, nil
	}
	code := 0
	for _, d := range line[9:12] {
		if d < '0' || d > '9' {
			return nil, false, nil
		}
		code = code*10 + int(d-'0')
	}
	if code < 200 {
		return nil, false, nil // 1xx: informational answers and upgrades go the standard way
	}
	// Canonicalise field names in place, so that one string of the whole
	// head holds every key and value.
	type field struct{ k0, k1, v0, v1 int }
	var fields [32]field
	nf := 0
	for pos := eol + 1; pos < len(h)-2; {
		end := pos + bytes.IndexByte(h[pos:], '\n')
		if h[end-1] != '\r' {
			return nil, false, nil // a bare LF line end
		}
		l := h[pos : end-1]
		if len(l) == 0 || l[0] == ' ' || l[0] == '\t' || bytes.IndexByte(l, '\r') >= 0 || nf == len(fields) {
			return nil, false, nil // a stray CR, a folded line, or very many fields
		}
		colon := bytes.IndexByte(l, ':')
		if colon <= 0 || !canonicalize(l[:colon]) {
			return nil, false, nil
		}
		v0, v1 := pos+colon+1, end-1
		for _, c := range h[v0:v1] {
			if (c < ' ' && c != '\t') || c == 0x7f {
				return nil, false, nil // control bytes: net/http refuses them
			}
		}
		for v0 < v1 && (h[v0] == ' ' || h[v0] == '\t') {
			v0++
		}
		for v1 > v0 && (h[v1-1] == ' ' || h[v1-1] == '\t') {
			v1--
		}
		fields[nf] = field{pos, pos + colon, v0, v1}
		nf++
		pos = end + 1
	}
	s := string(h)
	if rs.hdr == nil {
		rs.hdr = make(http.Header, 16)
	}
	clear(rs.hdr)
	vals := make([]string, nf)
	contentLength, chunked, closeConn := int64(-1), false, line[7] == '0'
	for i, f := range fields[:nf] {
		k, v := s[f.k0:f.k1], s[f.v0:f.v1]
		switch k {
		case "Content-Length":
			if contentLength >= 0 {
				return nil, false, nil
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 || v[0] < '0' || v[0] > '9' {
				return nil, false, nil
			}
			contentLength = n
		case "Transfer-Encoding":
			if chunked || !asciiEqualFold(v, "chunked") {
				return nil, false, nil
			}
			chunked = true
			continue // hop-by-hop, and described by TransferEncoding instead
		case "Trailer":
			return nil, false, nil
		case "Connection":
			if hasToken(v, "close") {
				closeConn = true
				if line[7] == '1' {
					continue // net/http drops it too: Close says it
				}
			} else if line[7] == '0' && hasToken(v, "keep-alive") {
				closeConn = false
			}
		}
		vals[i] = v
		if prev, dup := rs.hdr[k]; dup {
			rs.hdr[k] = append(prev, v)
		} else {
			rs.hdr[k] = vals[i : i+1 : i+1]
		}
	}
	noBody := req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
	if chunked && (contentLength >= 0 || noBody || line[7] == '0') {
		return nil, false, nil // a smuggling smell, or an oddity: let the strict parser judge
	}
	br.Discard(len(raw))

	resp = &rs.resp
	*resp = http.Response{
		Status:     s[9 : eol-1],
		StatusCode: code,
		Proto:      s[:8],
		ProtoMajor: 1,
		ProtoMinor: int(line[7] - '0'),
		Header:     rs.hdr,
		Close:      closeConn,
		Request:    req,
	}
	b := &rs.body
	*b = h1body{}
	switch {
	case noBody:
		b.mode = bodyNone
		resp.ContentLength = 0
		if req.Method == http.MethodHead {
			resp.ContentLength = contentLength // what a GET would have had, or -1
		}
	case chunked:
		b.mode, b.chunked, b.resp = bodyChunked, httputil.NewChunkedReader(br), resp
		resp.ContentLength, resp.TransferEncoding = -1, chunkedEncoding
	case contentLength >= 0:
		b.mode, b.remaining = bodyFixed, contentLength
		resp.ContentLength = contentLength
	default:
		b.mode = bodyUntilClose // the end of the body is the end of the connection
		resp.ContentLength, resp.Close = -1, true
	}
	return resp, true, nil
}

// chunkedEncoding is Response.TransferEncoding for a chunked body; never
// modified.
var chunkedEncoding = []string{"chunked"}

// The framings of a response body on the direct path.
const (
	bodyStd        = iota // read by net/http's body reader (http.ReadResponse path)
	bodyNone              // no body: HEAD, 204, 304
	bodyFixed             // Content-Length bytes
	bodyChunked           // chunked, then an optional trailer section
	bodyUntilClose        // everything until the backend closes
)

// readFraming reads the next part of a body framed by the direct parser.
func (b *h1body) readFraming(p []byte) (int, error) {
	br := b.c.br
	switch b.mode {
	case bodyFixed:
		if b.remaining == 0 {
			return 0, io.EOF
		}
		if int64(len(p)) > b.remaining {
			p = p[:b.remaining]
		}
		n, err := br.Read(p)
		b.remaining -= int64(n)
		switch {
		case err == io.EOF:
			return n, io.ErrUnexpectedEOF
		case err == nil && b.remaining == 0:
			return n, io.EOF
		}
		return n, err
	case bodyChunked:
		n, err := b.chunked.Read(p)
		if err == io.EOF {
			if terr := readTrailer(br, b.resp); terr != nil {
				return n, terr
			}
		}
		return n, err
	case bodyUntilClose:
		return br.Read(p)
	}
	return 0, io.EOF
}

// readTrailer consumes the trailer section after a chunked body, keeping any
// fields in resp.Trailer for ReverseProxy to pass on.
func readTrailer(br *bufio.Reader, resp *http.Response) error {
	buf, err := br.Peek(2)
	if bytes.Equal(buf, []byte("\r\n")) {
		br.Discard(2)
		return nil
	}
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	// Bound the trailer to what the buffer holds, as net/http does, waiting
	// for more of it when it arrives in pieces.
	for n := br.Buffered(); ; n++ {
		b, err := br.Peek(n)
		if bytes.Contains(b, []byte("\r\n\r\n")) {
			break
		}
		if err != nil || n >= br.Size() {
			return errors.New("lb: trailer after chunked body missing or too long")
		}
		n = max(n, br.Buffered())
	}
	hdr, err := textproto.NewReader(br).ReadMIMEHeader()
	if err != nil {
		return err
	}
	if resp.Trailer == nil {
		resp.Trailer = make(http.Header, len(hdr))
	}
	for k, v := range hdr {
		resp.Trailer[k] = v
	}
	return nil
}

// Release lets go of the connection and the request the last response
// pointed to, so a pooled Scratch keeps neither alive.
func (rs *Scratch) Release() {
	rs.body = h1body{}
	rs.resp.Request, rs.resp.Body = nil, nil
}
