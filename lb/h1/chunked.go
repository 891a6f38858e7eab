package h1

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// chunkedReader decodes a chunked body (RFC 9112 section 7.1) from br,
// strictly: a chunk size is one to 16 hex digits; an extension is
// ";name" or ";name=value" with a token name and a token or quoted-string
// value, with spaces or tabs only around ";" and "="; every line ends in
// CRLF; chunk data is followed by exactly CRLF. The trailer section is
// read as field lines are in a head, and its fields that may be trailers
// are kept in *trailerTo (when set). Anything else is a framingError,
// and the reader reports it again on every later call: the stream can no
// longer be trusted to say where the body ends.
//
// A Read goes on through the chunks already buffered, so that a client
// sending many small chunks at once costs one write onward, not one per
// chunk; once it has data it never waits for more.
type chunkedReader struct {
	br    *bufio.Reader
	state chunkState
	left  int64 // chunkData: data bytes left in the current chunk
	err   error
	// trailerLimit bounds the trailer section's size.
	trailerLimit int
	// trailerTo, if set, receives the trailer fields that may be
	// trailers (a map is made when there is none); else they are dropped.
	trailerTo *http.Header
	scratch   []byte // the trailer section, parsed in place
}

// Where a chunkedReader is in the body.
type chunkState uint8

const (
	chunkSize    chunkState = iota // a chunk-size line comes next
	chunkData                      // left bytes of data
	chunkCRLF                      // the CRLF after a chunk's data
	chunkTrailer                   // the last chunk was read; the trailer section comes
	chunkDone                      // all of it was read
)

// framingError is a body whose framing breaks the rules: what comes after
// it cannot be found.
type framingError struct{ msg string }

func (e *framingError) Error() string { return "invalid chunked framing: " + e.msg }

func framingf(format string, args ...any) error {
	return &framingError{fmt.Sprintf(format, args...)}
}

// errIncomplete is a body cut off by the end of the connection.
var errIncomplete = errors.New("the connection ended before the body did")

func (r *chunkedReader) Read(p []byte) (n int, err error) {
	if len(p) == 0 && r.err == nil && r.state != chunkDone {
		return 0, nil
	}
	for r.err == nil {
		switch r.state {
		case chunkDone:
			return n, io.EOF
		case chunkSize:
			if n > 0 && !r.lineBuffered() {
				return n, nil
			}
			r.err = r.readSize()
		case chunkTrailer:
			if n > 0 {
				return n, nil // the trailer may still be on its way: next time
			}
			if r.err = r.readTrailer(); r.err == nil {
				r.state = chunkDone
			}
		case chunkCRLF:
			if n > 0 && r.br.Buffered() < 2 {
				return n, nil
			}
			if r.err = r.readCRLF(); r.err == nil {
				r.state = chunkSize
			}
		case chunkData:
			if n == len(p) || n > 0 && r.br.Buffered() == 0 {
				return n, nil
			}
			q := p[n:]
			if int64(len(q)) > r.left {
				q = q[:r.left]
			}
			m, rerr := r.br.Read(q)
			n += m
			r.left -= int64(m)
			if rerr != nil {
				if rerr == io.EOF {
					rerr = errIncomplete
				}
				r.err = rerr
			} else if r.left == 0 {
				r.state = chunkCRLF
			}
		}
	}
	return n, r.err
}

// lineBuffered reports whether a whole line waits in br.
func (r *chunkedReader) lineBuffered() bool {
	b, _ := r.br.Peek(r.br.Buffered())
	return bytes.IndexByte(b, '\n') >= 0
}

// readCRLF consumes the CRLF that must follow a chunk's data.
func (r *chunkedReader) readCRLF() error {
	b, err := r.br.Peek(2)
	if len(b) == 2 {
		if b[0] != '\r' || b[1] != '\n' {
			return framingf("chunk data not followed by CRLF")
		}
		r.br.Discard(2)
		return nil
	}
	if err == io.EOF {
		err = errIncomplete
	}
	return err
}

