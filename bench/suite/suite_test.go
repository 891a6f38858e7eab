package main

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// /proc/self/stat is the main thread's, which may be asleep while
	// another thread runs the test; this thread's is running as it reads.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b, err := os.ReadFile("/proc/thread-self/stat")
	if err != nil {
		t.Skip("no /proc:", err)
	}
	st, err := parseStat(b)
	if err != nil || st.pgrp != syscall.Getpgrp() || st.ticks < 0 || st.state != 'R' {
		t.Fatalf("parseStat(self) = %+v, %v; want pgrp %d, running", st, err, syscall.Getpgrp())
	}
	// A command name may hold spaces and parentheses.
	line := "42 (a) b (c) S 1 777 777 0 -1 4194560 100 0 0 0 25 17 0 0 20 0 1 0 5 0 0"
	if st, err := parseStat([]byte(line)); err != nil || st != (procStat{'S', 777, 42}) {
		t.Fatalf("parseStat(%q) = %+v, %v; want S, 777, 42", line, st, err)
	}
	if _, err := parseStat([]byte("42 (x) S 1")); err == nil {
		t.Fatal("short stat line accepted")
	}
}

func TestClockTicks(t *testing.T) {
	if hz := clockTicks(); hz < 1 || hz > 10_000 {
		t.Fatalf("clockTicks() = %d", hz)
	}
}

// TestProcs_CPUAndStopReachTheWholeGroup starts a shell that forks a busy
// child and a sleeper: the group's CPU must grow, and stopAll must end
// every process in the group, not just the shell.
func TestProcs_CPUAndStopReachTheWholeGroup(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	var ps procs
	t.Cleanup(ps.stopAll)
	p, err := ps.start(t.TempDir(), "busy", sh, "-c", "sleep 60 & while :; do :; done & wait")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ticks, err := cpuTicks(p.pid())
		if err != nil {
			t.Fatal(err)
		}
		if ticks > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the busy group used no CPU in 10s")
		}
		pollPause()
	}
	if n := groupSize(t, p.pid()); n < 3 {
		t.Fatalf("group %d has %d processes, want the shell and its two children", p.pid(), n)
	}
	ps.stopAll()
	if n := groupSize(t, p.pid()); n != 0 {
		t.Fatalf("%d processes of group %d survived stopAll", n, p.pid())
	}
}

// pollPause waits briefly while polling for CPU to accumulate.
func pollPause() { <-time.After(10 * time.Millisecond) }

func groupSize(t *testing.T, pgid int) int {
	t.Helper()
	n, _, err := scanGroup(pgid)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestWaitReady(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable) // backends not yet healthy
		}
	}))
	t.Cleanup(srv.Close)
	running := &proc{name: "up", exited: make(chan struct{})}
	if err := waitReady(t.Context(), running, srv.URL, 10*time.Second); err != nil {
		t.Fatalf("waitReady: %v", err)
	}

	gone := &proc{name: "gone", exited: make(chan struct{}), logPath: filepath.Join(t.TempDir(), "none")}
	close(gone.exited)
	err := waitReady(t.Context(), gone, "http://127.0.0.1:1/", 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "gone exited") {
		t.Fatalf("waitReady on an exited process = %v, want it to say so", err)
	}
}

// specConfig is config.json from SPEC.md: the suite may only write keys it
// has, because the balancer rejects unknown fields.
const specConfig = `{"listen": ":8080", "algorithm": "round-robin",
  "backends": [{"url": "http://127.0.0.1:9001", "weight": 1}],
  "health_check": {"path": "/healthz", "interval": "2s", "timeout": "1s", "healthy_threshold": 2, "unhealthy_threshold": 3},
  "retries": 2,
  "timeouts": {"read_header": "5s", "idle": "60s", "backend_dial": "2s", "backend_response": "30s", "shutdown": "15s"},
  "access_log": true,
  "rate_limit": {"enabled": true, "capacity": 100, "refill_rate": 50, "refill_interval": "100ms", "key_header": "X-API-Key",
    "trusted_proxies": ["127.0.0.1/32"], "clients_file": "clients.json", "max_clients": 1000000, "idle_timeout": "10m"},
  "admin": {"listen": "127.0.0.1:9090", "token_env": "LB_ADMIN_TOKEN"}}`

