package lb

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
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
	// Longer than a word, with the special byte past the first eight.
	"Mozilla/5.0 (X11; Linux x86_64)", "0123456789=abcdef", `C:\\long\\windows\\path`, `a long "quoted" value`,
	"long value\x7fwith DEL", "longvalue\x7fwithDEL", "long value\x01control", "eightchrs then é", "/a/long/path/without/anything",
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
			attrs := func() []slog.Attr {
				return []slog.Attr{
					slog.String("method", "GET"), slog.String("path", s), slog.Int("status", 200+i),
					// From 100 µs up, slog writes the float64 of the seconds
					// as lineLog writes the duration.
					slog.Duration("duration_s", time.Duration(i)*1234567*time.Nanosecond), slog.Int64("bytes", -int64(i)),
					slog.String(s+"key", s), slog.Bool("limited", i%2 == 0),
				}
			}
			want, got := viaSlog(json, tm, "request", secondsForSlog(attrs())), viaLineLog(json, tm, "request", attrs())
			if got != want {
				t.Errorf("json=%v %q:\ngot  %s\nwant %s", json, s, got, want)
			}
		}
	}
}

func TestAppendSeconds(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0"},
		{time.Nanosecond, "0.000000001"},
		{12 * time.Microsecond, "0.000012"}, // slog's float64 would say 1.2e-05
		{1234 * time.Microsecond, "0.001234"},
		{1500 * time.Millisecond, "1.5"},
		{2 * time.Second, "2"},
		{-500 * time.Millisecond, "-0.5"},
		{math.MaxInt64, "9223372036.854775807"},
		{math.MinInt64, "-9223372036.854775808"},
	} {
		if got := string(appendSeconds(nil, c.d)); got != c.want {
			t.Errorf("appendSeconds(%v) = %s, want %s", c.d, got, c.want)
		}
	}
}

// secondsValue parses what appendSeconds wrote back into a duration.
func secondsValue(s string) (time.Duration, bool) {
	neg := strings.HasPrefix(s, "-")
	whole, frac, _ := strings.Cut(strings.TrimPrefix(s, "-"), ".")
	if len(frac) > 9 || strings.HasSuffix(frac, "0") {
		return 0, false
	}
	w, err := strconv.ParseUint(whole, 10, 64)
	if err != nil {
		return 0, false
	}
	f, _ := strconv.ParseUint((frac + "000000000")[:9], 10, 64)
	u := w*1e9 + f
	if neg {
		u = -u
	}
	return time.Duration(u), true
}

// FuzzLineLog extends TestLineLog_MatchesSlog to any string, and checks
// that any duration is written as its exact number of seconds.
func FuzzLineLog(f *testing.F) {
	for _, s := range lineLogStrings {
		f.Add(s, int64(len(s)))
	}
	tm := time.Date(2026, 11, 27, 13, 17, 35, 576_123_456, time.UTC)
	f.Fuzz(func(t *testing.T, s string, n int64) {
		attrs := []slog.Attr{slog.String("path", s), slog.String(s, s), slog.Int64("n", n)}
		for _, json := range []bool{false, true} {
			if want, got := viaSlog(json, tm, s, attrs), viaLineLog(json, tm, s, attrs); got != want {
				t.Fatalf("json=%v %q:\ngot  %s\nwant %s", json, s, got, want)
			}
		}
		d := time.Duration(n)
		if back, ok := secondsValue(string(appendSeconds(nil, d))); !ok || back != d {
			t.Fatalf("appendSeconds(%d) = %s, which reads back as %d", n, appendSeconds(nil, d), back)
		}
	})
}

