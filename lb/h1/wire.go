package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
)

// The rules of HTTP/1.1's syntax that the server and the client share:
// reading a head, field lines, tokens, and how a field line is written.
// Everything here is stateless.

// errBareLF is a line ended by LF alone. RFC 9112 section 2.2 lets a
// recipient accept it; two parsers that disagree on it are a smuggling
// vector, so neither side here does.
var errBareLF = errors.New("a line ends in a bare LF")

// errHeadTooLarge is a head over the reader's limit; errStartLineTooLarge
// one whose start line alone is.
var (
	errHeadTooLarge      = errors.New("head too large")
	errStartLineTooLarge = errors.New("start line too large")
)

// errEmptyLineFirst is a head that begins with an empty line where it may
// not (an answer: a stray CRLF is bytes nobody asked for).
var errEmptyLineFirst = errors.New("a head begins with an empty line")

// readHead reads one message head from br into dst (reused) and returns
// it: the start line, the field lines and the blank line, each ended by
// CRLF. Before the start line it skips empty lines when skipEmpty (a
// server must ignore at least one, RFC 9112 section 2.2). It refuses a
// line ended by a bare LF and a head of more than limit bytes
// (errStartLineTooLarge when the start line alone is), and returns br's
// error when the head breaks off.
//
// A line longer than br's buffer comes in pieces; where a line starts is
// kept across them, so that a piece that is only the CRLF ending a long
// line is never taken for the blank line that ends the head.
func readHead(br *bufio.Reader, dst []byte, limit int, skipEmpty bool) ([]byte, error) {
	dst = dst[:0]
	lineStart := 0
	for {
		piece, err := br.ReadSlice('\n')
		if len(dst)+len(piece) > limit {
			if lineStart == 0 {
				return nil, errStartLineTooLarge
			}
			return nil, errHeadTooLarge
		}
		dst = append(dst, piece...)
		if err == bufio.ErrBufferFull {
			continue // the rest of this line is still to come
		}
		if err != nil {
			return nil, err
		}
		line := dst[lineStart:]
		if len(line) < 2 || line[len(line)-2] != '\r' {
			return nil, errBareLF
		}
		if len(line) == 2 { // an empty line
			if lineStart > 0 {
				return dst, nil
			}
			if !skipEmpty {
				return nil, errEmptyLineFirst
			}
			dst = dst[:0]
			continue
		}
		lineStart = len(dst)
	}
}

// field is one field line of a head: the name at [k0:k1] and the value,
// without surrounding whitespace, at [v0:v1].
type field struct{ k0, k1, v0, v1 int }

// MaxFields bounds the field lines of a head, as HAProxy's
// tune.http.maxhdr does: a head of thousands of tiny fields costs far more
// to parse and forward than its size suggests.
const MaxFields = 100

// parseFields checks the field lines in h from pos to the blank line that
// ends h, canonicalises each name in place ("content-type" becomes
// "Content-Type") and appends their positions to fields. It refuses, by
// the rules of RFC 9112 section 5 and RFC 9110 section 5.5: a line folded
// onto the one before (obs-fold), a name that is not a token or is
// followed by whitespace before its colon, a control character (but HTAB)
// or a CR anywhere in a line, and more than MaxFields lines. Every line in
// h ends in CRLF (readHead made sure).
//
// With dropUnderscore, a field whose name holds a '_' is left out, as
// nginx leaves it out by default: CGI, WSGI, PHP and Rack backends read
// X_Forwarded_For as X-Forwarded-For, and X_API_Key as X-API-Key, fields
// that the balancer sets or reads under their proper names. It still
// counts towards MaxFields.
func parseFields(h []byte, pos int, fields []field, dropUnderscore bool) ([]field, error) {
	n := len(fields)
	for pos < len(h)-2 {
		end := pos + bytes.IndexByte(h[pos:], '\n') - 1 // the CR
		line := h[pos:end]
		if line[0] == ' ' || line[0] == '\t' {
			return nil, errors.New("a field line is folded onto the one before (obs-fold)")
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return nil, errors.New("a field line has no name or no colon")
		}
		if !canonicalize(line[:colon]) {
			if c := line[colon-1]; c == ' ' || c == '\t' {
				return nil, errors.New("whitespace between a field name and its colon")
			}
			return nil, errors.New("a field name is not a token")
		}
		v0, v1 := pos+colon+1, end
		for _, c := range h[v0:v1] {
			if c < ' ' && c != '\t' || c == 0x7f {
				return nil, errors.New("a control character in a field value")
			}
		}
		for v0 < v1 && (h[v0] == ' ' || h[v0] == '\t') {
			v0++
		}
		for v1 > v0 && (h[v1-1] == ' ' || h[v1-1] == '\t') {
			v1--
		}
		if n++; n > MaxFields {
			return nil, errTooManyFields
		}
		if !dropUnderscore || bytes.IndexByte(line[:colon], '_') < 0 {
			fields = append(fields, field{pos, pos + colon, v0, v1})
		}
		pos = end + 2
	}
	return fields, nil
}

