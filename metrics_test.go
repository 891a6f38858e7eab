package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
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
// labels, parsable values, counters not negative, no series twice, and
// each histogram series (one per set of labels besides le) with buckets
// cumulative and ending in +Inf equal to its _count. It returns the
// samples.
func checkExposition(t *testing.T, text string) map[string]float64 {
	t.Helper()
	types := map[string]string{}
	samples := map[string]float64{}
	var family string
	lastBucket := map[string]float64{} // by histogram series
	infBucket := map[string]float64{}
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
			series, le := base, ""
			for rest := labels; rest != ""; {
				lm := labelPair.FindStringSubmatch(rest)
				if lm == nil {
					fail("malformed labels " + rest)
				}
				rest = rest[len(lm[0]):]
				if lm[1] == "le" {
					le = lm[2]
				} else {
					series += "," + lm[1] + "=" + lm[2]
				}
			}
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				fail("bad value")
			}
			if typ == "counter" && v < 0 {
				fail("negative counter")
			}
			if typ == "histogram" {
				switch {
				case strings.HasSuffix(name, "_bucket"):
					if le == "" {
						fail("bucket without le")
					}
					if v < lastBucket[series] {
						fail("bucket counts not cumulative")
					}
					lastBucket[series] = v
					if le == "+Inf" {
						infBucket[series] = v
					}
				case le != "":
					fail("le outside a bucket")
				case strings.HasSuffix(name, "_count"):
					if inf, ok := infBucket[series]; !ok || inf != v {
						fail(fmt.Sprintf("count %v, +Inf bucket %v (present %v)", v, inf, ok))
					}
					delete(infBucket, series)
				}
			}
			key := name + "{" + labels + "}"
			if _, dup := samples[key]; dup {
				fail("series written twice")
			}
			samples[key] = v
		}
	}
	for series := range infBucket {
		t.Fatalf("histogram %s has buckets but no _count", series)
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
		`stdlb_requests_total{backend="` + a.URL + `",code="200"}`:                            2,
		`stdlb_requests_total{backend="",code="429"}`:                                         1,
		`stdlb_request_duration_seconds_count{answer="proxied"}`:                              2,
		`stdlb_request_duration_seconds_count{answer="refused"}`:                              1,
		`stdlb_ratelimit_decisions_total{decision="admitted"}`:                                2,
		`stdlb_ratelimit_decisions_total{decision="rejected"}`:                                1,
		`stdlb_ratelimit_clients{}`:                                                           1,
		`stdlb_backend_up{backend="` + a.URL + `"}`:                                           1,
		`stdlb_backend_in_flight{backend="` + a.URL + `"}`:                                    0,
		`stdlb_request_duration_seconds_bucket{answer="proxied",le="+Inf"}`:                   2,
		`stdlb_health_checks_total{backend="` + a.URL + `",result="fail"}`:                    0,
		`stdlb_build_info{version="` + version() + `",goversion="` + runtime.Version() + `"}`: 1,
		`stdlb_backend_request_duration_seconds_count{backend="` + a.URL + `"}`:               2,
		`stdlb_backend_received_bytes_total{backend="` + a.URL + `"}`:                         float64(2 * len("hello from a")),
		`stdlb_backend_sent_bytes_total{backend="` + a.URL + `"}`:                             0,
		`stdlb_backend_retries_total{backend="` + a.URL + `"}`:                                0,
		`stdlb_backend_state_changes_total{backend="` + a.URL + `"}`:                          0,
		`stdlb_config_reloads_total{result="success"}`:                                        0,
	}
	for k, v := range want {
		if got, ok := s[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	// The three requests came on at least one connection; how many the
	// client kept open is its business.
	if n := s["stdlb_client_connections_accepted_total{}"]; n < 1 || s["stdlb_client_connections{}"] > n {
		t.Errorf("client connections: %v accepted, %v open", n, s["stdlb_client_connections{}"])
	}
	if s["go_goroutines{}"] < 1 {
		t.Error("no go_goroutines")
	}
}

func TestMetrics_CountReloadsByResult(t *testing.T) {
	a := backendNamed(t, "a")
	path := filepath.Join(t.TempDir(), "config.json")
	writeConfig(t, path, "", a.URL)
	r := startApp(t, path)
	metrics := func() map[string]float64 {
		var sb strings.Builder
		r.writeMetrics(&sb)
		return checkExposition(t, sb.String())
	}
	started := metrics()["stdlb_config_last_reload_success_timestamp_seconds{}"]
	if now := float64(time.Now().Unix()); started < now-60 || started > now {
		t.Fatalf("last successful load %v, want the start, about %v", started, now)
	}

	r.hup <- os.Interrupt // the same file: a successful reload
	waitUntil(t, "the reload", func() bool { return metrics()[`stdlb_config_reloads_total{result="success"}`] == 1 })
	os.WriteFile(path, []byte(`{"retries": -1}`), 0o644)
	r.hup <- os.Interrupt
	waitUntil(t, "the rejected reload", func() bool { return metrics()[`stdlb_config_reloads_total{result="failure"}`] == 1 })
	m := metrics()
	if m[`stdlb_config_reloads_total{result="success"}`] != 1 || m["stdlb_config_last_reload_success_timestamp_seconds{}"] < started {
		t.Fatalf("after one good and one bad reload: %v", m)
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
