package h1

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

// srvBody is a request body the server decodes from the client's
// connection. The handler may give it to another goroutine to read (the
// balancer's backend client streams it to the backend while the handler
// waits for the answer: full duplex), but nothing reads it once the
// handler has returned: finish interrupts a read still waiting for the
// client, waits for it to return, and closes the body.
type srvBody struct {
	c *srvConn

	// mu serialises reads with each other and with finish. A read holds
	// it while it waits for the client; finish ends that wait with a read
	// deadline in the past before taking it.
	mu      sync.Mutex
	chunked bool
	left    int64 // a Content-Length body: bytes still to come
	ch      chunkedReader
	expect  bool  // the client waits for 100 Continue; cleared once sent
	err     error // the first error, returned by every later read
	closed  bool  // the handler returned

	// complete is set when the body has been read to its end without
	// error, so the connection may serve another request. Atomic: the
	// handler's goroutine reads it (to decide on Connection: close) while
	// another goroutine reads the body.
	complete atomic.Bool
	// stopping is set by finish before it interrupts a read, so that a
	// read about to begin does not wait for the client.
	stopping atomic.Bool
}

func (b *srvBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed || b.stopping.Load():
		return 0, ErrBodyAfterHandler
	case b.err != nil:
		return 0, b.err
	case b.complete.Load():
		return 0, io.EOF
	}
	if b.expect {
		b.expect = false
		if err := b.c.sendContinue(); err != nil {
			b.err = err
			return 0, err
		}
	}
	var n int
	var err error
	if b.chunked {
		n, err = b.ch.Read(p)
	} else {
		if int64(len(p)) > b.left {
			p = p[:b.left]
		}
		n, err = b.c.br.Read(p)
		b.left -= int64(n)
		if err == nil && b.left == 0 {
			err = io.EOF
		} else if err == io.EOF {
			err = errIncomplete
		}
	}
	switch {
	case err == io.EOF:
		b.complete.Store(true)
	case err != nil:
		b.err = bodyError(err)
		err = b.err
	}
	return n, err
}

// bodyError words what went wrong reading a request body.
func bodyError(err error) error {
	var fe *framingError
	switch {
	case errors.As(err, &fe):
		return &RequestBodyError{Reason: fe.Error(), Err: err}
	case errors.Is(err, errIncomplete):
		return &RequestBodyError{Reason: "the client's connection ended before the end of its body", Err: io.ErrUnexpectedEOF}
	case isTimeout(err):
		return err // a deadline the handler set: the client stalled; its caller knows why
	case isClosed(err):
		return &RequestBodyError{Reason: "the client's connection broke in the middle of its body", Err: err}
	}
	return err
}

// Close does nothing: the body belongs to the server, which closes it
// when the handler returns. (http.Request's Body must be a ReadCloser.)
func (b *srvBody) Close() error { return nil }

// finish ends the body when the handler has returned, and reports whether
// it was read to its end: if not, what is left of it on the connection
// must never be read as a request, and the connection closes.
func (b *srvBody) finish() (complete bool) {
	if !b.complete.Load() {
		b.stopping.Store(true)
		b.c.rwc.SetReadDeadline(aLongTimeAgo) // ends a read waiting for the client
	}
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return b.complete.Load()
}
