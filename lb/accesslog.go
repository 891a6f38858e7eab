package lb

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// logAccess writes the request's access-log line: what was asked (method,
// path, query, protocol, whether over TLS, host), what came of it (status, duration, the
// backend's time to first byte, body bytes in and out, the backend,
// attempts), and who asked (client, user agent, referer, rate-limit key).
// Durations are seconds (see lineLog); fields with nothing to say are left
// out.
func (ex *exchange) logAccess(status int, dur time.Duration) {
	in := ex.in
	var buf [20]slog.Attr
	attrs := append(buf[:0], slog.String("method", in.Method), slog.String("path", in.URL.Path))
	if q := in.URL.RawQuery; q != "" && !ex.pool.cfg.AccessLogOmitQuery {
		attrs = append(attrs, slog.String("query", q))
	}
	attrs = append(attrs, slog.String("proto", in.Proto))
	if in.TLS != nil {
		attrs = append(attrs, slog.Bool("tls", true))
	}
	attrs = append(attrs,
		slog.String("host", in.Host),
		slog.Int("status", status),
		slog.Duration("duration_s", dur.Round(time.Microsecond)),
	)
	if ex.stats.ttfb > 0 {
		attrs = append(attrs, slog.Duration("ttfb_s", ex.stats.ttfb.Round(time.Microsecond)))
	}
	attrs = append(attrs, slog.Int64("bytes_in", ex.bytesIn()), slog.Int64("bytes_out", ex.rw.bytes))
	if ex.cur >= 0 {
		attrs = append(attrs, slog.String("backend", ex.backend().name))
	}
	_, client, _ := ex.pool.cfg.TrustedProxies.ClientIP(in)
	attrs = append(attrs, slog.String("client", client))
	if v := in.Header["User-Agent"]; len(v) > 0 && v[0] != "" {
		attrs = append(attrs, slog.String("user_agent", v[0]))
	}
	if v := in.Header["Referer"]; len(v) > 0 && v[0] != "" {
		attrs = append(attrs, slog.String("referer", v[0]))
	}
	if ex.adm.KeyKind != "" {
		attrs = append(attrs, slog.String("key_kind", ex.adm.KeyKind))
		if ex.adm.Key != "" {
			attrs = append(attrs, slog.String("key", ex.adm.Key))
		}
		attrs = append(attrs, slog.Bool("limited", ex.adm.Limited))
	}
	if ex.attempts > 1 {
		attrs = append(attrs, slog.Int("attempts", ex.attempts))
	}
	if ex.broken {
		attrs = append(attrs, slog.Bool("aborted", true))
	}
	if ex.b.lines != nil {
		ex.b.lines.log(time.Now(), "request", attrs)
		return
	}
	ex.b.access.LogAttrs(context.Background(), slog.LevelInfo, "request", secondsForSlog(attrs)...)
}

// secondsForSlog turns the duration attributes into seconds as float64,
// so that a slog handler writes the number lineLog writes (below 100 µs
// slog spells it with an exponent: 1.2e-05 for 0.000012).
func secondsForSlog(attrs []slog.Attr) []slog.Attr {
	for i, a := range attrs {
		if a.Value.Kind() == slog.KindDuration {
			attrs[i] = slog.Float64(a.Key, a.Value.Duration().Seconds())
		}
	}
	return attrs
}

// lineLog writes access-log records in the format of slog's TextHandler or
// JSONHandler (default options), byte for byte, for the kinds of value the
// balancer logs: strings, integers and booleans. TestLineLog compares the
// two on random values. Durations are the one difference: lineLog writes
// them as seconds, in decimal with up to nine digits after the point
// (0.001234), in both formats, as nginx's request_time and Caddy's
// duration are; slog writes 1.234ms in text and integer nanoseconds in
// JSON, which no log pipeline reads as a time.
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
	// second is the formatted second of the last record's time, shared by
	// the records of that second; replaced, never changed, when the
	// second moves on.
	second atomic.Pointer[formattedSecond]
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
		b = l.appendTime(b, t)
		b = append(b, `","level":"INFO","msg":`...)
		b = appendJSONString(b, msg)
		for i := range attrs {
			a := &attrs[i] // not a copy: an Attr is five words
			b = append(b, ',')
			b = appendJSONString(b, a.Key)
			b = append(b, ':')
			b = appendValue(b, a.Value, true)
		}
		b = append(b, "}\n"...)
	} else {
		b = append(b, "time="...)
		b = l.appendTime(b, t)
		b = append(b, " level=INFO msg="...)
		b = appendTextString(b, msg)
		for i := range attrs {
			a := &attrs[i]
			b = append(b, ' ')
			b = appendTextString(b, a.Key)
			b = append(b, '=')
			b = appendValue(b, a.Value, false)
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