// BenchmarkAccessLine answers: what does formatting one access-log record
// cost? The record is a proxied browser request as logAccess builds it,
// with every field but key and attempts.
func BenchmarkAccessLine(b *testing.B) {
	attrs := []slog.Attr{slog.String("method", "GET"), slog.String("path", "/products"), slog.String("query", "page=2"),
		slog.String("proto", "HTTP/1.1"), slog.String("host", "shop.example"), slog.Int("status", 200),
		slog.Duration("duration_s", 1234*time.Microsecond), slog.Duration("ttfb_s", 1102*time.Microsecond),
		slog.Int64("bytes_in", 0), slog.Int64("bytes_out", 14), slog.String("backend", "b1"),
		slog.String("client", "203.0.113.9"),
		slog.String("user_agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
		slog.String("referer", "https://shop.example/"), slog.String("key_kind", "ip"), slog.Bool("limited", false)}
	b.Run("via=slog", func(b *testing.B) {
		l := slog.New(slog.NewTextHandler(discard{}, nil))
		b.ReportAllocs()
		for b.Loop() {
			l.LogAttrs(context.Background(), slog.LevelInfo, "request", attrs...)
		}
	})
	for _, json := range []bool{false, true} {
		name := "via=lineLog"
		if json {
			name += "-json"
		}
		b.Run(name, func(b *testing.B) {
			l := newLineLog(discard{}, json)
			b.ReportAllocs()
			for b.Loop() {
				l.log(time.Now(), "request", attrs)
			}
		})
	}
}

// discard is io.Discard without its ReaderFrom, so both benchmarks write
// the same way.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestAccessLog_FieldsPipelinesRead(t *testing.T) {
	a := namedBackend(t, "a", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, r.Body)
	}))
	for _, c := range []struct {
		name      string
		omitQuery bool
		post      bool
		want      map[string]any // JSON values; nil: the field must be absent
	}{
		{"GET with query, agent and referer", false, false, map[string]any{
			"method": "GET", "path": "/", "query": "page=2&q=a%20b", // as sent "proto": "HTTP/1.1", "status": 200.0,
			"bytes_in": 0.0, "bytes_out": float64(len("hello from a")), "backend": a.URL, "client": "127.0.0.1",
			"user_agent": "test agent/1.0", "referer": "https://shop.example/",
		}},
		{"query left out", true, false, map[string]any{"path": "/", "query": nil}},
		{"POST without agent", false, true, map[string]any{
			"method": "POST", "path": "/echo", "query": nil, "bytes_in": 10.0, "bytes_out": 10.0, "user_agent": nil, "referer": nil,
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig(t, a.URL)
			cfg.AccessLogOmitQuery = c.omitQuery
			var lines logBuffer
			bal, err := New(cfg, Options{Logger: discardLogger(), AccessWriter: &lines, AccessJSON: true})
			if err != nil {
				t.Fatal(err)
			}
			lb := startBalancer(t, bal)
			req, _ := http.NewRequest("GET", lb.URL+"/?page=2&q=a%20b", nil)
			req.Header.Set("User-Agent", "test agent/1.0")
			req.Header.Set("Referer", "https://shop.example/")
			if c.post {
				req, _ = http.NewRequest("POST", lb.URL+"/echo", strings.NewReader("ten bytes!"))
				req.Header["User-Agent"] = []string{""} // net/http sends none
			}
			resp, err := lb.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			waitFor(t, "the access-log line", func() bool { return lines.count(`"msg":"request"`) == 1 })

			var rec map[string]any
			if err := json.Unmarshal([]byte(lines.String()), &rec); err != nil {
				t.Fatalf("not one JSON object: %v\n%s", err, lines.String())
			}
			for k, want := range c.want {
				if got, ok := rec[k]; want == nil && ok || want != nil && got != want {
					t.Errorf("%s = %#v (present %v), want %#v", k, got, ok, want)
				}
			}
			if rec["host"] != lb.Addr() {
				t.Errorf("host = %v, want %s", rec["host"], lb.Addr())
			}
			// Durations are seconds as JSON numbers; the backend's first
			// byte came before the end of the answer.
			dur, ok1 := rec["duration_s"].(float64)
			ttfb, ok2 := rec["ttfb_s"].(float64)
			if !ok1 || !ok2 || ttfb <= 0 || ttfb > dur || dur > 5 {
				t.Errorf("duration_s %v, ttfb_s %v: want seconds, 0 < ttfb <= duration", rec["duration_s"], rec["ttfb_s"])
			}
		})
	}
}

func TestAccessLog_TextSaysSeconds(t *testing.T) {
	a := namedBackend(t, "a", nil)
	var lines logBuffer
	bal, err := New(testConfig(t, a.URL), Options{Logger: discardLogger(), AccessWriter: &lines})
	if err != nil {
		t.Fatal(err)
	}
	lb := startBalancer(t, bal)
	req, _ := http.NewRequest("GET", lb.URL+"/x?a=1", nil)
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11)")
	resp, err := lb.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitFor(t, "the access-log line", func() bool { return lines.count("msg=request") == 1 })
	if lines.count(`path=/x query="a=1" proto=HTTP/1.1`, "duration_s=0.", "ttfb_s=0.", "bytes_in=0 bytes_out=12",
		`user_agent="Mozilla/5.0 (X11)"`) != 1 {
		t.Fatalf("line: %s", lines.String())
	}
}
