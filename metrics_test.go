package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var (
	helpLine   = regexp.MustCompile(`^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$`)
	typeLine   = regexp.MustCompile(`^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$`)
	sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$`)
	labelPair  = regexp.MustCompile(`^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\[\\"n])*)"(,|$)`)
)

// checkExposition validates Prometheus text format line by line: HELP and
// TYPE before a family's samples, sample names belonging to the declared
// family (with _bucket/_sum/_count for histograms), well-formed and escaped
// labels, parsable values, counters not negative, histogram buckets
// cumulative and ending in +Inf equal to _count. It returns the samples.
func checkExposition(t *testing.T, text string) map[string]float64 {
	t.Helper()
	types := map[string]string{}
	samples := map[string]float64{}
	var family string
	var lastBucket float64
	for n, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		fail := func(why string) { t.Fatalf("line %d %q: %s", n+1, line, why) }
		switch {
		case strings.HasPrefix(line, "# HELP "):
			m := helpLine.FindStringSubmatch(line)
			if m == nil || m[2] == "" {
				fail("malformed HELP")
			}
			family = m[1]
		case strings.HasPrefix(line, "# TYPE "):
			m := typeLine.FindStringSubmatch(line)
			if m == nil || m[1] != family {
				fail("TYPE must follow its family's HELP")
			}
			if _, dup := types[family]; dup {
				fail("family declared twice")
			}
			types[family] = m[2]
			lastBucket = 0
		default:
			m := sampleLine.FindStringSubmatch(line)
			if m == nil {
				fail("not a sample")
			}
			name, labels, value := m[1], m[3], m[4]
			typ := types[family]
			base := name
			if typ == "histogram" {
				base = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
			}
			if base != family {
				fail(fmt.Sprintf("sample of %s under family %s", name, family))
			}
			if typ == "counter" && !strings.HasSuffix(name, "_total") {
				fail("counter without _total")
			}
			for rest := labels; rest != ""; {
				lm := labelPair.FindStringSubmatch(rest)
				if lm == nil {
					fail("malformed labels " + rest)
				}
				rest = rest[len(lm[0]):]
			}
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				fail("bad value")
			}
			if typ == "counter" && v < 0 {
				fail("negative counter")
			}
			if strings.HasSuffix(name, "_bucket") {
				if v < lastBucket {
					fail("bucket counts not cumulative")
				}
				lastBucket = v
			}
			samples[name+"{"+labels+"}"] = v
		}
	}
	for fam, typ := range types {
		if typ == "histogram" && samples[fam+`_bucket{le="+Inf"}`] != samples[fam+"_count{}"] {
			t.Fatalf("%s: +Inf bucket %v != count %v", fam, samples[fam+`_bucket{le="+Inf"}`], samples[fam+"_count{}"])
		}
	}
	return samples
}

func TestMetrics_ExpositionFormat(t *testing.T) {
	a := backendNamed(t, "a")
	path := filepath.Join(t.TempDir(), "config.json")
	writeConfig(t, path, `, "rate_limit": {"enabled": true, "capacity": 2, "refill_rate": 0.001}`, a.URL)
	r := startApp(t, path)
	for range 3 { // two admitted, one limited
		resp, err := http.Get("http://" + r.Addr() + "/x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	resp, err := http.Get("http://" + r.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("Content-Type %q", ct)
	}
	body, _ := io.ReadAll(resp.Body)
	s := checkExposition(t, string(body))
	want := map[string]float64{
		`stdlb_requests_total{backend="` + a.URL + `",code="200"}`:         2,
		`stdlb_requests_total{backend="",code="429"}`:                      1,
		`stdlb_request_duration_seconds_count{}`:                           3,
		`stdlb_ratelimit_decisions_total{decision="admitted"}`:             2,
		`stdlb_ratelimit_decisions_total{decision="rejected"}`:             1,
		`stdlb_ratelimit_clients{}`:                                        1,
		`stdlb_backend_up{backend="` + a.URL + `"}`:                        1,
		`stdlb_backend_in_flight{backend="` + a.URL + `"}`:                 0,
		`stdlb_request_duration_seconds_bucket{le="+Inf"}`:                 3,
		`stdlb_health_checks_total{backend="` + a.URL + `",result="fail"}`: 0,
	}
	for k, v := range want {
		if got, ok := s[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
}

func TestPromWriter_EscapesLabelsAndHelp(t *testing.T) {
	var sb strings.Builder
	bw := bufio.NewWriter(&sb)
	p := promWriter{bw}
	p.family("x_total", "counter", "a \\ help\nline")
	p.sample("x_total", 3, "path", "a\"b\\c\nd")
	p.sample("x_total", math.Inf(1), "path", "")
	bw.Flush()
	want := "# HELP x_total a \\\\ help\\nline\n# TYPE x_total counter\n" +
		"x_total{path=\"a\\\"b\\\\c\\nd\"} 3\nx_total{path=\"\"} +Inf\n"
	if sb.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", sb.String(), want)
	}
	checkExposition(t, sb.String())
}
