package main

import (
	"fmt"
	"math"
	"strings"
	"text/template"
)

// Chart geometry, in SVG user units (pixels when embedded at 1:1).
const (
	chartWidth = 760
	labelWidth = 220 // target names, right-aligned at labelWidth-10
	barMax     = 440 // the longest bar; values are written after it
	rowHeight  = 24
	barHeight  = 16
)

// renderChart draws one run as an SVG bar chart with two panels,
// throughput and CPU per request, one bar per target (medians over the
// rounds). It is plain SVG 1.1: no script, no external font or image, so
// a README or DESIGN can embed it as an image and it renders the same on
// GitHub. subtitle says how and where the run was measured.
func renderChart(targets []*target, subtitle string) string {
	var b strings.Builder
	y := 0.0
	text := func(x, y float64, class, anchor, s string) {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" class="%s" text-anchor="%s">%s</text>`+"\n", x, y, class, anchor, template.HTMLEscapeString(s))
	}
	panel := func(title string, value func(*target) float64, label func(float64) string) {
		y += 28
		text(10, y, "h", "start", title)
		y += 10
		top := 0.0
		for _, t := range targets {
			if v := value(t); !math.IsNaN(v) {
				top = max(top, v)
			}
		}
		for _, t := range targets {
			v := value(t)
			text(labelWidth-10, y+barHeight-4, "n", "end", t.name)
			if math.IsNaN(v) || top <= 0 {
				text(labelWidth, y+barHeight-4, "v", "start", "not measured")
			} else {
				w := barMax * v / top
				fmt.Fprintf(&b, `<rect class="bar" x="%d" y="%.0f" width="%.1f" height="%d" fill="%s"/>`+"\n",
					labelWidth, y, w, barHeight, barColor(t.name))
				text(labelWidth+w+6, y+barHeight-4, "v", "start", label(v))
			}
			y += rowHeight
		}
	}
	y = 22
	text(10, y, "t", "start", "make bench: stdlb against the backend alone, nginx and HAProxy")
	y += 18
	text(10, y, "s", "start", subtitle)
	panel("Throughput, requests per second (more is better)",
		func(t *target) float64 { return t.median(func(f figures) float64 { return f.rps }) },
		func(v float64) string { return thousands(v) })
	panel("CPU per request, microseconds of the target's processes (less is better)",
		func(t *target) float64 { return t.median(func(f figures) float64 { return f.cpuPer1k }) },
		func(v float64) string { return fmt.Sprintf("%.1f µs", v) })
	y += 14
	text(10, y, "s", "start", "Medians over the rounds; direct is the backend's own CPU, the floor a proxy adds to.")
	y += 16
	text(10, y, "s", "start", "Load generator, backends and proxies share the machine: compare within one run.")
	height := y + 10

	var out strings.Builder
	fmt.Fprintf(&out, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%.0f" viewBox="0 0 %d %.0f" role="img">`+"\n",
		chartWidth, height, chartWidth, height)
	out.WriteString(`<style>text{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;font-size:12px;fill:#1d1d1f}` +
		`.t{font-size:15px;font-weight:700}.h{font-size:13px;font-weight:600}.s{fill:#555}.v{fill:#333}</style>` + "\n")
	fmt.Fprintf(&out, `<rect width="%d" height="%.0f" fill="#fff"/>`+"\n", chartWidth, height)
	out.WriteString(b.String())
	out.WriteString("</svg>\n")
	return out.String()
}

// barColor groups the targets: the balancer in blue, the references in
// their own colours (lighter for a variant: stdlb +tls, nginx +tls), the
// backend alone in grey.
func barColor(name string) string {
	switch {
	case strings.HasPrefix(name, "stdlb +"):
		return "#7aa7f7"
	case strings.HasPrefix(name, "stdlb"):
		return "#2563eb"
	case name == "nginx":
		return "#0e9f6e"
	case strings.HasPrefix(name, "nginx +"):
		return "#6fcfa5"
	case name == "haproxy":
		return "#e07b00"
	}
	return "#9a9a9a"
}

// thousands writes v rounded, with commas between thousands: 16,655.
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
