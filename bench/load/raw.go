package load

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// rawTarget is what every rawClient of one run shares, read-only: where to
// dial and the request, serialised once.
type rawTarget struct {
	addr       string
	tlsConfig  *tls.Config // nil for http://
	request    []byte      // the whole request, head and body
	noBody     bool        // HEAD: responses carry no body whatever they say
	idempotent bool        // safe to resend when a reused connection was already closed
}

// rawClient sends one request at a time over one keep-alive HTTP/1.1
// connection and discards the response body, re-dialling when the server
// closes the connection. It exists because net/http's client spends about
// twice wrk's CPU per request, and on a small machine that CPU is taken
// from the server being measured. It parses only what framing needs:
// status, Content-Length, Transfer-Encoding and Connection.
//
// A rawClient belongs to one worker goroutine; only interrupt may be
// called from another goroutine.
type rawClient struct {
	t  *rawTarget
	br *bufio.Reader

	// mu guards conn against interrupt; the owner writes conn only under
	// mu and may read it without.
	mu   sync.Mutex
	conn net.Conn
}

var errMalformed = errors.New("malformed HTTP response")

func newRawClient(t *rawTarget) *rawClient {
	return &rawClient{t: t, br: bufio.NewReaderSize(nil, 16<<10)}
}

// do sends the request and reads the whole response before deadline. It
// returns ctx's error, uncounted, when the run was cancelled.
func (c *rawClient) do(ctx context.Context, deadline time.Time) (int, error) {
	reused := c.conn != nil
	if !reused {
		if err := c.dial(ctx, deadline); err != nil {
			return 0, err
		}
	}
	status, got, err := c.exchange(ctx, deadline)
	if err != nil && reused && !got && c.t.idempotent && Classify(err) == Reset && ctx.Err() == nil {
		// The server closed an idle connection as we reused it; net/http
		// resends in this case too, so a quiet keep-alive timeout on the
		// server is not reported as a failed request.
		c.closeConn()
		if err := c.dial(ctx, deadline); err != nil {
			return 0, err
		}
		status, _, err = c.exchange(ctx, deadline)
	}
	if err != nil {
		c.closeConn()
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
	}
	return status, err
}

func (c *rawClient) dial(ctx context.Context, deadline time.Time) error {
	d := net.Dialer{Deadline: deadline}
	conn, err := d.DialContext(ctx, "tcp", c.t.addr)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	if c.t.tlsConfig != nil {
		tc := tls.Client(conn, c.t.tlsConfig)
		tc.SetDeadline(deadline)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return fmt.Errorf("tls handshake: %w", err)
		}
		conn = tc
	}
	c.mu.Lock()
	c.conn = conn
	c.mu.Unlock()
	c.br.Reset(conn)
	return nil
}

// exchange writes the request and reads the response; got reports whether
// any byte of a response arrived.
func (c *rawClient) exchange(ctx context.Context, deadline time.Time) (status int, got bool, err error) {
	if err := c.conn.SetDeadline(deadline); err != nil {
		return 0, false, fmt.Errorf("set deadline: %w", err)
	}
	// Checked after SetDeadline: interrupt either ran before (seen here)
	// or will move the deadline into the past and fail the I/O below.
	if err := ctx.Err(); err != nil {
		return 0, false, err
	}
	if _, err := c.conn.Write(c.t.request); err != nil {
		return 0, false, fmt.Errorf("write request: %w", err)
	}
	return c.readResponse()
}

// readResponse reads one response, skipping interim 1xx ones, and discards
// its body. It closes the connection when the response says so.
func (c *rawClient) readResponse() (status int, got bool, err error) {
	for {
		line, _, err := c.readLine()
		if err != nil {
			return 0, got || len(line) > 0, fmt.Errorf("read status line: %w", eofIsUnexpected(err))
		}
		got = true
		if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
			return 0, got, fmt.Errorf("status line %q: %w", line, errMalformed)
		}
		status = int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
		if status < 100 || status > 999 {
			return 0, got, fmt.Errorf("status line %q: %w", line, errMalformed)
		}
		keepAlive := line[7] == '1'
		length, chunked := int64(-1), false
		for {
			h, truncated, err := c.readLine()
			if err != nil {
				return status, got, fmt.Errorf("read header: %w", eofIsUnexpected(err))
			}
			if len(h) == 0 && !truncated {
				break
			}
			switch {
			case truncated: // a long cookie or the like; framing headers are short
			case hasPrefixFold(h, "content-length:"):
				if length = parseDecimal(h[len("content-length:"):]); length < 0 {
					return status, got, fmt.Errorf("header %q: %w", h, errMalformed)
				}
			case hasPrefixFold(h, "transfer-encoding:"):
				chunked = containsFold(h, "chunked")
			case hasPrefixFold(h, "connection:"):
				if containsFold(h, "close") {
					keepAlive = false
				} else if containsFold(h, "keep-alive") {
					keepAlive = true
				}
			}
		}
		if status == 101 {
			return status, got, fmt.Errorf("unexpected 101 Switching Protocols: %w", errMalformed)
		}
		if status < 200 {
			continue // interim response; the real one follows
		}
		switch {
		case c.t.noBody || status == 204 || status == 304:
		case chunked:
			err = c.discardChunked()
		case length >= 0:
			_, err = c.br.Discard(int(length))
		default:
			// No framing: the body runs to the end of the connection.
			_, err = io.Copy(io.Discard, c.br)
			keepAlive = false
		}
		if err != nil {
			return status, got, fmt.Errorf("read body: %w", eofIsUnexpected(err))
		}
		if !keepAlive {
			c.closeConn()
		}
		return status, got, nil
	}
}

func (c *rawClient) discardChunked() error {
	for {
		line, _, err := c.readLine()
		if err != nil {
			return err
		}
		size, ok := parseHex(line)
		if !ok {
			return fmt.Errorf("chunk size %q: %w", line, errMalformed)
		}
		if size == 0 {
			break
		}
		if _, err := c.br.Discard(int(size)); err != nil {
			return err
		}
		if line, _, err = c.readLine(); err != nil {
			return err
		} else if len(line) != 0 {
			return fmt.Errorf("chunk not followed by CRLF: %w", errMalformed)
		}
	}
	for { // trailers, up to the empty line
		line, truncated, err := c.readLine()
		if err != nil {
			return err
		}
		if len(line) == 0 && !truncated {
			return nil
		}
	}
}

// readLine returns the next line without its CRLF. The slice is only valid
// until the next read. A line longer than the buffer is skipped and
// reported as truncated, with its first part returned.
func (c *rawClient) readLine() (line []byte, truncated bool, err error) {
	line, err = c.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		head := line[:min(len(line), 64)]
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = c.br.ReadSlice('\n')
		}
		return head, true, err
	}
	if err != nil {
		return line, false, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, false, nil
}

// interrupt aborts any I/O in progress; the run's context is already done.
func (c *rawClient) interrupt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		c.conn.SetDeadline(time.Unix(1, 0))
	}
}

func (c *rawClient) closeConn() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

func (c *rawClient) close() { c.closeConn() }

// eofIsUnexpected turns a bare EOF inside a response into
// io.ErrUnexpectedEOF, which is what it is.
func eofIsUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
