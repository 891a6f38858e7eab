package lb

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"
)

// viaSlog is what slog's handler writes for the record.
func viaSlog(json bool, t time.Time, msg string, attrs []slog.Attr) string {
	var buf bytes.Buffer
	var h slog.Handler = slog.NewTextHandler(&buf, nil)
	if json {
		h = slog.NewJSONHandler(&buf, nil)
	}
	r := slog.NewRecord(t, slog.LevelInfo, msg, 0)
	r.AddAttrs(attrs...)
	h.Handle(context.Background(), r)
	return buf.String()
}

func viaLineLog(json bool, t time.Time, msg string, attrs []slog.Attr) string {
	var buf bytes.Buffer
	newLineLog(&buf, json).log(t, msg, attrs)
	return buf.String()
}

// lineLogStrings are values that exercise every quoting and escaping rule.
var lineLogStrings = []string{
	"", "plain", "/a/b?c=d", "with space", "a=b", `q"uote`, `back\slash`, "tab\there", "nl\nx", "cr\rx",
	"\x00\x01\x1f", "\x7f", "<html>&amp;", "héllo", "日本", "\u2028\u2029", "\xff\xfe bad utf8",
	"\u00a0nbsp", "\u200bzero-width", "emoji 😀", "trailing\\",
}

func TestLineLog_MatchesSlog(t *testing.T) {
	times := []time.Time{
		time.Date(2026, 11, 27, 13, 17, 35, 576_123_456, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 999_999_999, time.FixedZone("X", 3600+1800)),
		time.Now(), // with a monotonic reading, which slog strips
	}
	for _, json := range []bool{false, true} {
		for i, s := range lineLogStrings {
			tm := times[i%len(times)]
			attrs := []slog.Attr{
				slog.String("method", "GET"), slog.String("path", s), slog.Int("status", 200+i),
				slog.Duration("dur", time.Duration(i)*1234567*time.Nanosecond), slog.Int64("bytes", -int64(i)),
				slog.String(s+"key", s), slog.Bool("limited", i%2 == 0),
			}
			want, got := viaSlog(json, tm, "request", attrs), viaLineLog(json, tm, "request", attrs)
			if got != want {
				t.Errorf("json=%v %q:\ngot  %s\nwant %s", json, s, got, want)
			}
		}
	}
}

// FuzzLineLog extends TestLineLog_MatchesSlog to any string.
func FuzzLineLog(f *testing.F) {
	for _, s := range lineLogStrings {
		f.Add(s, int64(len(s)))
	}
	tm := time.Date(2026, 11, 27, 13, 17, 35, 576_123_456, time.UTC)
	f.Fuzz(func(t *testing.T, s string, n int64) {
		attrs := []slog.Attr{slog.String("path", s), slog.String(s, s), slog.Int64("n", n), slog.Duration("d", time.Duration(n))}
		for _, json := range []bool{false, true} {
			if want, got := viaSlog(json, tm, s, attrs), viaLineLog(json, tm, s, attrs); got != want {
				t.Fatalf("json=%v %q:\ngot  %s\nwant %s", json, s, got, want)
			}
		}
	})
}

func BenchmarkAccessLine(b *testing.B) {
	attrs := []slog.Attr{slog.String("method", "GET"), slog.String("path", "/products"), slog.Int("status", 200),
		slog.Duration("dur", 1234*time.Microsecond), slog.Int64("bytes", 14), slog.String("backend", "b1"),
		slog.String("client", "203.0.113.9"), slog.String("key_kind", "ip"), slog.Bool("limited", false)}
	b.Run("via=slog", func(b *testing.B) {
		l := slog.New(slog.NewTextHandler(discard{}, nil))
		b.ReportAllocs()
		for b.Loop() {
			l.LogAttrs(context.Background(), slog.LevelInfo, "request", attrs...)
		}
	})
	b.Run("via=lineLog", func(b *testing.B) {
		l := newLineLog(discard{}, false)
		b.ReportAllocs()
		for b.Loop() {
			l.log(time.Now(), "request", attrs)
		}
	})
}

// discard is io.Discard without its ReaderFrom, so both benchmarks write
// the same way.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
