package main

import (
	"bufio"
	"io"
	"strings"
	"sync"
)

// stderrLog reads what the balancer writes on stderr (log/slog's text
// format) and keeps: warnings and errors grouped by message, with digits
// folded so that one kind of line is one group; every line that speaks of
// a panic, a data race or a fatal error; and the last lines, for when the
// process dies. It is safe for concurrent use.
type stderrLog struct {
	// mu guards every field.
	mu     sync.Mutex
	lines  int64
	groups map[string]*example // "LEVEL message" -> count and first line
	panics []string            // up to keepPanics
	panicN int64
	tail   []string // the last tailKeep lines
}

const (
	keepPanics = 20
	tailKeep   = 30
)

func newStderrLog() *stderrLog { return &stderrLog{groups: map[string]*example{}} }

// read reads r to its end, copying each line to copyTo.
func (l *stderrLog) read(r io.Reader, copyTo io.Writer) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		io.WriteString(copyTo, line+"\n")
		l.add(line)
	}
	io.Copy(io.Discard, r) // a line too long for the scanner: keep the pipe flowing
}

func (l *stderrLog) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines++
	l.tail = append(l.tail, line)
	if len(l.tail) > 2*tailKeep {
		l.tail = append(l.tail[:0], l.tail[len(l.tail)-tailKeep:]...)
	}
	lower := strings.ToLower(line)
	if strings.Contains(lower, "panic") || strings.Contains(lower, "data race") || strings.Contains(lower, "fatal error") {
		l.panicN++
		if len(l.panics) < keepPanics {
			l.panics = append(l.panics, line)
		}
	}
	level, msg := logField(line, "level"), logField(line, "msg")
	// The balancer's throttled lines say how many it left out: the same
	// line still.
	msg, _, _ = strings.Cut(msg, " (and ")
	var key string
	switch {
	case level == "WARN" || level == "ERROR":
		key = level + " " + foldDigits(msg)
	case level == "":
		key = "(not a log line) " + foldDigits(line[:min(len(line), 120)])
	default:
		return
	}
	e := l.groups[key]
	if e == nil {
		e = &example{first: line}
		l.groups[key] = e
	}
	e.n++
}

func (l *stderrLog) tailText() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.tail
	if len(t) > tailKeep {
		t = t[len(t)-tailKeep:]
	}
	return strings.Join(t, "\n")
}

// logField returns the value of key in a slog text line: bare, or quoted
// (unquoted then).
func logField(line, key string) string {
	i := 0
	for {
		j := strings.Index(line[i:], key+"=")
		if j < 0 {
			return ""
		}
		i += j
		if i == 0 || line[i-1] == ' ' {
			break
		}
		i += len(key)
	}
	v := line[i+len(key)+1:]
	if !strings.HasPrefix(v, `"`) {
		if k := strings.IndexByte(v, ' '); k >= 0 {
			v = v[:k]
		}
		return v
	}
	var b strings.Builder
	for k := 1; k < len(v); k++ {
		switch c := v[k]; c {
		case '"':
			return b.String()
		case '\\':
			if k+1 < len(v) {
				k++
				switch v[k] {
				case 'n':
					b.WriteByte('\n')
				case 't':
					b.WriteByte('\t')
				default:
					b.WriteByte(v[k])
				}
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// foldDigits replaces every run of digits by "N" and cuts the result at
// 160 bytes, so that lines differing only in ids, ports and counts group.
func foldDigits(s string) string {
	var b strings.Builder
	digits := false
	for i := 0; i < len(s) && b.Len() < 160; i++ {
		c := s[i]
		if c >= '0' && c <= '9' {
			if !digits {
				b.WriteByte('N')
			}
			digits = true
			continue
		}
		digits = false
		b.WriteByte(c)
	}
	return b.String()
}