func TestStdlbConfig_UsesOnlySpecKeys(t *testing.T) {
	var spec map[string]any
	if err := json.Unmarshal([]byte(specConfig), &spec); err != nil {
		t.Fatal(err)
	}
	for _, limited := range []bool{false, true} {
		b, err := json.Marshal(stdlbConfig("/tmp/x", "lb", 8000, 8001, []int{9001, 9002}, limited))
		if err != nil {
			t.Fatal(err)
		}
		var ours map[string]any
		if err := json.Unmarshal(b, &ours); err != nil {
			t.Fatal(err)
		}
		checkKeys(t, "", ours, spec)
		rl := ours["rate_limit"].(map[string]any)
		if rl["enabled"] != limited || ours["access_log"] != limited || len(ours["backends"].([]any)) != 2 {
			t.Errorf("limited=%v: rate_limit %v, access_log %v", limited, rl, ours["access_log"])
		}
		if !strings.HasPrefix(ours["listen"].(string), "127.0.0.1:") {
			t.Errorf("listen %v is not loopback", ours["listen"])
		}
	}
}

func checkKeys(t *testing.T, path string, ours, spec map[string]any) {
	t.Helper()
	for k, v := range ours {
		sv, ok := spec[k]
		if !ok {
			t.Errorf("key %s%s is not in SPEC.md's config.json", path, k)
			continue
		}
		if om, ok := v.(map[string]any); ok {
			checkKeys(t, path+k+".", om, sv.(map[string]any))
		}
	}
}

// TestProxyConfigs_Valid checks the generated nginx and HAProxy configs
// with the programs' own syntax checks when they are installed.
func TestProxyConfigs_Valid(t *testing.T) {
	dir := t.TempDir()
	ng := nginxConfig(dir, 18080, []int{19001, 19002})
	ha := haproxyConfig(18081, []int{19001, 19002})
	for _, want := range []string{"keepalive 64;", "proxy_http_version 1.1;", `proxy_set_header Connection "";`,
		"listen 127.0.0.1:18080;", "server 127.0.0.1:19002;", "access_log off;", "worker_processes 2;"} {
		if !strings.Contains(ng, want) {
			t.Errorf("nginx config lacks %q", want)
		}
	}
	for _, want := range []string{"balance roundrobin", "http-reuse always", "nbthread 2", "bind 127.0.0.1:18081", "server b2 127.0.0.1:19002"} {
		if !strings.Contains(ha, want) {
			t.Errorf("haproxy config lacks %q", want)
		}
	}
	check := func(bin string, args ...string) {
		path, err := exec.LookPath(bin)
		if err != nil {
			t.Logf("%s not installed: syntax not checked", bin)
			return
		}
		if out, err := exec.Command(path, args...).CombinedOutput(); err != nil {
			t.Errorf("%s rejects the generated config: %v\n%s", bin, err, out)
		}
	}
	os.MkdirAll(filepath.Join(dir, "nginx-tmp"), 0o755)
	os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(ng), 0o644)
	os.WriteFile(filepath.Join(dir, "haproxy.cfg"), []byte(ha), 0o644)
	check("nginx", "-t", "-q", "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "err.log"))
	check("haproxy", "-c", "-q", "-f", filepath.Join(dir, "haproxy.cfg"))
}

func TestRenderTable(t *testing.T) {
	mk := func(name string, rps ...float64) *target {
		tg := &target{name: name}
		for _, r := range rps {
			tg.rounds = append(tg.rounds, figures{rps: r, p50: 1e6, p99: 5e6, cpuPer1k: 20})
		}
		return tg
	}
	direct, lb, ng := mk("direct (backend b1)", 100, 200, 100), mk("stdlb", 50, 100, 60), mk("nginx", 100, 100, 100)
	lb.rounds[0].failed = 7
	lb.rounds[1].cpuPer1k = math.NaN()
	table := renderTable([]*target{direct, lb, ng}, []string{"haproxy: not installed"})
	rows := strings.Split(table, "\n")
	// stdlb over direct per round: 0.5, 0.5, 0.6 -> 0.5; over nginx: 0.5, 1.0, 0.6 -> 0.6.
	for _, want := range []struct{ row, text string }{
		{"stdlb", "60       1ms       5ms       20.0     0.600      0.500       7"},
		{"direct", "1.000      1.000       0"},
		{"note", "haproxy: not installed"},
	} {
		found := false
		for _, r := range rows {
			if strings.HasPrefix(r, want.row) && strings.Contains(r, want.text) {
				found = true
			}
		}
		if !found {
			t.Errorf("no %q row containing %q in:\n%s", want.row, want.text, table)
		}
	}
	if without := renderTable([]*target{direct, lb}, nil); !strings.Contains(without, "-      0.500") {
		t.Errorf("without nginx the ratio should read '-':\n%s", without)
	}
}

func TestAppendResults_HeaderOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "RESULTS.md")
	o := options{rounds: 5, conns: 64, dur: 3 * time.Second, warmup: time.Second}
	for i := range 2 {
		section := formatSection(time.Now(), "go run ./bench/suite", o, fmt.Sprintf("table %d\n", i))
		if err := appendResults(path, section); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(path)
	s := string(b)
	if strings.Count(s, "# make bench results") != 1 || strings.Count(s, "\n### ") != 2 ||
		!strings.Contains(s, "table 0\n```") || !strings.Contains(s, "nproc ") {
		t.Fatalf("RESULTS.md:\n%s", s)
	}
}