// readSize reads a chunk-size line, and after the last chunk the trailer
// section.
func (r *chunkedReader) readSize() error {
	line, err := r.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return framingf("chunk-size line too long")
	}
	if err != nil {
		if err == io.EOF {
			err = errIncomplete
		}
		return err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return framingf("chunk-size line ends in a bare LF")
	}
	line = line[:len(line)-2]
	i := 0
	var size uint64
	for ; i < len(line) && i <= 16; i++ {
		d := unhex(line[i])
		if d < 0 {
			break
		}
		size = size<<4 | uint64(d)
	}
	switch {
	case i == 0:
		return framingf("chunk size is not hex digits: %.20q", line)
	case i > 16 || size > 1<<62:
		return framingf("chunk size too large")
	}
	if err := checkChunkExt(line[i:]); err != nil {
		return err
	}
	if size > 0 {
		r.left, r.state = int64(size), chunkData
	} else {
		r.state = chunkTrailer
	}
	return nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// checkChunkExt checks what follows a chunk size:
// *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ).
func checkChunkExt(ext []byte) error {
	bws := func() {
		for len(ext) > 0 && (ext[0] == ' ' || ext[0] == '\t') {
			ext = ext[1:]
		}
	}
	token := func() bool {
		n := 0
		for n < len(ext) && isTokenByte(ext[n]) {
			n++
		}
		ext = ext[n:]
		return n > 0
	}
	for len(ext) > 0 {
		// Whitespace may come only before a ';': "5 " alone is not a
		// chunk-size line (parsers that disagree on it can be made to
		// disagree on where the body ends).
		bws()
		if len(ext) == 0 || ext[0] != ';' {
			return framingf("unexpected %.10q after the chunk size", ext)
		}
		ext = ext[1:]
		bws()
		if !token() {
			return framingf("chunk extension without a name")
		}
		bws()
		if len(ext) == 0 || ext[0] != '=' {
			continue
		}
		ext = ext[1:]
		bws()
		if len(ext) > 0 && ext[0] == '"' {
			n, ok := quotedString(ext)
			if !ok {
				return framingf("bad quoted string in a chunk extension")
			}
			ext = ext[n:]
		} else if !token() {
			return framingf("chunk extension without a value after '='")
		}
	}
	return nil
}

// quotedString returns the length of the quoted-string that b begins with.
func quotedString(b []byte) (int, bool) {
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1, true
		case c == '\\':
			i++
			if i == len(b) || b[i] < ' ' && b[i] != '\t' || b[i] == 0x7f {
				return 0, false
			}
		case c < ' ' && c != '\t' || c == 0x7f:
			return 0, false
		}
	}
	return 0, false
}

// readTrailer reads the trailer section after the last chunk: field lines
// up to an empty line, within trailerLimit bytes, checked as a head's are.
func (r *chunkedReader) readTrailer() error {
	limit := r.trailerLimit
	if limit <= 0 {
		limit = 16 << 10
	}
	sec := r.scratch[:0]
	for {
		line, err := r.br.ReadSlice('\n')
		if len(sec)+len(line) > limit || err == bufio.ErrBufferFull {
			return framingf("trailer section too large")
		}
		if err != nil {
			if err == io.EOF {
				err = errIncomplete
			}
			return err
		}
		if len(line) < 2 || line[len(line)-2] != '\r' {
			return framingf("a trailer line ends in a bare LF")
		}
		sec = append(sec, line...)
		if len(line) == 2 {
			break
		}
	}
	r.scratch = sec
	if len(sec) == 2 {
		return nil // no trailer fields: the common case
	}
	fields, err := parseFields(sec, 0, nil, false)
	if err != nil {
		return framingf("trailer: %v", err)
	}
	if r.trailerTo == nil {
		return nil
	}
	s := string(sec)
	for _, f := range fields {
		if k := s[f.k0:f.k1]; validTrailer(k) {
			if *r.trailerTo == nil {
				*r.trailerTo = make(http.Header)
			}
			(*r.trailerTo)[k] = append((*r.trailerTo)[k], s[f.v0:f.v1])
		}
	}
	return nil
}

// writeChunk writes p as one chunk.
func writeChunk(bw *bufio.Writer, p []byte) error {
	var b [20]byte
	bw.Write(append(strconv.AppendInt(b[:0], int64(len(p)), 16), '\r', '\n'))
	bw.Write(p)
	_, err := bw.WriteString("\r\n")
	return err
}
