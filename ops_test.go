package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
)

// writeNamedConfig writes a config whose backends have names: backends
// alternate name and URL.
func writeNamedConfig(t *testing.T, path, extra string, backends ...string) {
	t.Helper()
	var list []string
	for i := 0; i+1 < len(backends); i += 2 {
		list = append(list, fmt.Sprintf(`{"name": %q, "url": %q}`, backends[i], backends[i+1]))
	}
	data := fmt.Sprintf(`{"listen": "127.0.0.1:0", "backends": [%s],
		"health_check": {"interval": "20ms", "timeout": "2s"},
		"timeouts": {"shutdown": "5s"},
		"rate_limit": {"clients_file": %q},
		"admin": {"listen": "127.0.0.1:0", "token_env": "STDLB_TEST_ADMIN_TOKEN"}}`,
		strings.Join(list, ", "), filepath.Join(filepath.Dir(path), "clients.json"))
	if err := os.WriteFile(path, withFields(t, data, extra), 0o644); err != nil {
		t.Fatal(err)
	}
}

func getBody(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestApp_BackendNamesInStatusMetricsAndLogs(t *testing.T) {
	a := backendNamed(t, "a")
	path := filepath.Join(t.TempDir(), "config.json")
	writeNamedConfig(t, path, `, "retries": 0`, "web-1", a.URL)
	r := startApp(t, path)
	if resp, _ := getBody(t, "http://"+r.Addr()+"/"); resp.StatusCode != 200 {
		t.Fatalf("proxied request: %d", resp.StatusCode)
	}

	code, status := adminDo(t, "GET", "http://"+r.AdminAddr()+"/status", "", "")
	b := status["backends"].([]any)[0].(map[string]any)
	if code != 200 || b["name"] != "web-1" || b["url"] != a.URL {
		t.Fatalf("/status backend = %v, want name web-1 and url %s", b, a.URL)
	}
	_, metrics := getBody(t, "http://"+r.AdminAddr()+"/metrics")
	for _, want := range []string{
		`stdlb_requests_total{backend="web-1",code="200"} 1`,
		`stdlb_backend_up{backend="web-1"} 1`,
		`stdlb_backend_info{backend="web-1",url="` + a.URL + `"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(metrics, `backend="`+a.URL) {
		t.Error("a metrics label still names the backend by URL")
	}
	r.app.access.Flush()
	if !strings.Contains(r.access.String(), "backend=web-1") {
		t.Errorf("access log does not name the backend:\n%s", r.access)
	}
	_, page := getBody(t, "http://"+r.AdminAddr()+"/")
	if !strings.Contains(page, `</span>web-1<span class="addr">`+a.URL+`</span>`) {
		t.Error("the status page does not show the name and the URL")
	}
}

func TestAdmin_ReloadAppliesTheFileAndAnswersWhatChanged(t *testing.T) {
	a, b := backendNamed(t, "a"), backendNamed(t, "b")
	path := filepath.Join(t.TempDir(), "config.json")
	writeNamedConfig(t, path, "", "one", a.URL)
	t.Setenv("STDLB_TEST_ADMIN_TOKEN", "s3cret")
	r := startApp(t, path)
	reload := "http://" + r.AdminAddr() + "/reload"

	if code, _ := adminDo(t, "POST", reload, "", ""); code != 401 {
		t.Fatalf("POST /reload without the token: %d, want 401", code)
	}
	writeNamedConfig(t, path, `, "retries": 1`, "two", b.URL)
	code, out := adminDo(t, "POST", reload, "s3cret", "")
	if code != 200 || out["status"] != "reloaded" || fmt.Sprint(out["needs_restart"]) != "[]" {
		t.Fatalf("POST /reload: %d %v; want reloaded, nothing needing a restart", code, out)
	}
	if got := fmt.Sprint(out["backends"]); got != "[two]" {
		t.Errorf("backends after the reload: %s, want [two]", got)
	}
	for _, field := range []string{"backends[0].name", "backends[0].url", "retries"} {
		if !slices.Contains(out["changed"].([]any), any(field)) {
			t.Errorf("changed = %v, lacks %s", out["changed"], field)
		}
	}
	if resp, _ := getBody(t, "http://"+r.Addr()+"/"); resp.Header.Get("X-Backend") != "b" {
		t.Fatalf("after the reload a request went to %q, want b", resp.Header.Get("X-Backend"))
	}
	if !strings.Contains(r.logs.String(), `msg="configuration reloaded" by="POST /reload from 127.0.0.1:`) {
		t.Errorf("the log does not say who reloaded:\n%s", r.logs)
	}

	// A bad file: every problem in the answer, the running config stays.
	os.WriteFile(path, []byte(`{"backends": [{"url": "http://127.0.0.1:99999"}], "retries": -1}`), 0o644)
	code, out = adminDo(t, "POST", reload, "s3cret", "")
	problems := fmt.Sprint(out["problems"])
	if code != http.StatusUnprocessableEntity || !strings.Contains(problems, "backends[0].url") ||
		!strings.Contains(problems, "retries: must be between 0 and 10") || !strings.Contains(problems, path) {
		t.Fatalf("bad file: %d %v; want 422 listing both problems with the file", code, out)
	}
	if resp, _ := getBody(t, "http://"+r.Addr()+"/"); resp.Header.Get("X-Backend") != "b" {
		t.Fatal("a rejected reload changed the backends")
	}
	// POST /reload counts in the reload metrics as SIGHUP does; the 401
	// was no reload.
	var sb strings.Builder
	r.writeMetrics(&sb)
	m := checkExposition(t, sb.String())
	if ok, failed := m[`stdlb_config_reloads_total{result="success"}`], m[`stdlb_config_reloads_total{result="failure"}`]; ok != 1 || failed != 1 {
		t.Errorf("reloads counted: %v succeeded, %v failed; want 1 and 1", ok, failed)
	}
}

// startAdminApp serves one backend, with the admin token s3cret set, for
// tests of the admin API.
func startAdminApp(t *testing.T) *runningApp {
	t.Helper()
	a := backendNamed(t, "a")
	path := filepath.Join(t.TempDir(), "config.json")
	writeNamedConfig(t, path, "", "one", a.URL)
	t.Setenv("STDLB_TEST_ADMIN_TOKEN", "s3cret")
	return startApp(t, path)
}

func TestAdmin_BasicAuthForBrowsersReadsOnly(t *testing.T) {
	r := startAdminApp(t)
	base := "http://" + r.AdminAddr()
	do := func(method, path, user, pass string) *http.Response {
		req, _ := http.NewRequest(method, base+path, nil)
		req.SetBasicAuth(user, pass)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := do("GET", "/clients", "admin", "s3cret"); resp.StatusCode != 200 {
		t.Fatalf("GET /clients with the token as Basic password: %d, want 200", resp.StatusCode)
	}
	if resp := do("GET", "/clients", "", "s3cret"); resp.StatusCode != 200 {
		t.Fatalf("GET /clients with an empty user name: %d, want 200", resp.StatusCode)
	}
	resp := do("GET", "/clients", "admin", "wrong")
	if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Values("WWW-Authenticate")[0], "Basic ") {
		t.Fatalf("wrong password: %d %q, want 401 with a Basic challenge first", resp.StatusCode, resp.Header.Values("WWW-Authenticate"))
	}
	// A browser replays Basic credentials on requests other sites make it
	// send: they are not taken for changes.
	if resp := do("POST", "/reload", "admin", "s3cret"); resp.StatusCode != 401 {
		t.Fatalf("POST /reload with Basic: %d, want 401", resp.StatusCode)
	}
}

func TestAdmin_WrongMethodIs405WithAllow(t *testing.T) {
	r := startAdminApp(t)
	for _, tc := range []struct{ method, path, allow string }{
		{"POST", "/status", "GET, HEAD"},
		{"DELETE", "/metrics", "GET, HEAD"},
		{"PUT", "/", "GET, HEAD"},
		{"POST", "/healthz", "GET, HEAD"},
		{"GET", "/reload", "POST"},
	} {
		req, _ := http.NewRequest(tc.method, "http://"+r.AdminAddr()+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != tc.allow || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: %d Allow %q, want a 405 JSON error with Allow %q", tc.method, tc.path,
				resp.StatusCode, resp.Header.Get("Allow"), tc.allow)
		}
	}
	if code, _ := adminDo(t, "GET", "http://"+r.AdminAddr()+"/nothing-here", "", ""); code != 404 {
		t.Errorf("unknown path: %d, want 404", code)
	}
}

