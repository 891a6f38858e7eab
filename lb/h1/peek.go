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
// as http.Transport keeps. Over TLS, bytes may also wait inside tls.Conn:
// decrypted data (a read with an expired deadline returns it) or part of a
// record (recordConn says so); and any byte on the socket is taken as
// unasked, even one that might only have been a late session ticket:
// losing a connection is cheap, reading a stray answer is not.
func (c *clientConn) quiet() bool {
	raw := c.nc
	if tc, ok := c.nc.(*tls.Conn); ok {
		rc := tc.NetConn().(*recordConn)
		if rc.partial() {
			c.report("sent part of a TLS record on an idle connection, unasked", nil)
			return false
		}
		var b [1]byte
		tc.SetReadDeadline(aLongTimeAgo)
		n, _ := tc.Read(b[:])
		tc.SetReadDeadline(time.Time{})
		if n > 0 || rc.partial() {
			c.report("sent data on an idle connection, unasked", b[:n])
			return false
		}
		raw = rc.Conn
	}
	if c.peek == nil {
		c.peek = newPeeker(raw)
	}
	n, state := c.peek.look()
	switch state {
	case peekQuiet:
		return true
	case peekData:
		c.report(fmt.Sprintf("sent %d bytes on an idle connection, unasked", n), c.peek.buf[:n])
	}
	return false
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
