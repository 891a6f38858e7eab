package main

import (
	_ "embed"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"strconv"
	"time"
)

// pageHTML is the status page: one self-contained file, no external
// assets. The server renders the table once; the page's script then
// refreshes it and draws the charts from /status?history=1 every two
// seconds, with the same formatting rules as the functions below.
//
//go:embed page.html
var pageHTML string

// newPageTemplate parses the status page. It is built per app rather than
// as a package variable so nothing global is shared between instances.
func newPageTemplate() *template.Template {
	return template.Must(template.New("page").Funcs(template.FuncMap{
		"uptime": func(s int64) string {
			d := time.Duration(s) * time.Second
			if d >= 24*time.Hour {
				return fmt.Sprintf("%dd %dh %dm", d/(24*time.Hour), d%(24*time.Hour)/time.Hour, d%time.Hour/time.Minute)
			}
			return fmt.Sprintf("%dh %dm", d/time.Hour, d%time.Hour/time.Minute)
		},
		"rate":    fmtRate,
		"latency": fmtLatency,
		"since":   func(t, now time.Time) string { return fmtSince(now.Sub(t)) },
		"mod":     func(a, b int) int { return a % b },
		"count":   fmtCount,
	}).Parse(pageHTML))
}

// fmtRate writes a rate per second for people: 0, "<0.01", two decimals
// below 0.1 (a 5xx every minute is 0.02, not nothing), one below 10.
// Without a window there is no rate yet: "–".
func fmtRate(window, v float64) string {
	switch {
	case window <= 0:
		return "–"
	case v <= 0:
		return "0"
	case v < 0.01:
		return "<0.01"
	case v < 0.1:
		return fmt.Sprintf("%.2f", v)
	case v < 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", math.Round(v)) // halves up, as the page's Math.round does
}

// fmtCount writes n with commas between thousands, as the page's
// toLocaleString("en-US") does: 1,000,000.
func fmtCount(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// fmtLatency writes seconds as milliseconds or seconds, two or three
// significant digits; 0 (no answers) is "–", and the top bucket's bound
// says "≥ 30 s", all the histogram knows.
func fmtLatency(s float64) string {
	ms := s * 1000
	switch {
	case s <= 0:
		return "–"
	case s >= 30:
		return "≥ 30 s"
	case ms < 1:
		return fmt.Sprintf("%.2f ms", ms)
	case ms < 10:
		return fmt.Sprintf("%.1f ms", ms)
	case ms < 1000:
		return fmt.Sprintf("%.0f ms", math.Round(ms))
	case s < 10:
		return fmt.Sprintf("%.2f s", s)
	}
	return fmt.Sprintf("%.0f s", math.Round(s))
}

// fmtSince writes a time span in its two largest units: 45s, 2m13s,
// 5h12m, 3d4h.
func fmtSince(d time.Duration) string {
	s := int64(max(d, 0) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%dh", s/86400, s%86400/3600)
}

// servePage answers GET / on the admin listener.
func (a *app) servePage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
	if err := a.page.Execute(w, a.status()); err != nil {
		a.log.Warn("status page: " + err.Error())
	}
}
