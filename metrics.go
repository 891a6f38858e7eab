package main

import (
	"bufio"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// promWriter writes the Prometheus text exposition format (version 0.0.4):
// a HELP and a TYPE line before each family, then its samples.
type promWriter struct{ w *bufio.Writer }

func (p promWriter) family(name, typ, help string) {
	p.w.WriteString("# HELP " + name + " " + escapeHelp(help) + "\n# TYPE " + name + " " + typ + "\n")
}

// sample writes one sample; labels alternate name and value.
func (p promWriter) sample(name string, value float64, labels ...string) {
	p.w.WriteString(name)
	if len(labels) > 0 {
		p.w.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				p.w.WriteByte(',')
			}
			p.w.WriteString(labels[i] + `="` + escapeLabel(labels[i+1]) + `"`)
		}
		p.w.WriteByte('}')
	}
	p.w.WriteByte(' ')
	p.w.WriteString(formatValue(value))
	p.w.WriteByte('\n')
}

// escapeLabel escapes a label value as the format requires: backslash,
// double quote and line feed.
func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

// escapeHelp escapes HELP text: backslash and line feed.
func escapeHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}

func formatValue(v float64) string {
	switch {
	case v > 1e300:
		return "+Inf"
	case v == float64(int64(v)):
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// serveMetrics answers GET /metrics.
func (a *app) serveMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	a.writeMetrics(w)
}

func (a *app) writeMetrics(out io.Writer) {
	bw := bufio.NewWriter(out)
	defer bw.Flush()
	p := promWriter{bw}
	m := a.bal.Metrics()
	st := a.limit.limiter.Stats()

	p.family("stdlb_requests_total", "counter",
		"Requests answered, by backend and status code. backend is empty for answers the balancer made itself (429, 503); code 499 means the client went away first.")
	for _, be := range m.Backends {
		for _, code := range slices.Sorted(maps.Keys(be.ByStatus)) {
			p.sample("stdlb_requests_total", float64(be.ByStatus[code]), "backend", be.Name, "code", strconv.Itoa(code))
		}
	}
	for _, code := range slices.Sorted(maps.Keys(m.Local)) {
		p.sample("stdlb_requests_total", float64(m.Local[code]), "backend", "", "code", strconv.Itoa(code))
	}

	p.family("stdlb_request_duration_seconds", "histogram", "Time from a request's arrival to the end of its answer.")
	for i, le := range m.Duration.Bounds {
		p.sample("stdlb_request_duration_seconds_bucket", float64(m.Duration.Cumulative[i]), "le", formatValue(le))
	}
	p.sample("stdlb_request_duration_seconds_sum", m.Duration.Sum)
	p.sample("stdlb_request_duration_seconds_count", float64(m.Duration.Count))

	p.family("stdlb_retries_total", "counter", "Requests sent again to another backend after a failure.")
	p.sample("stdlb_retries_total", float64(m.Retries))

	p.family("stdlb_backend_up", "gauge", "1 while the backend is in rotation, 0 while it is marked down.")
	for _, be := range m.Backends {
		p.sample("stdlb_backend_up", boolValue(be.Healthy), "backend", be.Name)
	}
	p.family("stdlb_backend_info", "gauge", "Always 1: the URL of each backend, by the name the other families use.")
	for _, be := range m.Backends {
		p.sample("stdlb_backend_info", 1, "backend", be.Name, "url", be.URL)
	}
	p.family("stdlb_backend_in_flight", "gauge", "Requests being proxied to the backend now.")
	for _, be := range m.Backends {
		p.sample("stdlb_backend_in_flight", float64(be.InFlight), "backend", be.Name)
	}
	p.family("stdlb_backend_failures_total", "counter",
		"Attempts that failed at the backend: refused, reset, timed out, or broken off mid-answer.")
	for _, be := range m.Backends {
		p.sample("stdlb_backend_failures_total", float64(be.Failures), "backend", be.Name)
	}
	p.family("stdlb_health_checks_total", "counter", "Active health checks, by result.")
	for _, be := range m.Backends {
		p.sample("stdlb_health_checks_total", float64(be.ProbesPassed), "backend", be.Name, "result", "pass")
		p.sample("stdlb_health_checks_total", float64(be.ProbesFailed), "backend", be.Name, "result", "fail")
	}
	p.family("stdlb_upgraded_connections", "gauge", "Upgraded (WebSocket) connections open now.")
	p.sample("stdlb_upgraded_connections", float64(m.Upgrades))

	p.family("stdlb_ratelimit_decisions_total", "counter", "Rate-limit decisions, by outcome.")
	p.sample("stdlb_ratelimit_decisions_total", float64(st.Admitted), "decision", "admitted")
	p.sample("stdlb_ratelimit_decisions_total", float64(st.Rejected), "decision", "rejected")
	p.family("stdlb_ratelimit_clients", "gauge", "Clients with a bucket in the rate limiter's table now.")
	p.sample("stdlb_ratelimit_clients", float64(st.Clients))
	p.family("stdlb_ratelimit_max_clients", "gauge", "The bound on stdlb_ratelimit_clients (rate_limit.max_clients).")
	p.sample("stdlb_ratelimit_max_clients", float64(st.MaxClients))
	p.family("stdlb_ratelimit_evictions_total", "counter", "Idle full buckets evicted from the table.")
	p.sample("stdlb_ratelimit_evictions_total", float64(st.Evictions))
	p.family("stdlb_ratelimit_overflow_total", "counter",
		"Decisions made by the shared overflow bucket because the table was full.")
	p.sample("stdlb_ratelimit_overflow_total", float64(st.Overflowed))

	p.family("stdlb_start_time_seconds", "gauge", "When the balancer started, in seconds since the Unix epoch.")
	p.sample("stdlb_start_time_seconds", float64(a.bal.Started().Unix()))
}