// slowResult is what the client of startSlowApp's request got.
type slowResult struct {
	body string
	err  error
}

// startSlowApp runs an app whose backend holds /slow until it receives from
// release, and starts one /slow request, returning once the backend has it.
func startSlowApp(t *testing.T, extra string) (r *runningApp, release chan struct{}, got chan slowResult) {
	entered, release := make(chan struct{}), make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		io.WriteString(w, "done")
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) }) // before slow.Close, which waits for it
	path := filepath.Join(t.TempDir(), "config.json")
	writeNamedConfig(t, path, extra, "slow", slow.URL)
	r = startApp(t, path)
	got = make(chan slowResult, 1)
	go func() {
		resp, err := http.Get("http://" + r.Addr() + "/slow")
		if err != nil {
			got <- slowResult{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- slowResult{string(b), err}
	}()
	<-entered
	return r, release, got
}

func TestApp_DrainSaysWhatItWaitsFor(t *testing.T) {
	r, release, got := startSlowApp(t, "")
	r.drainEvery = 5 * 1e6 // 5ms; read by the drain, after stop
	r.stop()
	waitUntil(t, "a drain progress line", func() bool {
		return strings.Contains(r.logs.String(), `msg="draining: 1 request in flight, `)
	})
	release <- struct{}{}
	if res := <-got; res.err != nil || res.body != "done" {
		t.Fatalf("the request in flight during the drain: %q, %v", res.body, res.err)
	}
	if err := <-r.done; err != nil {
		t.Fatalf("serve: %v, want a clean stop", err)
	}
	r.done <- nil // for the cleanup
}

func TestApp_SecondSignalStopsTheDrainAtOnce(t *testing.T) {
	r, _, got := startSlowApp(t, "")
	r.term <- os.Interrupt // the first: drain
	waitUntil(t, "the drain to begin", func() bool { return strings.Contains(r.logs.String(), "shutting down") })
	r.term <- os.Interrupt // the second, while the backend still holds /slow
	if err := <-r.done; !errors.Is(err, errInterrupted) {
		t.Fatalf("serve after a second signal: %v, want errInterrupted", err)
	}
	r.done <- nil // for the cleanup
	if res := <-got; res.err == nil {
		t.Fatalf("the request in flight was answered (%q); the second signal should have cut it off", res.body)
	}
	if !strings.Contains(r.logs.String(), "second interrupt: stopping now; cutting off 1 request in flight") {
		t.Errorf("no line saying what was cut off:\n%s", r.logs)
	}
}

func TestRun_ExitCodesForOperations(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-backends", "http://127.0.0.1:99999", "-check-config"}, &stdout, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), "flag -backends[0].url: \"http://127.0.0.1:99999\": port 99999 is outside 1-65535") {
		t.Fatalf("port 99999: exit %d, %q", code, stderr.String())
	}
	stderr.Reset()
	if code := run([]string{"config.json"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), `unexpected argument "config.json"`) {
		t.Fatalf("a stray argument: exit %d, %q", code, stderr.String())
	}

	// Every problem at once: the file's, the admin token rule, and every
	// bad entry of the clients file, each with its file.
	path := filepath.Join(dir, "config.json")
	os.WriteFile(path, []byte(`{"backends": [{"url": "http://a:0", "name": "x y"}], "retries": 11,
		"admin": {"listen": "0.0.0.0:9090", "token_env": "STDLB_TEST_UNSET_TOKEN"}}`), 0o644)
	os.WriteFile(filepath.Join(dir, "clients.json"), []byte(`{"clients": {"k1": {"capacity": 0, "refill_rate": 1}, "k2": {"capacity": 1}}}`), 0o644)
	t.Setenv("STDLB_TEST_UNSET_TOKEN", "")
	stderr.Reset()
	code := run([]string{"-config", path, "-check-config"}, &stdout, &stderr)
	clients := filepath.Join(dir, "clients.json")
	want := []string{
		path + `: backends[0].url: "http://a:0": port 0 is outside 1-65535`,
		path + `: backends[0].name: "x y" is not a usable name`,
		path + `: retries: must be between 0 and 10, got 11`,
		path + `: admin.listen: 0.0.0.0:9090 is reachable from other machines`,
		path + `: rate_limit.clients_file: clients file ` + clients + `: clients["k1"].capacity: must be a positive integer`,
		path + `: rate_limit.clients_file: clients file ` + clients + `: clients["k2"].refill_rate: required`,
	}
	if code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	for _, w := range want {
		if !strings.Contains(stderr.String(), w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
		}
	}
}

