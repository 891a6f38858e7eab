package lb

import (
	"log/slog"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
)

// The value formatting of lineLog: time, seconds, strings for text and
// JSON. Each is checked against slog's output (or, for seconds, against
// the number it stands for) in accesslog_test.go.

// formattedSecond is one second of time in RFC 3339, in two parts either
// side of the fraction: "2026-11-27T13:17:35" and "Z" (or "+01:30").
type formattedSecond struct {
	unix       int64
	loc        *time.Location
	date, zone []byte
}

// appendTime writes t as slog does: RFC 3339 with exactly three decimals,
// truncated, for text; with nine, trailing zeros trimmed, for JSON.
// Formatting the date once a second leaves the fraction to do per record.
func (l *lineLog) appendTime(b []byte, t time.Time) []byte {
	if y := t.Year(); y < 0 || y > 9999 {
		if l.json {
			return t.AppendFormat(b, time.RFC3339Nano)
		}
		return appendRFC3339Millis(b, t)
	}
	f := l.second.Load()
	if f == nil || f.unix != t.Unix() || f.loc != t.Location() {
		f = &formattedSecond{unix: t.Unix(), loc: t.Location(),
			date: t.AppendFormat(nil, "2006-01-02T15:04:05"), zone: t.AppendFormat(nil, "Z07:00")}
		l.second.Store(f)
	}
	b = append(b, f.date...)
	ns := t.Nanosecond()
	switch {
	case !l.json:
		ms := ns / 1e6
		b = append(b, '.', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10))
	case ns != 0:
		var digits [10]byte
		digits[0] = '.'
		for i := 9; i > 0; i-- {
			digits[i] = byte('0' + ns%10)
			ns /= 10
		}
		n := len(digits)
		for digits[n-1] == '0' {
			n--
		}
		b = append(b, digits[:n]...)
	}
	return append(b, f.zone...)
}

// appendRFC3339Millis formats t with exactly three decimals, truncated,
// for years appendTime does not cache.
func appendRFC3339Millis(b []byte, t time.Time) []byte {
	// RFC3339Nano trims trailing zeros; a tenth of a millisecond added to
	// the truncated time keeps four digits, and the fourth is dropped.
	const prefix = len("2006-01-02T15:04:05.000")
	n := len(b)
	b = t.Truncate(time.Millisecond).Add(time.Millisecond/10).AppendFormat(b, time.RFC3339Nano)
	return append(b[:n+prefix], b[n+prefix+1:]...)
}

// appendValue writes v as the access log's text format (json false) or
// JSON writes it: numbers and booleans bare, durations as seconds, the rest
// as a string quoted as the format quotes it.
func appendValue(b []byte, v slog.Value, json bool) []byte {
	switch v.Kind() {
	case slog.KindInt64:
		return strconv.AppendInt(b, v.Int64(), 10)
	case slog.KindDuration:
		return appendSeconds(b, v.Duration())
	case slog.KindBool:
		return strconv.AppendBool(b, v.Bool())
	}
	if json {
		return appendJSONString(b, v.String())
	}
	return appendTextString(b, v.String())
}

// appendSeconds writes d as seconds in decimal, exactly, with no trailing
// zeros after the point and no point for whole seconds: 0.001234, 2, -0.5.
// It is what strconv.FormatFloat(d.Seconds(), 'f', -1, 64) writes where
// float64 holds d exactly, without the float.
func appendSeconds(b []byte, d time.Duration) []byte {
	u := uint64(d)
	if d < 0 {
		b = append(b, '-')
		u = -u // two's complement: right for math.MinInt64 too
	}
	b = strconv.AppendUint(b, u/1e9, 10)
	frac := u % 1e9
	if frac == 0 {
		return b
	}
	var digits [10]byte
	digits[0] = '.'
	for i := 9; i > 0; i-- {
		digits[i] = '0' + byte(frac%10)
		frac /= 10
	}
	n := len(digits)
	for digits[n-1] == '0' {
		n--
	}
	return append(b, digits[:n]...)
}

