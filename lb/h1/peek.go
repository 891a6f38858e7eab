package h1

import (
	"crypto/tls"
	"fmt"
	"time"
)

// quiet reports whether an idle connection may carry a request: nothing
// arrived on it while it sat idle. Bytes the backend sent unasked would be
// read as the answer to the next request, which is the worst mistake a
// proxy can make; an end of file means the backend closed it. Either way
// the connection is closed, and unasked bytes are reported to OnDiscard.
//
// The check is one non-blocking peek of the socket (MSG_PEEK), a single
// system call: cheaper than a goroutine parked on every idle connection,
// as http.Transport keeps.
func (c *clientConn) quiet() bool {
	tc, isTLS := c.nc.(*tls.Conn)
	raw := c.nc
	if isTLS {
		raw = tc.NetConn()
		// Bytes already decrypted and waiting inside tls.Conn: a read with
		// an expired deadline returns them without touching the socket.
		var b [1]byte
		tc.SetReadDeadline(aLongTimeAgo)
		n, _ := tc.Read(b[:])
		tc.SetReadDeadline(time.Time{})
		if n > 0 {
			c.report("sent data on an idle connection, unasked", b[:n])
			return false
		}
	}
	if c.peek == nil {
		c.peek = newPeeker(raw)
	}
	n, state := c.peek.look()
	buf := c.peek.buf[:]
	switch state {
	case peekQuiet:
		return true
	case peekEOF, peekError:
		return false
	}
	if !isTLS {
		c.report(fmt.Sprintf("sent %d bytes on an idle connection, unasked", n), buf[:n])
		return false
	}
	// Records came on an idle TLS connection. They may carry no data (a
	// TLS 1.3 session ticket comes after the first answer): read them with
	// a short deadline, and keep the connection only if no data came.
	var b [1]byte
	tc.SetReadDeadline(time.Now().Add(time.Millisecond))
	m, err := tc.Read(b[:])
	tc.SetReadDeadline(time.Time{})
	if m > 0 {
		c.report("sent data on an idle connection, unasked", b[:m])
		return false
	}
	return isTimeout(err)
}

// report tells the client's OnDiscard about unasked bytes.
func (c *clientConn) report(why string, sample []byte) {
	if c.cl.OnDiscard != nil {
		c.cl.OnDiscard(fmt.Sprintf("%s (%q); closed it", why, sample))
	}
}

// What a non-blocking peek of a socket found.
const (
	peekQuiet = iota // nothing to read
	peekData         // bytes
	peekEOF          // the peer closed its side
	peekError        // the socket failed, or cannot be peeked
)
