package main

import (
	"bufio"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
)

// The headers that tie an answer to its request. A request carries its id
// in idHeader and in its path; a backend answers with the id it read from
// the header, so an answer meant for another request shows another id.
// The flaky backend marks every answer the balancer must refuse with
// badHeader and puts poisonText in its bytes: seen by a client, either
// means a malformed answer was passed on.
const (
	idHeader      = "X-Soak-Id"
	badHeader     = "X-Soak-Bad"
	backendHeader = "X-Backend"
	modeHeader    = "X-Soak-Mode" // how the flaky backend answered
	poisonText    = "POISON"
)

// smuggleText is what request bodies made to look like requests repeat: a
// server that loses track of where a body ends reads it as a request for
// /smuggled, which every backend reports.
const smuggleText = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

// fill returns the body that GET /get/ID?size=N answers: "ID|" repeated and
// cut to n bytes, so that another request's body differs from its first
// byte on.
func fill(id string, n int) []byte {
	b := make([]byte, n)
	unit := id + "|"
	for i := 0; i < n; {
		i += copy(b[i:], unit)
	}
	return b
}

// rejectBody is what POST /reject/ID answers, before reading the body.
func rejectBody(id string) string { return "rejected " + id + "\n" }

// uploadAnswer is what POST /upload/ID answers once it has read the body:
// the id, the body's length and its SHA-256.
func uploadAnswer(id string, n int64, sum [32]byte) string {
	return fmt.Sprintf("%s %d %x\n", id, n, sum)
}

// payload describes a request body: n bytes, random from seed, or
// smuggleText repeated.
type payload struct {
	n       int64
	smuggle bool
	seed    uint64
}

func (p payload) String() string {
	if p.smuggle {
		return fmt.Sprintf("%d bytes of %q repeated", p.n, smuggleText)
	}
	return fmt.Sprintf("%d random bytes (seed %d)", p.n, p.seed)
}

// reader returns the body's bytes.
func (p payload) reader() io.Reader {
	if p.smuggle {
		return io.LimitReader(&repeatReader{s: smuggleText}, p.n)
	}
	return io.LimitReader(&randReader{r: randSource(p.seed)}, p.n)
}

// randSource is the generator of random bytes for seed.
func randSource(seed uint64) *rand.PCG { return rand.NewPCG(seed, seed^0x9e3779b97f4a7c15) }

// sum returns the body's SHA-256.
func (p payload) sum() (s [32]byte) {
	h := sha256.New()
	io.Copy(h, p.reader())
	h.Sum(s[:0])
	return s
}

type repeatReader struct {
	s   string
	off int
}

func (r *repeatReader) Read(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		c := copy(b[n:], r.s[r.off:])
		n += c
		r.off = (r.off + c) % len(r.s)
	}
	return n, nil
}

// randReader reads a generator's words as bytes; the bytes are the same
// whatever the sizes of the reads.
type randReader struct {
	r    *rand.PCG
	w    [8]byte
	left int // bytes of w not yet read, at its end
}

func (r *randReader) Read(b []byte) (int, error) {
	n := copy(b, r.w[8-r.left:])
	r.left -= n
	for n+8 <= len(b) {
		binary.LittleEndian.PutUint64(b[n:], r.r.Uint64())
		n += 8
	}
	if n < len(b) {
		binary.LittleEndian.PutUint64(r.w[:], r.r.Uint64())
		k := copy(b[n:], r.w[:])
		r.left = 8 - k
		n += k
	}
	return n, nil
}

// digest is a running SHA-256 and length of a stream, with its first bytes
// kept for reports.
type digest struct {
	h      hash.Hash
	n      int64
	prefix []byte
}

const prefixKeep = 512

func newDigest() *digest { return &digest{h: sha256.New()} }

func (d *digest) Write(p []byte) (int, error) {
	if k := prefixKeep - len(d.prefix); k > 0 {
		d.prefix = append(d.prefix, p[:min(k, len(p))]...)
	}
	d.n += int64(len(p))
	return d.h.Write(p)
}

func (d *digest) value() (s [32]byte) {
	d.h.Sum(s[:0])
	return s
}

// WebSocket (RFC 6455), as little of it as the soak needs: the handshake's
// accept value and single frames of up to 1 MiB.

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// wsAccept is the Sec-WebSocket-Accept value for a Sec-WebSocket-Key.
func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

const (
	wsText   = 1
	wsBinary = 2
	wsClose  = 8
	wsMaxLen = 1 << 20
)

// wsFrame is one complete (FIN) frame.
type wsFrame struct {
	op      byte
	payload []byte
}

// writeWS writes f as one frame, masked with mask when it is non-nil (a
// client must mask, a server must not).
func writeWS(w io.Writer, f wsFrame, mask []byte) error {
	hdr := make([]byte, 0, 14)
	hdr = append(hdr, 0x80|f.op)
	m := byte(0)
	if mask != nil {
		m = 0x80
	}
	switch n := len(f.payload); {
	case n < 126:
		hdr = append(hdr, m|byte(n))
	case n <= 0xffff:
		hdr = append(hdr, m|126)
		hdr = binary.BigEndian.AppendUint16(hdr, uint16(n))
	default:
		hdr = append(hdr, m|127)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	p := f.payload
	if mask != nil {
		hdr = append(hdr, mask[:4]...)
		p = make([]byte, len(f.payload))
		for i, c := range f.payload {
			p[i] = c ^ mask[i&3]
		}
	}
	if _, err := w.Write(append(hdr, p...)); err != nil {
		return err
	}
	if bw, ok := w.(*bufio.Writer); ok {
		return bw.Flush()
	}
	return nil
}

// readWS reads one frame, unmasking it. It refuses fragments, frames
// over wsMaxLen, and (when masked says so) frames whose masking is not as
// the direction requires.
func readWS(br *bufio.Reader, masked bool) (wsFrame, error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return wsFrame{}, err
	}
	if h[0]&0x80 == 0 {
		return wsFrame{}, errors.New("websocket: a fragmented frame")
	}
	if (h[1]&0x80 != 0) != masked {
		return wsFrame{}, fmt.Errorf("websocket: frame masked=%v, want %v", h[1]&0x80 != 0, masked)
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return wsFrame{}, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return wsFrame{}, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > wsMaxLen {
		return wsFrame{}, fmt.Errorf("websocket: a frame of %d bytes", n)
	}
	var mask [4]byte
	if masked {
		if _, err := io.ReadFull(br, mask[:]); err != nil {
			return wsFrame{}, err
		}
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(br, p); err != nil {
		return wsFrame{}, err
	}
	if masked {
		for i := range p {
			p[i] ^= mask[i&3]
		}
	}
	return wsFrame{op: h[0] & 0x0f, payload: p}, nil
}
