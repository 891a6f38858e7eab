package main

import (
	"strings"
	"testing"
	"time"

	"stdlb/lb"
)

func TestStatusPage_RendersEachBackend(t *testing.T) {
	report := statusReport{
		Version: "v1.2.3", Algorithm: "least-connections", UptimeSeconds: 90061,
		Backends: []lb.BackendStatus{
			{Name: "b1", URL: "http://10.0.0.1:80", Healthy: true, Weight: 3, InFlight: 7, Requests: 1200, Failures: 2},
			{Name: "http://10.0.0.2:80", URL: "http://10.0.0.2:80", Healthy: false, Weight: 1, Requests: 5, Failures: 5,
				LastError: `/healthz answered 503 <script>alert("x")</script>`, LastCheck: time.Now()},
		},
		Limiter: limiterStatus{Enabled: true, Clients: 42, MaxClients: 1000, Admitted: 900, Rejected: 17},
	}
	var sb strings.Builder
	if err := newPageTemplate().Execute(&sb, report); err != nil {
		t.Fatal(err)
	}
	page := sb.String()
	for _, want := range []string{
		`version v1.2.3 · least-connections · up 1d 1h 1m`,
		`<div class="card up" data-url="http://10.0.0.1:80">`,
		`<div class="url">b1</div><div class="addr">http://10.0.0.1:80</div>`,
		`<div class="url">http://10.0.0.2:80</div>
`, // no name: the URL once
		`<dt>in flight</dt><dd class="inflight">7</dd>`,
		`<dt>requests</dt><dd class="requests">1200</dd>`,
		`<dt>weight</dt><dd>3</dd>`,
		`<div class="card down" data-url="http://10.0.0.2:80">`,
		`<div class="state">down</div>`,
		`last check: /healthz answered 503 &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;`,
		`on · clients tracked: 42 of at most 1000 · admitted: 900 · rejected: 17`,
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
		for _, attr := range []string{`src="` + external, `href="` + external} {
			if strings.Contains(page, attr) {
				t.Errorf("page loads an external asset (%s)", attr)
			}
		}
	}
}