var errTooManyFields = errors.New("more than 100 field lines")

// buildHeader fills hdr (empty) with fields, whose names and values are
// pieces of s, a string copy of the head they were parsed from: one
// allocation for every value, none per field. A field whose k0 is -1 is
// left out.
func buildHeader(hdr http.Header, s string, fields []field) http.Header {
	vals := make([]string, len(fields))
	for i, f := range fields {
		if f.k0 < 0 {
			continue
		}
		k := s[f.k0:f.k1]
		vals[i] = s[f.v0:f.v1]
		if prev, dup := hdr[k]; dup {
			hdr[k] = append(prev, vals[i])
		} else {
			hdr[k] = vals[i : i+1 : i+1]
		}
	}
	return hdr
}

// parseLength parses a Content-Length value: one to 18 decimal digits and
// nothing else (no sign, no list, no inner space), or -1.
func parseLength(v string) int64 {
	if v == "" || len(v) > 18 {
		return -1
	}
	var n int64
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return -1
		}
		n = n*10 + int64(v[i]-'0')
	}
	return n
}

// canonicalize rewrites a field name in place as
// textproto.CanonicalMIMEHeaderKey would ("content-type" becomes
// "Content-Type"), reporting false for a name that is not an HTTP token.
func canonicalize(k []byte) bool {
	upper := true
	for i, c := range k {
		if !tokenBytes[c] {
			return false
		}
		if upper && 'a' <= c && c <= 'z' {
			k[i] = c - ('a' - 'A')
		} else if !upper && 'A' <= c && c <= 'Z' {
			k[i] = c + ('a' - 'A')
		}
		upper = c == '-'
	}
	return true
}

// isTokenByte reports whether c may appear in a token (RFC 9110 section
// 5.6.2): a method, a field name, a transfer coding.
func isTokenByte(c byte) bool { return tokenBytes[c] }

// tokenBytes is the set of token bytes, as a table: field names are
// checked byte by byte on every request, both ways. Never modified.
var tokenBytes = alnumAnd("!#$%&'*+-.^_`|~")

// alnumAnd returns the set of ASCII letters and digits and the bytes of
// extra, as a table indexed by byte.
func alnumAnd(extra string) (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for i := 0; i < len(extra); i++ {
		t[extra[i]] = true
	}
	return t
}

// isToken reports whether s is a non-empty token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenBytes[s[i]] {
			return false
		}
	}
	return true
}

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if a[i]|0x20 != b[i]|0x20 {
			return false
		}
	}
	return true
}

// hasToken reports whether the comma-separated list v contains token,
// compared case-insensitively.
func hasToken(v, token string) bool {
	for len(v) > 0 {
		var t string
		if i := strings.IndexByte(v, ','); i >= 0 {
			t, v = v[:i], v[i+1:]
		} else {
			t, v = v, ""
		}
		if asciiEqualFold(trimOWS(t), token) {
			return true
		}
	}
	return false
}

// trimOWS trims spaces and tabs, the optional whitespace of RFC 9110.
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// validFieldName reports whether k may be written as a field name.
func validFieldName(k string) bool { return isToken(k) }

// writeField writes a field line per value.
func writeField(bw *bufio.Writer, k string, vv []string) {
	for _, v := range vv {
		bw.WriteString(k)
		bw.WriteString(": ")
		writeValue(bw, v)
		bw.WriteString("\r\n")
	}
}

// writeValue writes a field value with every control character but HTAB
// turned into a space, so that no value can end its line early and add a
// field of its own (http.Header.Write does the same for CR and LF).
func writeValue(w *bufio.Writer, v string) {
	// Spaces and tabs only (RFC 9110's OWS): strings.TrimSpace would also
	// take U+00A0 and other Unicode spaces off, and the backend would get
	// another value than the one the balancer read (and keyed a client by).
	v = trimOWS(v)
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			b := []byte(v)
			for j := i; j < len(b); j++ {
				if c := b[j]; c < ' ' && c != '\t' || c == 0x7f {
					b[j] = ' '
				}
			}
			w.Write(b)
			return
		}
	}
	w.WriteString(v)
}

// validTrailer reports whether a canonical field name may be sent as a
// trailer: RFC 9110 section 6.5.1 rules out framing, routing,
// authentication and request modifiers; the list is net/http's.
func validTrailer(k string) bool {
	if strings.HasPrefix(k, "If-") {
		return false
	}
	switch k {
	case "Authorization", "Cache-Control", "Connection", "Content-Encoding", "Content-Length",
		"Content-Range", "Content-Type", "Expect", "Host", "Keep-Alive", "Max-Forwards", "Pragma",
		"Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection", "Range", "Realm", "Te",
		"Trailer", "Transfer-Encoding", "Www-Authenticate":
		return false
	}
	return true
}

// isTimeout reports whether err is a deadline or timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)
}