func TestJSONSyntaxErrorPosition(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"x", "line 1, column 1"},
		{`{"a" 1}`, "line 1, column 6"},
		{"{\n  \"listen\": \":8080\",,\n}", "line 2, column 21"},
		{"{\n  \"é\": 1 2}", "line 2, column 10"}, // columns count characters, not bytes
		{"{\"backends\": []}\n}", "line 2, column 1"},
	} {
		_, err := ParseConfig([]byte(tc.in), Overrides{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %s", tc.in, err, tc.want)
		}
	}
}

func TestVersion_FromBuildInfo(t *testing.T) {
	vcs := func(rev, time, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev},
			{Key: "vcs.time", Value: time}, {Key: "vcs.modified", Value: modified}}
	}
	const rev = "9e0bdf8a1b2c3d4e5f60718293a4b5c6d7e8f901"
	for _, tc := range []struct {
		name     string
		override string
		info     *debug.BuildInfo
		want     string
	}{
		{"tagged module", "", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.4.0"}},
			"v1.4.0 (go1.26.8)"},
		{"checkout with changes", "", &debug.BuildInfo{GoVersion: "go1.26.8",
			Main:     debug.Module{Version: "v0.0.0-20261130040000-9e0bdf8a1b2c+dirty"},
			Settings: vcs(rev, "2026-11-30T04:00:00Z", "true")},
			"v0.0.0-20261130040000-9e0bdf8a1b2c+dirty (revision 9e0bdf8a1b2c+dirty, committed 2026-11-30T04:00:00Z, go1.26.8)"},
		{"devel with VCS", "", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"},
			Settings: vcs(rev, "2026-11-30T04:00:00Z", "false")},
			"9e0bdf8a1b2c (committed 2026-11-30T04:00:00Z, go1.26.8)"},
		{"no VCS", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}},
			"(devel, no VCS revision: built outside a git checkout or with -buildvcs=false)"},
		{"set at link time", "v2.0.0", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "v2.0.0"},
	} {
		if got := versionFrom(tc.override, tc.info); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
		if got := versionFrom(tc.override, tc.info); got == "dev" {
			t.Errorf("%s: a bare dev", tc.name)
		}
	}
}