// appendTextString writes s bare, or Go-quoted when it is empty or holds a
// space, '=', a quote, a control or a non-printing character.
//
// ASCII, nearly every value, takes one pass over a table: a user agent
// is full of spaces and needs quotes but no escapes, and strconv.Quote's
// rune-by-rune loop was half the cost of a record that has one.
func appendTextString(b []byte, s string) []byte {
	var flags uint8
	if len(s) < 8 {
		for i := 0; i < len(s); i++ {
			flags |= textFlags[s[i]]
		}
	} else {
		// Whole words, then the last eight bytes for the rest: bytes seen
		// twice change nothing.
		for i := 0; i < len(s); i += 8 {
			w := load64(s, min(i, len(s)-8))
			ctl := hasLess(w, ' ')
			quote := hasByte(w, '"')
			if w&hi8 != 0 {
				flags |= beyondASCII
			}
			if ctl|quote|hasByte(w, ' ')|hasByte(w, '=') != 0 {
				flags |= mustQuote
			}
			if ctl|quote|hasByte(w, '\\')|hasByte(w, 0x7f) != 0 {
				flags |= escaped
			}
		}
	}
	switch {
	case flags&beyondASCII != 0:
		return appendTextStringSlow(b, s)
	case s != "" && flags&mustQuote == 0:
		return append(b, s...)
	case flags&escaped == 0:
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	return strconv.AppendQuote(b, s)
}

// Eight bytes at a time: hi8 has the top bit of each byte, lo8 the lowest.
const (
	lo8 = 0x0101010101010101
	hi8 = 0x8080808080808080
)

// load64 returns the eight bytes of s from i on as a little-endian word
// (the compiler makes it one load).
func load64(s string, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// hasLess is non-zero when a byte of w is below n, for w of ASCII bytes
// and n <= 128: subtracting n from each byte borrows into its top bit
// exactly when the byte is smaller. (Which byte the result marks can be
// wrong after a borrow; whether any does is exact.)
func hasLess(w uint64, n byte) uint64 { return (w - lo8*uint64(n)) & ^w & hi8 }

// hasByte is non-zero when a byte of w equals c, for w of ASCII bytes.
func hasByte(w uint64, c byte) uint64 { return hasLess(w^(lo8*uint64(c)), 1) }

// What a byte asks of appendTextString: mustQuote, quotes around the
// value; escaped, an escape inside them (strconv.Quote's rules);
// beyondASCII, the rune-by-rune rules.
const (
	mustQuote = 1 << iota
	escaped
	beyondASCII
)

// textFlags holds the flags of each byte. Computed once, never written
// after.
var textFlags = func() (t [256]uint8) {
	for c := range t {
		switch {
		case c >= utf8.RuneSelf:
			t[c] = beyondASCII
		case c == ' ' || c == '=':
			t[c] = mustQuote
		case c == '\\' || c == 0x7f: // bare they stand for themselves, as slog has it
			t[c] = escaped
		case c == '"' || c < ' ':
			t[c] = mustQuote | escaped
		}
	}
	return t
}()

// appendTextStringSlow is appendTextString for strings beyond ASCII.
func appendTextStringSlow(b []byte, s string) []byte {
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

// jsonSpecial marks the bytes that do not stand for themselves in a JSON
// string, or may not: controls, '"', '\\' and all beyond ASCII. Computed
// once, never written after.
var jsonSpecial = func() (t [256]bool) {
	for c := range t {
		t[c] = c >= utf8.RuneSelf || !jsonSafe(byte(c))
	}
	return t
}()

// jsonSafe reports whether an ASCII byte stands for itself in a JSON
// string: everything but controls, '"' and '\'.
func jsonSafe(c byte) bool { return c >= ' ' && c != '"' && c != '\\' }

// appendJSONString writes s as a JSON string, escaped as slog escapes it:
// controls, '"', '\', invalid UTF-8 as U+FFFD, and U+2028 and U+2029.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	// Nearly always all of s is plain ASCII: check it a word at a time
	// (the last word overlapping the one before) and copy it in one go.
	i := 0
	if len(s) < 8 {
		for i < len(s) && !jsonSpecial[s[i]] {
			i++
		}
	} else {
		for ; i < len(s); i += 8 {
			if w := load64(s, min(i, len(s)-8)); w&hi8|hasLess(w, ' ')|hasByte(w, '"')|hasByte(w, '\\') != 0 {
				i = min(i, len(s)-8) // the rest goes through the loop below
				break
			}
		}
	}
	if i >= len(s) {
		b = append(b, s...)
		return append(b, '"')
	}
	start := 0
	for i < len(s) {
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
