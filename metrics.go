package main

import (
	"bufio"
	"io"
	"maps"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"stdlb/lb"
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

// histogram writes a histogram's samples (buckets, sum, count) with the
// given labels, alternating name and value, ahead of le.
func (p promWriter) histogram(name string, h lb.HistogramSnapshot, labels ...string) {
	for i, le := range h.Bounds {
		p.sample(name+"_bucket", float64(h.Cumulative[i]), append(labels[:len(labels):len(labels)], "le", formatValue(le))...)
	}
	p.sample(name+"_sum", h.Sum, labels...)
	p.sample(name+"_count", float64(h.Count), labels...)
}

// perBackend writes a family with one sample per backend.
func (p promWriter) perBackend(bs []lb.BackendMetrics, name, typ, help string, value func(lb.BackendMetrics) float64) {
	p.family(name, typ, help)
	for _, be := range bs {
		p.sample(name, value(be), "backend", be.Name)
	}
}

// reloadCounts counts configuration reloads by result, for /metrics.
type reloadCounts struct {
	ok, failed atomic.Uint64
	// lastOK is when the configuration in use was loaded, at start or by
	// the last successful reload: Unix seconds.
	lastOK atomic.Int64
}

func (r *reloadCounts) succeeded(now time.Time) {
	r.ok.Add(1)
	r.lastOK.Store(now.Unix())
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

	p.family("stdlb_build_info", "gauge", "Always 1; the labels say which build is running.")
	p.sample("stdlb_build_info", 1, "version", version(), "goversion", runtime.Version())

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

	p.family("stdlb_request_duration_seconds", "histogram",
		"Time from a request's arrival to the end of its answer. answer is proxied for requests that went to a backend (its 502 and 504 included), refused for those the balancer answered itself (429, 503, 400).")
	p.histogram("stdlb_request_duration_seconds", m.Duration, "answer", "proxied")
	p.histogram("stdlb_request_duration_seconds", m.Refused, "answer", "refused")
	p.family("stdlb_backend_request_duration_seconds", "histogram",
		"Time from sending a request to the backend (its last attempt, after retries) to the end of the answer.")
	for _, be := range m.Backends {
		p.histogram("stdlb_backend_request_duration_seconds", be.Duration, "backend", be.Name)
	}

	p.family("stdlb_retries_total", "counter", "Requests sent again to another backend after a failure.")
	p.sample("stdlb_retries_total", float64(m.Retries))
	p.perBackend(m.Backends, "stdlb_backend_retries_total", "counter", "Requests that failed at the backend and were sent again to another.",
		func(be lb.BackendMetrics) float64 { return float64(be.Retries) })

	p.perBackend(m.Backends, "stdlb_backend_up", "gauge", "1 while the backend is in rotation, 0 while it is marked down.",
		func(be lb.BackendMetrics) float64 { return boolValue(be.Healthy) })
	p.family("stdlb_backend_info", "gauge", "Always 1: the URL of each backend, by the name the other families use.")
	for _, be := range m.Backends {
		p.sample("stdlb_backend_info", 1, "backend", be.Name, "url", be.URL)
	}
	p.perBackend(m.Backends, "stdlb_backend_state_changes_total", "counter", "Times the backend was marked down or came back up.",
		func(be lb.BackendMetrics) float64 { return float64(be.StateChanges) })
	p.perBackend(m.Backends, "stdlb_backend_last_state_change_timestamp_seconds", "gauge",
		"When the backend last went down or came up, in seconds since the Unix epoch; when it joined the configuration if it never changed.",
		func(be lb.BackendMetrics) float64 { return unixSeconds(be.StateSince) })
	p.perBackend(m.Backends, "stdlb_backend_in_flight", "gauge", "Requests being proxied to the backend now.",
		func(be lb.BackendMetrics) float64 { return float64(be.InFlight) })
	p.perBackend(m.Backends, "stdlb_backend_failures_total", "counter",
		"Attempts that failed at the backend: refused, reset, timed out, or broken off mid-answer.",
		func(be lb.BackendMetrics) float64 { return float64(be.Failures) })
	p.perBackend(m.Backends, "stdlb_backend_sent_bytes_total", "counter", "Request body bytes forwarded to the backend.",
		func(be lb.BackendMetrics) float64 { return float64(be.BytesSent) })
	p.perBackend(m.Backends, "stdlb_backend_received_bytes_total", "counter", "Response body bytes received from the backend and relayed to clients.",
		func(be lb.BackendMetrics) float64 { return float64(be.BytesReceived) })
	p.family("stdlb_health_checks_total", "counter", "Active health checks, by result.")
	for _, be := range m.Backends {
		p.sample("stdlb_health_checks_total", float64(be.ProbesPassed), "backend", be.Name, "result", "pass")
		p.sample("stdlb_health_checks_total", float64(be.ProbesFailed), "backend", be.Name, "result", "fail")
	}
	p.family("stdlb_upgraded_connections", "gauge", "Upgraded (WebSocket) connections open now.")
	p.sample("stdlb_upgraded_connections", float64(m.Upgrades))
	p.family("stdlb_client_connections", "gauge", "Client connections to the proxy listener open now.")
	p.sample("stdlb_client_connections", float64(a.conns.open.Load()))
	p.family("stdlb_client_connections_accepted_total", "counter", "Client connections accepted by the proxy listener.")
	p.sample("stdlb_client_connections_accepted_total", float64(a.conns.accepted.Load()))

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

	p.family("stdlb_config_reloads_total", "counter", "Configuration reloads (SIGHUP or POST /reload), by result; a failed one changes nothing.")
	p.sample("stdlb_config_reloads_total", float64(a.reloads.ok.Load()), "result", "success")
	p.sample("stdlb_config_reloads_total", float64(a.reloads.failed.Load()), "result", "failure")
	p.family("stdlb_config_last_reload_success_timestamp_seconds", "gauge",
		"When the configuration in use was loaded, at start or by the last successful reload, in seconds since the Unix epoch.")
	p.sample("stdlb_config_last_reload_success_timestamp_seconds", float64(a.reloads.lastOK.Load()))

	p.family("stdlb_start_time_seconds", "gauge", "When the balancer started, in seconds since the Unix epoch.")
	p.sample("stdlb_start_time_seconds", float64(a.bal.Started().Unix()))

	writeProcessMetrics(p)
	writeGoMetrics(p)
}

// unixSeconds is t in seconds since the Unix epoch, to the millisecond.
func unixSeconds(t time.Time) float64 { return float64(t.UnixMilli()) / 1e3 }
