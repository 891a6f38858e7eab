package main

import (
	"strings"
	"testing"
	"time"

	"stdlb/lb"
)

func TestStatusPage_RendersEachBackendAndTheTotals(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	report := statusReport{
		Version: "v1.2.3", Algorithm: "least-connections", UptimeSeconds: 90061, Now: now,
		Backends: []lb.BackendStatus{
			{Name: "b1", URL: "http://10.0.0.1:80", Healthy: true, Weight: 3, InFlight: 7, Requests: 1200, Failures: 2,
				StateSince: now.Add(-3 * time.Hour), LastCheck: now.Add(-time.Second),
				BackendTraffic: lb.BackendTraffic{Rates: lb.Rates{WindowSeconds: 60, RequestsPerSecond: 123.4,
					Responses5xxPerSecond: 12.5, LatencyP50: 0.000778, LatencyP99: 0.0475}}},
			{Name: "http://10.0.0.2:80", URL: "http://10.0.0.2:80", Healthy: false, Weight: 1, Requests: 5, Failures: 5,
				StateSince: now.Add(-133 * time.Second), LastCheck: now.Add(-2 * time.Second),
				LastError: `/healthz answered 503 <script>alert("x")</script>`},
		},
		Limiter: limiterStatus{Enabled: true, Clients: 42, MaxClients: 1000000, Admitted: 900, Rejected: 17,
			WindowSeconds: 60, AdmittedPerSecond: 15, RejectedPerSecond: 0.28},
		Traffic: lb.Traffic{
			Total:   lb.Rates{WindowSeconds: 60, RequestsPerSecond: 140, Responses5xxPerSecond: 13, LatencyP50: 0.0009, LatencyP99: 31},
			Refused: lb.Rates{WindowSeconds: 60, RequestsPerSecond: 16.6, Responses5xxPerSecond: 0.5},
		},
	}
	var sb strings.Builder
	if err := newPageTemplate().Execute(&sb, report); err != nil {
		t.Fatal(err)
	}
	page := sb.String()
	for _, want := range []string{
		`version v1.2.3 · least-connections · up 1d 1h 1m`,
		`<span class="sw c0"></span>b1<span class="addr">http://10.0.0.1:80</span></span></td>`,
		`<span class="up">● up 3h0m</span>`,
		`<td data-label="req/s">123</td>`,
		`<td data-label="5xx/s" class="bad">13</td>`, // 12.5 rounds up, as in the page's script
		`<td data-label="p50">0.78 ms</td><td data-label="p99">48 ms</td>`,
		`<td data-label="In flight">7</td><td data-label="Failures">2</td><td data-label="Weight">3</td>`,
		`<td data-label="Last check" class="check">1s ago</td>`,
		`<span class="sw c1"></span>http://10.0.0.2:80</span></td>`, // no name: the URL once
		`<span class="down">● down 2m13s: /healthz answered 503 &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;</span>`,
		`<td data-label="req/s">–</td>`, // no window for the second backend: no rate yet
		`<td data-label="p50">–</td>`,
		`<td data-label="req/s">17</td>`, // answered by the balancer
		`<td data-label="5xx/s" class="bad">0.5</td>`,
		`<td data-label="req/s">140</td>`, // total
		`<td data-label="p99">≥ 30 s</td>`,
		`<td data-label="In flight">7</td><td data-label="Failures">7</td>`,
		`over the last 60 s`,
		`<b id="admitted">15</b><span>admitted/s</span>`,
		`<b id="rejected">0.3</b><span>rejected/s (429)</span>`,
		`<b id="clients">42</b><span>clients tracked of 1,000,000</span>`,
		`name="viewport"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, `<script>alert`) {
		t.Error("a backend's error text reached the page unescaped")
	}
	for _, external := range []string{"http://", "https://"} {
		for _, attr := range []string{`src="` + external, `href="` + external, `url(` + external, `@import`} {
			if strings.Contains(page, attr) {
				t.Errorf("page loads an external asset (%s)", attr)
			}
		}
	}
	// The script builds the page from /status, whose strings come from
	// backends and clients: it must never parse them as markup.
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"} {
		if strings.Contains(pageHTML, sink) {
			t.Errorf("page script uses %s", sink)
		}
	}
}

func TestStatusPage_FormatsForPeople(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{fmtRate(0, 5), "–"},
		{fmtRate(60, 0), "0"},
		{fmtRate(60, 0.004), "<0.01"},
		{fmtRate(60, 0.0167), "0.02"},
		{fmtRate(60, 9.94), "9.9"},
		{fmtRate(60, 1234.5), "1235"},
		{fmtLatency(0), "–"},
		{fmtLatency(0.000123), "0.12 ms"},
		{fmtLatency(0.0045), "4.5 ms"},
		{fmtLatency(0.2504), "250 ms"},
		{fmtLatency(1.5), "1.50 s"},
		{fmtLatency(12.4), "12 s"},
		{fmtLatency(30), "≥ 30 s"},
		{fmtCount(0), "0"},
		{fmtCount(999), "999"},
		{fmtCount(1000), "1,000"},
		{fmtCount(-1234567), "-1,234,567"},
		{fmtSince(-time.Second), "0s"},
		{fmtSince(45 * time.Second), "45s"},
		{fmtSince(133 * time.Second), "2m13s"},
		{fmtSince(5*time.Hour + 12*time.Minute + 9*time.Second), "5h12m"},
		{fmtSince(76 * time.Hour), "3d4h"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