func TestParseConfig_BackendNamesAndPorts(t *testing.T) {
	for _, tc := range []struct{ backends, want string }{
		{`{"url": "http://a:1", "name": "x"}, {"url": "http://b:1", "name": "x"}`, `backends[1].name: "x" is also the name of backends[0]`},
		{`{"url": "http://a:1", "name": "-x"}`, `backends[0].name: "-x" is not a usable name`},
		{`{"url": "http://a:65536"}`, `backends[0].url: "http://a:65536": port 65536 is outside 1-65535`},
		{`{"url": "http://a:"}`, `backends[0].url: "http://a:": empty port after the colon`},
		{`{"url": "http://a:65535", "name": "b1"}, {"url": "http://b:1", "name": "b.2_x-3"}`, ""},
	} {
		_, err := ParseConfig([]byte(`{"backends": [`+tc.backends+`]}`), Overrides{})
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.backends, err, tc.want)
		}
	}
}

// TestAdmin_StatusPageOffLoopbackTakesBasicAuth: with the admin listener on
// an address other machines reach, the status page and /status need the
// token, and a browser can give it as the Basic password.
func TestAdmin_StatusPageOffLoopbackTakesBasicAuth(t *testing.T) {
	r := startAdminApp(t)
	// The routes of an admin API on 192.0.2.1, over r's balancer: nothing
	// needs to listen there to test what they answer.
	cfg := *r.cfg.Load()
	cfg.Admin.Listen = "192.0.2.1:9090"
	off := &app{log: r.log, page: r.page, bal: r.bal, limit: r.limit}
	off.cfg.Store(&cfg)
	h := newAdmin(off)
	for _, p := range []string{"/", "/status", "/metrics"} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", p, nil))
		if w.Code != 401 || !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Basic ") {
			t.Fatalf("GET %s without credentials: %d %q, want 401 with a Basic challenge", p, w.Code, w.Header().Get("WWW-Authenticate"))
		}
		req := httptest.NewRequest("GET", p, nil)
		req.SetBasicAuth("me", "s3cret")
		w = httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			t.Fatalf("GET %s with the token as Basic password: %d, want 200", p, w.Code)
		}
	}
}
