package lb

import (
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// lineLog writes access-log records in the format of slog's TextHandler or
// JSONHandler (default options), byte for byte, for the kinds of value the
// balancer logs: strings, integers, durations and booleans. TestLineLog
// compares the two on random values.
//
// Why not slog itself: through a Logger each record costs a runtime.Callers,
// a Record with the attributes past the fifth on the heap, and the
// handler's lock held around the output's own. Measured under load, the
// access log through slog cost 2-4 µs of CPU per request (bench/RESULTS.md),
// several times its cost in a quiet benchmark.
type lineLog struct {
	w    io.Writer
	json bool
	bufs sync.Pool // *[]byte
}

func newLineLog(w io.Writer, json bool) *lineLog {
	return &lineLog{w: w, json: json, bufs: sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}}
}

// log writes one record at level INFO with message msg, as slog would with
// a Record of time t.
func (l *lineLog) log(t time.Time, msg string, attrs []slog.Attr) {
	bp := l.bufs.Get().(*[]byte)
	b := (*bp)[:0]
	if l.json {
		b = append(b, `{"time":"`...)
		b = t.Round(0).AppendFormat(b, time.RFC3339Nano)
		b = append(b, `","level":"INFO","msg":`...)
		b = appendJSONString(b, msg)
		for _, a := range attrs {
			b = append(b, ',')
			b = appendJSONString(b, a.Key)
			b = append(b, ':')
			b = appendJSONValue(b, a.Value)
		}
		b = append(b, "}\n"...)
	} else {
		b = append(b, "time="...)
		b = appendRFC3339Millis(b, t.Round(0))
		b = append(b, " level=INFO msg="...)
		b = appendTextString(b, msg)
		for _, a := range attrs {
			b = append(b, ' ')
			b = appendTextString(b, a.Key)
			b = append(b, '=')
			b = appendTextValue(b, a.Value)
		}
		b = append(b, '\n')
	}
	l.w.Write(b)
	if cap(b) > 64<<10 {
		return // one huge line (a long path) need not stay in the pool
	}
	*bp = b
	l.bufs.Put(bp)
}

// appendRFC3339Millis formats t with exactly three decimals, truncated.
func appendRFC3339Millis(b []byte, t time.Time) []byte {
	// RFC3339Nano trims trailing zeros; a tenth of a millisecond added to
	// the truncated time keeps four digits, and the fourth is dropped.
	const prefix = len("2006-01-02T15:04:05.000")
	n := len(b)
	b = t.Truncate(time.Millisecond).Add(time.Millisecond/10).AppendFormat(b, time.RFC3339Nano)
	return append(b[:n+prefix], b[n+prefix+1:]...)
}

func appendTextValue(b []byte, v slog.Value) []byte {
	switch v.Kind() {
	case slog.KindString:
		return appendTextString(b, v.String())
	case slog.KindInt64:
		return strconv.AppendInt(b, v.Int64(), 10)
	case slog.KindDuration:
		return append(b, v.Duration().String()...)
	case slog.KindBool:
		return strconv.AppendBool(b, v.Bool())
	}
	return appendTextString(b, v.String())
}

func appendJSONValue(b []byte, v slog.Value) []byte {
	switch v.Kind() {
	case slog.KindString:
		return appendJSONString(b, v.String())
	case slog.KindInt64:
		return strconv.AppendInt(b, v.Int64(), 10)
	case slog.KindDuration:
		return strconv.AppendInt(b, int64(v.Duration()), 10)
	case slog.KindBool:
		return strconv.AppendBool(b, v.Bool())
	}
	return appendJSONString(b, v.String())
}

// appendTextString writes s bare, or Go-quoted when it is empty or holds a
// space, '=', a quote, a control or a non-printing character.
func appendTextString(b []byte, s string) []byte {
	if textNeedsQuoting(s) {
		return strconv.AppendQuote(b, s)
	}
	return append(b, s...)
}

func textNeedsQuoting(s string) bool {
	if s == "" {
		return true
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c != '\\' && (c == ' ' || c == '=' || !jsonSafe(c)) {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}

// jsonSafe reports whether an ASCII byte stands for itself in a JSON
// string: everything but controls, '"' and '\'.
func jsonSafe(c byte) bool { return c >= ' ' && c != '"' && c != '\\' }

// appendJSONString writes s as a JSON string, escaped as slog escapes it:
// controls, '"', '\', invalid UTF-8 as U+FFFD, and U+2028 and U+2029.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonSafe(c) {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, `\n`...)
			case '\r':
				b = append(b, `\r`...)
			case '\t':
				b = append(b, `\t`...)
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(append(b, s[start:i]...), `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(append(b, s[start:i]...), '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
