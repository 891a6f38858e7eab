package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// syncBuffer is a log destination shared by goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func backendNamed(t *testing.T, name string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		io.WriteString(w, "hello from "+name)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// writeConfig writes a config for the given backends to path, listening on
// free loopback ports, with extra top-level JSON fields appended. Health
// checks are frequent, with a timeout a busy machine cannot reach for a
// healthy backend.
func writeConfig(t *testing.T, path string, extra string, backends ...string) {
	t.Helper()
	var list []string
	for _, b := range backends {
		list = append(list, fmt.Sprintf(`{"url": %q}`, b))
	}
	clients := filepath.Join(filepath.Dir(path), "clients.json")
	data := fmt.Sprintf(`{"listen": "127.0.0.1:0", "backends": [%s],
		"health_check": {"interval": "20ms", "timeout": "2s"},
		"timeouts": {"shutdown": "5s"},
		"rate_limit": {"clients_file": %q},
		"admin": {"listen": "127.0.0.1:0"}}`, strings.Join(list, ", "), clients)
	if err := os.WriteFile(path, withFields(t, data, extra), 0o644); err != nil {
		t.Fatal(err)
	}
}

// withFields returns the JSON object base with the members of extra
// (written `, "name": value, ...`, as the config helpers take it) in place
// of its own of the same name: a config file may not repeat a field.
func withFields(t *testing.T, base, extra string) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(base), &m); err != nil {
		t.Fatal(err)
	}
	if extra = strings.TrimPrefix(strings.TrimSpace(extra), ","); extra != "" {
		if err := json.Unmarshal([]byte("{"+extra+"}"), &m); err != nil {
			t.Fatalf("extra fields %s: %v", extra, err)
		}
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return data
}

type runningApp struct {
	*app
	logs   *syncBuffer
	access *syncBuffer
	hup    chan os.Signal
	term   chan os.Signal // as SIGINT and SIGTERM
	stop   context.CancelFunc
	done   chan error
}

// startApp builds the app from the config at path and serves it until the
// test ends.
func startApp(t *testing.T, path string) *runningApp {
	t.Helper()
	cfg, cert, err := loadConfig(path, Overrides{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &runningApp{logs: &syncBuffer{}, access: &syncBuffer{}, hup: make(chan os.Signal, 1),
		term: make(chan os.Signal, 2), done: make(chan error, 1)}
	logger := slog.New(slog.NewTextHandler(r.logs, nil))
	r.app, err = newApp(cfg, cert, path, Overrides{}, logger, newBufferedWriter(r.access, 4096))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	go func() { r.done <- r.serve(ctx, r.hup, r.term) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

func TestApp_ReloadUnderLoadFailsNothing(t *testing.T) {
	a, b, c := backendNamed(t, "a"), backendNamed(t, "b"), backendNamed(t, "c")
	path := filepath.Join(t.TempDir(), "config.json")
	writeConfig(t, path, "", a.URL, b.URL)
	r := startApp(t, path)
	url := "http://" + r.Addr() + "/"

	var failed, served atomic.Int64
	var mu sync.Mutex
	seen := map[string]int{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := http.Get(url)
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
				}
				served.Add(1)
				mu.Lock()
				seen[resp.Header.Get("X-Backend")]++
				mu.Unlock()
			}
		})
	}
	waitUntil(t, "requests flowing", func() bool { return served.Load() > 50 })
	writeConfig(t, path, "", b.URL, c.URL)
	r.hup <- os.Interrupt // any value: serve reloads on each
	waitUntil(t, "traffic on the new backend c", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return seen["c"] > 20
	})
	mu.Lock()
	clear(seen)
	mu.Unlock()
	waitUntil(t, "more requests", func() bool { return served.Load() > 400 })
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed across the reload", failed.Load())
	}
	if seen["a"] != 0 {
		t.Fatalf("backend a, removed by the reload, still got %d requests", seen["a"])
	}
	if !strings.Contains(r.logs.String(), "configuration reloaded") {
		t.Fatalf("no reload line in the log:\n%s", r.logs)
	}
}

