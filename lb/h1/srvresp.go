package h1

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// srvResponse is the ResponseWriter of Server, one per request, as
// net/http's: a handler goroutine that outlives ServeHTTP (a bug) cannot
// write into the next answer on the connection. The head goes into the
// connection's write buffer when the status is set, so later changes to
// the header map are not sent, but for trailers, as with net/http.
//
// The server owns the Connection field: a handler's "close" is honoured,
// and the field sent says what the server will do.
type srvResponse struct {
	c   *srvConn
	req *http.Request
	hdr http.Header

	status     int   // the final status once written, else 0
	cl         int64 // the Content-Length sent, or -1
	written    int64 // body bytes the handler wrote
	chunked    bool
	noBody     bool // HEAD, or a status without a body
	closeAfter bool // the connection closes after this answer
	empty      bool // finish writes the head: the body is empty
	deadline   bool // a write deadline is set
	// done is set when the handler returns: from then on the writer
	// refuses every call, so a goroutine the handler left behind (a bug)
	// cannot write into the next answer. Atomic: that goroutine reads it.
	done     atomic.Bool
	trailers []string
	err      error // the first write error: the client is gone
}

func newSrvResponse(c *srvConn, req *http.Request) *srvResponse {
	return &srvResponse{c: c, req: req, hdr: make(http.Header), cl: -1, closeAfter: req.Close}
}

// Header returns the header map that WriteHeader sends.
func (w *srvResponse) Header() http.Header { return w.hdr }

// WriteHeader writes the status line and header into the buffer. An
// interim (1xx) answer is sent at once and leaves the header map as it is.
func (w *srvResponse) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code)) // as net/http
	}
	if w.done.Load() {
		return
	}
	w.writeHeader(code)
}

// writeHeader is WriteHeader for the server itself, also after the handler
// has returned (finish).
func (w *srvResponse) writeHeader(code int) {
	if w.status != 0 || w.c.hijacked.Load() {
		return
	}
	c := w.c
	if code < 200 && code != http.StatusSwitchingProtocols {
		if w.req.ProtoMinor == 0 {
			return // RFC 9110 section 15.2: no 1xx to an HTTP/1.0 client
		}
		if c.expecting {
			c.outMu.Lock()
			defer c.outMu.Unlock()
		}
		w.writeStatusLine(code)
		w.writeFields(false, true)
		c.bw.WriteString("\r\n")
		if err := c.bw.Flush(); err != nil && w.err == nil {
			w.err = err
		}
		return
	}
	if c.expecting {
		c.outMu.Lock()
		c.finalStarted = true // no 100 Continue after this
		c.outMu.Unlock()
	}
	w.status = code
	w.writeStatusLine(code)
	h := w.hdr
	// No body, and (as net/http) no length or type for 304, no length for 204.
	bodyless := code == http.StatusNoContent || code == http.StatusNotModified || code < 200
	w.noBody = bodyless || w.req.Method == http.MethodHead
	keepCL, keepType := !bodyless, code != http.StatusNotModified
	if v, ok := h["Content-Length"]; ok && keepCL {
		if len(v) == 1 {
			w.cl = parseLength(strings.TrimSpace(v[0]))
		}
		keepCL = w.cl >= 0 // an unusable value is not sent
	}
	if v, ok := h["Connection"]; ok && hasToken(strings.Join(v, ","), "close") {
		w.closeAfter = true
	}
	if c.s.shutting.Load() {
		w.closeAfter = true // draining: say so
	}
	if c.body != nil && !c.body.complete.Load() {
		// The answer begins before the request's body has been read to its
		// end (an early refusal, or a backend answering while it reads):
		// what is left of the body must never be read as a request, so
		// this answer is the connection's last.
		w.closeAfter = true
	}
	if !w.noBody && w.cl < 0 && !w.empty && w.req.ProtoMinor == 0 {
		w.closeAfter = true // an HTTP/1.0 client knows no chunks: the end of the connection ends the body
	}
	switch {
	case w.closeAfter:
		c.bw.WriteString("Connection: close\r\n")
	case w.req.ProtoMinor == 0:
		c.bw.WriteString("Connection: keep-alive\r\n")
	}
	if _, ok := h["Date"]; !ok {
		c.bw.WriteString("Date: ")
		c.bw.WriteString(c.s.date.get(time.Now()))
		c.bw.WriteString("\r\n")
	}
	if !w.noBody && w.cl < 0 {
		switch {
		case w.empty:
			w.cl = 0
			c.bw.WriteString("Content-Length: 0\r\n")
		case w.req.ProtoMinor == 1:
			w.chunked = true
			w.trailers = h["Trailer"]
			c.bw.WriteString("Transfer-Encoding: chunked\r\n")
		}
	}
	w.writeFields(keepCL, keepType)
	c.bw.WriteString("\r\n")
}

func (w *srvResponse) writeStatusLine(code int) {
	bw := w.c.bw
	var b [16]byte
	bw.Write(strconv.AppendInt(append(b[:0], "HTTP/1.1 "...), int64(code), 10))
	bw.WriteByte(' ')
	if text := http.StatusText(code); text != "" {
		bw.WriteString(text)
	} else {
		bw.WriteString("status code ")
		bw.Write(strconv.AppendInt(b[:0], int64(code), 10))
	}
	bw.WriteString("\r\n")
}