// A run writes only under -out, which .gitignore keeps out of the
// repository; -record adds it to RESULTS.md and the chart the documents
// embed.
func TestKeepResults_RecordsOnlyWhenAsked(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	if err != nil || o.record || o.out != "bench/out" {
		t.Fatalf("defaults: %+v, %v; want no -record, -out bench/out", o, err)
	}
	ignore, err := os.ReadFile("../../.gitignore")
	if err != nil || !strings.Contains(string(ignore), "/bench/out/") {
		t.Fatalf(".gitignore does not keep bench/out out of the repository: %v", err)
	}
	root := t.TempDir()
	o.root = root
	targets := []*target{{name: "stdlb", rounds: []figures{{rps: 100, cpuPer1k: 50}}}}
	when := time.Date(2026, 11, 30, 4, 5, 6, 0, time.UTC)
	if err := keepResults(o, nil, "the table\n", targets, when, io.Discard); err != nil {
		t.Fatal(err)
	}
	var files []string
	filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, path)
			files = append(files, rel)
		}
		return nil
	})
	if want := []string{"bench/out/bench-20261130-040506.md", "bench/out/bench-20261130-040506.svg"}; !slices.Equal(files, want) {
		t.Fatalf("without -record wrote %v, want %v", files, want)
	}

	o.record = true
	if err := keepResults(o, []string{"-record"}, "the table\n", targets, when.Add(time.Minute), io.Discard); err != nil {
		t.Fatal(err)
	}
	results, err := os.ReadFile(filepath.Join(root, "bench/RESULTS.md"))
	if err != nil || !strings.Contains(string(results), "`go run ./bench/suite -record`") || !strings.Contains(string(results), "the table\n```") {
		t.Fatalf("RESULTS.md after -record: %q, %v", results, err)
	}
	if _, err := os.Stat(filepath.Join(root, "bench/results.svg")); err != nil {
		t.Fatalf("no chart recorded: %v", err)
	}
}

func TestRenderChart(t *testing.T) {
	mk := func(name string, rps, cpu float64) *target {
		return &target{name: name, rounds: []figures{{rps: rps, cpuPer1k: cpu}}}
	}
	targets := []*target{mk("direct (backend b1)", 40000, 25), mk("stdlb", 16000, 50), mk("<odd & name>", 20000, math.NaN())}
	svg := renderChart(targets, "2026-11-30 · nproc 2")
	// Well-formed XML, whose bars are as long as their values allow.
	dec := xml.NewDecoder(strings.NewReader(svg))
	var widths []float64
	var names []string
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed: %v\n%s", err, svg)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			if e.Name.Local == "rect" && attr(e, "class") == "bar" {
				w, _ := strconv.ParseFloat(attr(e, "width"), 64)
				widths = append(widths, w)
			}
		case xml.CharData:
			names = append(names, string(e))
		}
	}
	// Throughput: 40000 is the longest bar; CPU: 50 is, and the target
	// without a CPU figure has no bar.
	want := []float64{barMax, barMax * 16000 / 40000, barMax * 20000 / 40000, barMax * 25 / 50, barMax}
	if len(widths) != len(want) {
		t.Fatalf("bar widths %v, want %v", widths, want)
	}
	for i := range want {
		if math.Abs(widths[i]-want[i]) > 0.1 {
			t.Errorf("bar %d width %v, want %v", i, widths[i], want[i])
		}
	}
	for _, s := range []string{"<odd & name>", "40,000", "25.0 µs", "not measured", "2026-11-30 · nproc 2"} {
		if !slices.Contains(names, s) {
			t.Errorf("chart lacks the text %q", s)
		}
	}
	if strings.Contains(svg, "<script") || strings.Contains(svg, "href") {
		t.Error("chart refers to something outside itself")
	}
}

func attr(e xml.StartElement, name string) string {
	for _, a := range e.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// TestBarColor_OnlyTheBackendAloneIsGrey: the TLS rows are variants of
// the balancer and of nginx, not references of their own.
func TestBarColor_OnlyTheBackendAloneIsGrey(t *testing.T) {
	const grey = "#9a9a9a"
	for _, name := range []string{stdlbTLSName, nginxTLSName, "stdlb", "stdlb +ratelimit +accesslog", "nginx", "haproxy"} {
		if barColor(name) == grey {
			t.Errorf("%s is drawn grey, as the backend alone is", name)
		}
	}
	if barColor("direct (backend b1)") != grey {
		t.Error("the backend alone is not grey")
	}
	if barColor(nginxTLSName) == barColor("direct (backend b1)") || barColor(nginxTLSName) == barColor("nginx") {
		t.Error("nginx +tls looks like another row")
	}
}