func TestApp_BadReloadKeepsRunningConfig(t *testing.T) {
	a := backendNamed(t, "a")
	path := filepath.Join(t.TempDir(), "config.json")
	writeConfig(t, path, "", a.URL)
	r := startApp(t, path)
	os.WriteFile(path, []byte(`{"backends": [{"url": "ftp://nope"}], "retries": -1}`), 0o644)
	r.hup <- os.Interrupt
	waitUntil(t, "the rejection to be logged", func() bool {
		return strings.Contains(r.logs.String(), "reload rejected: keeping the running configuration")
	})
	for _, want := range []string{
		`reload rejected: ` + path + `: backends[0].url: \"ftp://nope\" has no http:// or https:// scheme`,
		"reload rejected: " + path + ": retries: must be between 0 and 10, got -1",
	} {
		if !strings.Contains(r.logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, r.logs)
		}
	}
	resp, err := http.Get("http://" + r.Addr() + "/")
	if err != nil || resp.Header.Get("X-Backend") != "a" {
		t.Fatalf("after a rejected reload: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestApp_ShutdownLetsSlowRequestFinish(t *testing.T) {
	r, release, got := startSlowApp(t, "")
	addr := r.Addr()
	r.stop() // as SIGTERM does
	waitUntil(t, "the listener to close", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	release <- struct{}{}
	if res := <-got; res.err != nil || res.body != "done" {
		t.Fatalf("in-flight request during shutdown: %q, %v; want it to finish", res.body, res.err)
	}
	if err := <-r.done; err != nil {
		t.Fatalf("serve returned %v after a clean shutdown", err)
	}
	r.done <- nil // for the cleanup
}

func TestRun_ExitCodes(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"backends": [{"url": "x"}], "algorithm": "dice"}`), 0o644)
	good := filepath.Join(dir, "good.json")
	writeConfig(t, good, "", "http://127.0.0.1:9")

	var stdout, stderr bytes.Buffer
	if code := run([]string{"-config", bad}, &stdout, &stderr); code != 2 {
		t.Fatalf("bad config: exit %d, want 2", code)
	}
	want := bad + `: algorithm: unknown algorithm "dice" (want round-robin, weighted-round-robin or least-connections)` + "\n" +
		bad + `: backends[0].url: "x" has no http:// or https:// scheme` + "\n"
	if stderr.String() != want {
		t.Fatalf("stderr:\n%s\nwant:\n%s", stderr.String(), want)
	}

	stdout.Reset()
	stderr.Reset()
	t.Setenv("CONFIG_PATH", good)
	if code := run([]string{"-check-config"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "configuration ok") {
		t.Fatalf("-check-config on a good file via CONFIG_PATH: exit %d, %q %q", code, stdout.String(), stderr.String())
	}
	if code := run([]string{"-check-config", "-backends", "nope"}, &stdout, &stderr); code != 2 {
		t.Fatalf("-check-config with a bad -backends: exit %d, want 2", code)
	}
	stdout.Reset()
	if code := run([]string{"-version"}, &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "stdlb ") {
		t.Fatalf("-version: exit %d, %q", code, stdout.String())
	}
	if code := run([]string{"-h"}, &stdout, &stderr); code != 0 {
		t.Fatalf("-h: exit %d, want 0", code)
	}
	// No file and none asked for: -backends alone is enough.
	t.Setenv("CONFIG_PATH", "")
	t.Chdir(t.TempDir())
	stdout.Reset()
	if code := run([]string{"-check-config", "-backends", "http://127.0.0.1:9"}, &stdout, &stderr); code != 0 ||
		!strings.Contains(stdout.String(), "configuration ok (1 backend, round-robin; clients file clients.json absent") {
		t.Fatalf("-backends without a config file: exit %d, %q %q", code, stdout.String(), stderr.String())
	}
	if code := run([]string{"-check-config"}, &stdout, &stderr); code != 2 {
		t.Fatalf("no config file and no -backends: exit %d, want 2", code)
	}
}

func TestReload_NamesWhatChangedAndWhatNeedsARestart(t *testing.T) {
	a := defaultConfig()
	a.Backends = []BackendConfig{{URL: "http://a:1"}, {URL: "http://b:1", Weight: 2}}
	b := a
	b.Backends = []BackendConfig{{URL: "http://a:1"}, {URL: "http://b:1", Weight: 3}}
	b.Retries = 1
	b.Timeouts.Idle = Seconds(30)
	if got := configDiff(&a, &b); !slices.Equal(got, []string{"backends[1].weight", "retries", "timeouts.idle"}) {
		t.Fatalf("configDiff = %v", got)
	}
	if got := restartOnly(&a, &b); !slices.Equal(got, []string{"timeouts.idle"}) {
		t.Fatalf("restartOnly = %v, want only timeouts.idle", got)
	}
	// Back to the value the balancer started with: nothing to warn about.
	b.Timeouts.Idle = a.Timeouts.Idle
	if got := restartOnly(&a, &b); len(got) != 0 {
		t.Fatalf("restartOnly after restoring the value = %v, want none", got)
	}
}

func TestCheckStartOnly_AdminOnPublicAddressNeedsToken(t *testing.T) {
	cfg := defaultConfig()
	cfg.Admin.TokenEnv = "STDLB_TEST_TOKEN"
	t.Setenv("STDLB_TEST_TOKEN", "")
	for addr, ok := range map[string]bool{"127.0.0.1:9090": true, "[::1]:9090": true, "localhost:9090": true, "0.0.0.0:9090": false, "192.0.2.1:9090": false} {
		cfg.Admin.Listen = addr
		if ps := startOnlyProblems(&cfg); (len(ps) == 0) != ok {
			t.Errorf("admin on %s without token: problems %v", addr, ps)
		}
	}
	t.Setenv("STDLB_TEST_TOKEN", "s3cret")
	cfg.Admin.Listen = "0.0.0.0:9090"
	if ps := startOnlyProblems(&cfg); len(ps) != 0 {
		t.Errorf("admin on 0.0.0.0 with a token: %v", ps)
	}
}

// TestRun_AdminTokenMustBeUsable: a token with whitespace around it can
// never match a Bearer header (its value is trimmed), so the balancer
// refuses to start, naming the variable; a short one is only warned of.
func TestRun_AdminTokenMustBeUsable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	os.WriteFile(path, []byte(`{"backends": [{"url": "http://127.0.0.1:9"}],
		"admin": {"listen": "127.0.0.1:9090", "token_env": "STDLB_TEST_TOKEN"}}`), 0o644)
	refused := path + ": admin.token_env: STDLB_TEST_TOKEN begins or ends with whitespace, which a Bearer token loses"
	short := path + ": warning: admin.token_env: STDLB_TEST_TOKEN is 1 character long; a token shorter than 16 is easier to guess"
	for _, tc := range []struct {
		token string
		code  int
		want  string // on stderr; "" for nothing
	}{
		{" sp secret ", 2, refused},
		{"0123456789abcdef\r", 2, refused},
		{"0123456789abcdef\n", 2, refused},
		{"0123456789\x01abcdef", 2, path + ": admin.token_env: STDLB_TEST_TOKEN holds a control character"},
		{"a", 0, short},
		{"0123456789abcdef", 0, ""},
		{"", 0, ""}, // no token on loopback: /clients and /reload answer 403
	} {
		t.Setenv("STDLB_TEST_TOKEN", tc.token)
		var stdout, stderr strings.Builder
		code := run([]string{"-config", path, "-check-config"}, &stdout, &stderr)
		if code != tc.code || tc.want == "" && stderr.Len() > 0 || !strings.HasPrefix(stderr.String(), tc.want) {
			t.Errorf("token %q: exit %d, stderr %q; want %d and %q", tc.token, code, stderr.String(), tc.code, tc.want)
		}
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // only a failing test waits this long
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
