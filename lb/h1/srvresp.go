package h1

import (
	"fmt"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// srvResponse is the ResponseWriter of Server's fast path, one per
// request, as net/http's: a handler goroutine that outlives ServeHTTP (a
// bug) cannot write into the next answer on the connection. The head goes
// into the connection's write buffer when the status is set, so later
// changes to the header map are not sent, but for trailers, as with
// net/http.
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
	trailers   []string
	err        error // the first write error: the client is gone
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
	if w.status != 0 {
		return
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		w.writeStatusLine(code)
		w.writeFields(false, true)
		w.c.bw.WriteString("\r\n")
		if err := w.c.bw.Flush(); err != nil && w.err == nil {
			w.err = err
		}
		return
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
			w.cl = parseLength(v[0])
		}
		keepCL = w.cl >= 0 // an unusable value is not sent
	}
	w.closeAfter = w.closeAfter || w.c.s.shutting.Load() // draining: say so
	if v, ok := h["Connection"]; ok && hasToken(strings.Join(v, ","), "close") {
		w.closeAfter = true
	} else if w.closeAfter {
		w.c.bw.WriteString("Connection: close\r\n")
	}
	if _, ok := h["Date"]; !ok {
		w.c.bw.WriteString("Date: ")
		w.c.bw.WriteString(w.c.s.date.get(time.Now()))
		w.c.bw.WriteString("\r\n")
	}
	if !w.noBody && w.cl < 0 {
		if w.empty {
			w.cl = 0
			w.c.bw.WriteString("Content-Length: 0\r\n")
		} else {
			w.chunked = true
			w.trailers = h["Trailer"]
			w.c.bw.WriteString("Transfer-Encoding: chunked\r\n")
		}
	}
	w.writeFields(keepCL, keepType)
	w.c.bw.WriteString("\r\n")
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

// writeFields writes the header map but for the fields framing owns:
// Transfer-Encoding always, Content-Length unless keepCL, Content-Type
// unless keepType, and trailers.
func (w *srvResponse) writeFields(keepCL, keepType bool) {
	bw := w.c.bw
	for k, vv := range w.hdr {
		switch {
		case k == "Transfer-Encoding", k == "Content-Length" && !keepCL, k == "Content-Type" && !keepType,
			strings.HasPrefix(k, http.TrailerPrefix):
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
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
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
	bw := w.c.bw
	if w.chunked {
		var b [20]byte
		bw.Write(append(strconv.AppendInt(b[:0], int64(len(p)), 16), '\r', '\n'))
	}
	n, err := bw.Write(p)
	if w.chunked && err == nil {
		_, err = bw.WriteString("\r\n")
	}
	if err != nil {
		w.err = err
	}
	return n, err
}

// FlushError sends what is buffered; ReverseProxy flushes streamed answers
// through http.ResponseController.
func (w *srvResponse) FlushError() error {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
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
	w.deadline = !t.IsZero()
	return w.c.rwc.SetWriteDeadline(t)
}

// SetReadDeadline sets the connection's read deadline, which has nothing to
// read on the fast path; the next request sets its own.
func (w *srvResponse) SetReadDeadline(t time.Time) error {
	return w.c.rwc.SetReadDeadline(t)
}

// finish ends the answer after the handler returned: the head if nothing
// was written, the last chunk and trailers, and a flush.
func (w *srvResponse) finish() {
	bw := w.c.bw
	if w.status == 0 {
		w.empty = true
		w.WriteHeader(http.StatusOK)
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