// writeFields writes the header map but for the fields framing and the
// connection own: Transfer-Encoding and Connection always, Content-Length
// unless keepCL, Content-Type unless keepType, and trailers.
func (w *srvResponse) writeFields(keepCL, keepType bool) {
	bw := w.c.bw
	for k, vv := range w.hdr {
		switch {
		case k == "Transfer-Encoding", k == "Connection", k == "Content-Length" && !keepCL,
			k == "Content-Type" && !keepType, strings.HasPrefix(k, http.TrailerPrefix):
			continue
		}
		if !validFieldName(k) {
			continue
		}
		writeField(bw, k, vv)
	}
}

// Write writes body bytes, chunked when no Content-Length was set.
func (w *srvResponse) Write(p []byte) (int, error) {
	if w.done.Load() {
		return 0, errAfterHandler
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.c.hijacked.Load() {
		return 0, http.ErrHijacked
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.noBody && w.req.Method != http.MethodHead {
		return 0, http.ErrBodyNotAllowed
	}
	if w.cl >= 0 && w.written+int64(len(p)) > w.cl {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if w.noBody || len(p) == 0 {
		return len(p), nil // HEAD: counted, not sent
	}
	var err error
	if w.chunked {
		err = writeChunk(w.c.bw, p)
	} else {
		_, err = w.c.bw.Write(p)
	}
	if err != nil {
		w.err = err
		return 0, err
	}
	return len(p), nil
}

// FlushError sends what is buffered; ReverseProxy flushes streamed answers
// through http.ResponseController.
func (w *srvResponse) FlushError() error {
	if w.done.Load() {
		return errAfterHandler
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.c.hijacked.Load() {
		return http.ErrHijacked
	}
	if w.err == nil {
		w.err = w.c.bw.Flush()
	}
	return w.err
}

// Flush is FlushError for http.Flusher.
func (w *srvResponse) Flush() { w.FlushError() }

// SetWriteDeadline sets the connection's write deadline; finish clears it.
func (w *srvResponse) SetWriteDeadline(t time.Time) error {
	if w.done.Load() || w.c.hijacked.Load() {
		return errors.New("h1: SetWriteDeadline after the handler returned")
	}
	w.deadline = !t.IsZero()
	return w.c.rwc.SetWriteDeadline(t)
}

// SetReadDeadline sets the deadline of reads of the request's body; the
// next request sets its own.
func (w *srvResponse) SetReadDeadline(t time.Time) error {
	if w.done.Load() || w.c.hijacked.Load() {
		return errors.New("h1: SetReadDeadline after the handler returned")
	}
	return w.c.rwc.SetReadDeadline(t)
}

// errAfterHandler is what a ResponseWriter's methods return once its
// handler has returned.
var errAfterHandler = errors.New("h1: ResponseWriter used after its handler returned")

// EnableFullDuplex is net/http's switch for reading the request's body
// while the answer is written. This server always allows it.
func (w *srvResponse) EnableFullDuplex() error { return nil }

// Hijack lets the handler take the connection over, for a protocol
// upgrade: ReverseProxy does so to relay a WebSocket. It must come before
// the answer's head, and the request must have no body left to read.
func (w *srvResponse) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	switch {
	case w.c.hijacked.Load():
		return nil, nil, http.ErrHijacked
	case w.status != 0:
		return nil, nil, errors.New("h1: Hijack after the answer began")
	case w.c.body != nil && !w.c.body.complete.Load():
		return nil, nil, errors.New("h1: Hijack of a request whose body has not been read")
	}
	if err := w.c.bw.Flush(); err != nil {
		return nil, nil, err
	}
	conn := w.c.hijack()
	return conn, bufio.NewReadWriter(bufio.NewReader(conn), bufio.NewWriter(conn)), nil
}

// finish ends the answer after the handler returned: the head if nothing
// was written, the last chunk and trailers, and a flush.
func (w *srvResponse) finish() {
	bw := w.c.bw
	if w.status == 0 {
		w.empty = true
		w.writeHeader(http.StatusOK)
	}
	if w.chunked && w.err == nil {
		bw.WriteString("0\r\n")
		w.writeTrailers()
		bw.WriteString("\r\n")
	}
	if !w.noBody && w.cl >= 0 && w.written < w.cl {
		w.closeAfter = true // the client waits for bytes that will not come
	}
	if w.err == nil {
		w.err = bw.Flush()
	}
	if w.deadline {
		w.c.rwc.SetWriteDeadline(time.Time{})
	}
}

// writeTrailers writes the fields announced in the Trailer header and
// those set with http.TrailerPrefix, as net/http does.
func (w *srvResponse) writeTrailers() {
	bw := w.c.bw
	for _, list := range w.trailers {
		for k := range strings.SplitSeq(list, ",") {
			k = textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(k))
			if !validFieldName(k) || !validTrailer(k) {
				continue
			}
			writeField(bw, k, w.hdr[k])
		}
	}
	for k, vv := range w.hdr {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok && validFieldName(name) && validTrailer(name) {
			writeField(bw, name, vv)
		}
	}
}
