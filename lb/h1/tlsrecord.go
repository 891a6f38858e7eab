package h1

import "net"

// recordConn is the socket under a TLS client connection. It follows TLS's
// record framing (a 5-byte header, then as many bytes as the header says)
// in what tls.Conn reads from it, so that quiet can tell when tls.Conn
// holds part of a record it cannot use yet: the start of bytes that came
// unasked, which no peek of the socket would show. Read by one goroutine
// at a time (tls.Conn's reader, or quiet while the connection is idle).
type recordConn struct {
	net.Conn
	hdr  [5]byte
	nhdr int // header bytes seen of the record being read
	left int // payload bytes still to come of it
}

func (r *recordConn) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	b := p[:n]
	for len(b) > 0 {
		if r.left > 0 {
			k := min(r.left, len(b))
			r.left -= k
			b = b[k:]
			continue
		}
		k := copy(r.hdr[r.nhdr:], b)
		r.nhdr += k
		b = b[k:]
		if r.nhdr == len(r.hdr) {
			r.left, r.nhdr = int(r.hdr[3])<<8|int(r.hdr[4]), 0
		}
	}
	return n, err
}

// partial reports whether the bytes read so far end inside a record.
func (r *recordConn) partial() bool { return r.nhdr > 0 || r.left > 0 }
