package bucket

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
)

type adminFixture struct {
	h    http.Handler
	s    *Store
	l    *Limiter
	path string
}

func newAdmin(t *testing.T) *adminFixture {
	s, path := openTemp(t)
	return &adminFixture{NewClientsHandler(s, nil), s, s.l, path}
}

// do runs one request and decodes the JSON answer.
func (f *adminFixture) do(t *testing.T, method, path, body string) (int, map[string]any) {
	t.Helper()
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, httptest.NewRequest(method, path, strings.NewReader(body)))
	var v map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatalf("%s %s: answer %q is not JSON: %v", method, path, w.Body, err)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: Content-Type %q", method, path, ct)
	}
	return w.Code, v
}

func TestClientsHandler_CRUD(t *testing.T) {
	f := newAdmin(t)
	if code, v := f.do(t, "PUT", "/clients/k-1", `{"capacity": 10, "refill_rate": 0.5}`); code != 200 || v["capacity"] != 10.0 || v["key"] != "k-1" {
		t.Fatalf("PUT = %d %v", code, v)
	}
	if code, v := f.do(t, "GET", "/clients/k-1", ""); code != 200 || v["refill_rate"] != 0.5 {
		t.Fatalf("GET = %d %v", code, v)
	}
	f.do(t, "PUT", "/clients/192.0.2.1", `{"capacity": 3, "refill_rate": 1}`)
	code, v := f.do(t, "GET", "/clients", "")
	want := map[string]any{"k-1": map[string]any{"capacity": 10.0, "refill_rate": 0.5},
		"192.0.2.1": map[string]any{"capacity": 3.0, "refill_rate": 1.0}}
	if code != 200 || !reflect.DeepEqual(v["clients"], want) {
		t.Fatalf("GET /clients = %d %v", code, v)
	}
	if code, v := f.do(t, "DELETE", "/clients/k-1", ""); code != 200 || v["deleted"] != "k-1" {
		t.Fatalf("DELETE = %d %v", code, v)
	}
	if code, _ := f.do(t, "GET", "/clients/k-1", ""); code != 404 {
		t.Fatalf("GET after DELETE = %d, want 404", code)
	}
	if code, _ := f.do(t, "DELETE", "/clients/k-1", ""); code != 404 {
		t.Fatalf("second DELETE = %d, want 404", code)
	}
	if got := reopen(t, f.path).All(); !reflect.DeepEqual(got, map[string]Limits{"192.0.2.1": {3, 1}}) {
		t.Fatalf("file after the calls: %v", got)
	}
}

func TestClientsHandler_PutAppliesAtOnce(t *testing.T) {
	f := newAdmin(t)
	for range 5 {
		f.l.TakeKind(KeyAPI, "k-1") // 95 left
	}
	f.do(t, "PUT", "/clients/k-1", `{"capacity": 3, "refill_rate": 1}`)
	if d := f.l.TakeKind(KeyAPI, "k-1"); d.Limit != 3 || d.Remaining != 2 {
		t.Fatalf("after PUT: %+v, want limit 3 and tokens clamped to it", d)
	}
	f.do(t, "DELETE", "/clients/k-1", "")
	if d := f.l.TakeKind(KeyAPI, "k-1"); d.Limit != 100 {
		t.Fatalf("after DELETE: %+v, want the default", d)
	}
}

func TestClientsHandler_RejectsBadRequests(t *testing.T) {
	tests := []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"PUT", "/clients/k-1", `{"capacity": 0, "refill_rate": 1}`, 400, "body: capacity: must be a positive integer"},
		{"PUT", "/clients/k-1", `{"capacity": -3, "refill_rate": 1}`, 400, "body: capacity:"},
		{"PUT", "/clients/k-1", `{"capacity": 2.5, "refill_rate": 1}`, 400, "body: capacity:"},
		{"PUT", "/clients/k-1", `{"capacity": 10, "refill_rate": 0}`, 400, "body: refill_rate: must be a positive number"},
		{"PUT", "/clients/k-1", `{"capacity": 10, "refill_rate": 2e9}`, 400, "body: refill_rate: must be a positive number"},
		{"PUT", "/clients/k-1", `{"Capacity": 10, "refill_rate": 1}`, 400, `body: unknown field "Capacity"`},
		{"PUT", "/clients/k-1", `{"capacity": 10, "capacity": 1, "refill_rate": 1}`, 400, `body: "capacity": given twice`},
		{"PUT", "/clients/k-1", `{"capacity": 1, "refill_rate": 50}`, 400, "body: capacity: 1 is less than one refill (refill_rate 50 x refill_interval 100ms = 5 tokens), so the bucket would drop the surplus and admit only about 10 a second: raise capacity to at least 5 or shorten rate_limit.refill_interval to at most 20ms"},
		{"PUT", "/clients/k%FF", `{"capacity": 1, "refill_rate": 1}`, 400, "key: must be valid UTF-8"},
		{"PUT", "/clients/2001:db8::%2F48", `{"capacity": 1, "refill_rate": 1}`, 400, "key: 2001:db8::/48: IPv6 clients are keyed by /64 prefixes"},
		{"PUT", "/clients", `{"clients": {"1.2.3.4": {"capacity": 1, "refill_rate": 1}, "::ffff:1.2.3.4": {"capacity": 1, "refill_rate": 1}}}`, 400, "the same client"},
		{"PUT", "/clients", `{"clients": {"k": {"capacity": 0, "refill_rate": 1}}}`, 400, `body: clients["k"].capacity`},
		{"PUT", "/clients/%5B::1%5D", `{"capacity": 1, "refill_rate": 1}`, 400, "key: [::1] looks like an address, but an address is written without brackets: use ::/64"},
		{"GET", "/clients/1.2.3.4:80", ``, 400, "key: 1.2.3.4:80 looks like an address, but an address is written without a port: use 1.2.3.4"},
		{"PUT", "/clients", `{"clients": {"01.2.3.4": {"capacity": 1, "refill_rate": 1}}}`, 400, `body: clients["01.2.3.4"]: key: 01.2.3.4 looks like an address, but an IPv4 address is written without leading zeros, which some programs read as octal: use 1.2.3.4`},
		{"PUT", "/clients/k-1", `{"capacity": 10, "refill_rate": "1"}`, 400, "body: refill_rate:"},
		{"PUT", "/clients/k-1", `{"capacity": 10}`, 400, "body: refill_rate: required"},
		{"PUT", "/clients/k-1", `{"capacity": 10, "refill_rate": 1, "burst": 5}`, 400, `body: unknown field "burst"`},
		{"PUT", "/clients/k-1", `{"capacity": 10, "refill_rate": 1} x`, 400, "body:"},
		{"PUT", "/clients/k-1", `[1, 2]`, 400, "body: must be a JSON object"},
		{"PUT", "/clients/k-1", ``, 400, "body: empty"},
		{"PUT", "/clients/k-1", `{"capacity": 10, "refill_rate": 1, "x": "` + strings.Repeat("a", 70<<10) + `"}`, 400, "larger than 64 KiB"},
		{"PUT", "/clients/" + strings.Repeat("k", 257), `{"capacity": 1, "refill_rate": 1}`, 400, "key: must be at most 256 bytes"},
		{"PUT", "/clients/a%0Ab", `{"capacity": 1, "refill_rate": 1}`, 400, "key: must not contain control characters"},
		{"POST", "/clients/k-1", `{"capacity": 1, "refill_rate": 1}`, 405, "method not allowed"},
		{"DELETE", "/clients", ``, 405, "method not allowed"},
		{"POST", "/clients", ``, 405, "method not allowed"},
		{"GET", "/nowhere", ``, 404, "no such endpoint"},
		{"GET", "/clients/", ``, 404, "no such endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.body[:min(len(tt.body), 40)], func(t *testing.T) {
			f := newAdmin(t)
			code, v := f.do(t, tt.method, tt.path, tt.body)
			if msg, _ := v["error"].(string); code != tt.code || !strings.Contains(msg, tt.want) {
				t.Fatalf("%s %s = %d %v, want %d with %q", tt.method, tt.path, code, v, tt.code, tt.want)
			}
			if len(f.s.All()) != 0 || f.l.Stats().Overrides != 0 {
				t.Fatal("a refused request changed the limits")
			}
		})
	}
}

// TestClientsHandler_BodyWithoutItsFieldsChangesNothing sends bodies that
// say nothing: a template that expanded to nothing, a file of one newline,
// {}. Each is a 400 that leaves the set, the limiter and the file as they
// were; only {"clients": {}} removes every client's limits.
func TestClientsHandler_BodyWithoutItsFieldsChangesNothing(t *testing.T) {
	tests := []struct{ method, path, body, want string }{
		{"PUT", "/clients", " ", `body: empty; send {"clients": {"<key>"`},
		{"PUT", "/clients", "\n", `body: empty; send {"clients"`},
		{"PUT", "/clients", " \r\n\t ", `body: empty; send {"clients"`},
		{"PUT", "/clients", `{}`, `body: clients: required; {"clients": {}} removes every client's limits`},
		{"PUT", "/clients", " { } \n", `body: clients: required`},
		{"PUT", "/clients/k-1", " ", `body: empty; send {"capacity": 10, "refill_rate": 1}`},
		{"PUT", "/clients/k-1", "\n", `body: empty; send {"capacity"`},
		{"PUT", "/clients/k-1", `{}`, `body: capacity: required`},
		{"PUT", "/clients/k-1", `{"refill_rate": 1}`, `body: capacity: required`},
	}
	for _, tt := range tests {
		t.Run(tt.path+" "+strconv.Quote(tt.body), func(t *testing.T) {
			f := newAdmin(t)
			if code, v := f.do(t, "PUT", "/clients", `{"clients": {"k-1": {"capacity": 5, "refill_rate": 1}, "10.1.2.3": {"capacity": 50, "refill_rate": 5}}}`); code != 200 {
				t.Fatalf("setting up: %d %v", code, v)
			}
			want := f.s.All()
			code, v := f.do(t, tt.method, tt.path, tt.body)
			if msg, _ := v["error"].(string); code != 400 || !strings.HasPrefix(msg, tt.want) {
				t.Fatalf("%s %s %q = %d %v, want 400 starting %q", tt.method, tt.path, tt.body, code, v, tt.want)
			}
			if got := f.s.All(); !reflect.DeepEqual(got, want) {
				t.Fatalf("the store holds %v, want %v", got, want)
			}
			if n := f.l.Stats().Overrides; n != 2 {
				t.Fatalf("the limiter lists %d clients, want 2", n)
			}
			if got := reopen(t, f.path).All(); !reflect.DeepEqual(got, want) {
				t.Fatalf("on disk: %v, want %v", got, want)
			}
		})
	}
	f := newAdmin(t)
	f.do(t, "PUT", "/clients/k-1", `{"capacity": 5, "refill_rate": 1}`)
	if code, v := f.do(t, "PUT", "/clients", `{"clients": {}}`); code != 200 || v["clients"] != 0.0 || f.s.Len() != 0 {
		t.Fatalf(`PUT {"clients": {}} = %d %v, want 200 and no clients`, code, v)
	}
}

// TestClientsHandler_LogsWhatEachChangeChanged reads the audit line of
// each change: the client as it is keyed (however it was spelled), API
// keys only as their tag, a bulk replace as such with its counts, refused
// changes too. The steps run in order on one store.
func TestClientsHandler_LogsWhatEachChangeChanged(t *testing.T) {
	f := newAdmin(t)
	logs := &logBuf{}
	f.h = NewClientsHandler(f.s, slog.New(slog.NewTextHandler(logs, nil)))
	tag := func(key string) string { return "client=key:" + KeyTag(key) }
	steps := []struct {
		method, path, body string
		want               []string
		not                []string
	}{
		{"PUT", "/clients/2001:db8::%2F64", `{"capacity": 7, "refill_rate": 1}`,
			[]string{`msg="admin: PUT client limits"`, "client=2001:db8::/64 capacity=7 refill_rate=1 status=200"}, nil},
		{"DELETE", "/clients/2001:db8::abcd", ``, []string{`msg="admin: DELETE client limits"`, "client=2001:db8::/64 status=200"}, nil},
		{"DELETE", "/clients/2001:db8::abcd", ``, []string{"client=2001:db8::/64 status=404"}, nil},
		{"PUT", "/clients/1.2.3.4%2F32", `{"capacity": 5, "refill_rate": 1}`, []string{"client=1.2.3.4 capacity=5"}, nil},
		{"PUT", "/clients/::ffff:10.0.0.9", `{"capacity": 5, "refill_rate": 1}`, []string{"client=10.0.0.9 capacity=5"}, nil},
		{"PUT", "/clients/fe80::1%25eth0", `{"capacity": 5, "refill_rate": 1}`, []string{"client=fe80::/64 capacity=5"}, []string{"eth0"}},
		{"PUT", "/clients/partner-7", `{"capacity": 5, "refill_rate": 1}`, []string{tag("partner-7") + " capacity=5"}, []string{"partner-7"}},
		{"PUT", "/clients/partner-7", `{"capacity": 0, "refill_rate": 1}`, []string{tag("partner-7") + " status=400"}, []string{"partner-7", "capacity=0"}},
		{"PUT", "/clients/%5B::1%5D", `{"capacity": 5, "refill_rate": 1}`, []string{tag("[::1]") + " status=400"}, nil},
		{"PUT", "/clients", `{"clients": {"partner-7": {"capacity": 6, "refill_rate": 1}, "::ffff:1.2.3.4": {"capacity": 5, "refill_rate": 1}, "k-new": {"capacity": 1, "refill_rate": 1}}}`,
			[]string{`msg="admin: PUT client limits (bulk replace)" added=1 changed=1 removed=2 clients=3 status=200`},
			[]string{"partner-7", "k-new", "client="}},
		{"PUT", "/clients", `{}`, []string{`msg="admin: PUT client limits (bulk replace)" status=400`}, nil},
	}
	for _, st := range steps {
		before := len(logs.lines("msg=\"admin:"))
		f.do(t, st.method, st.path, st.body)
		lines := logs.lines("msg=\"admin:")
		if len(lines) != before+1 {
			t.Fatalf("%s %s %s: %d audit lines, want one: %q", st.method, st.path, st.body, len(lines)-before, lines[before:])
		}
		line := lines[before]
		for _, w := range st.want {
			if !strings.Contains(line, w) {
				t.Errorf("%s %s: audit line %q lacks %q", st.method, st.path, line, w)
			}
		}
		for _, n := range st.not {
			if strings.Contains(line, n) {
				t.Errorf("%s %s: audit line %q has %q", st.method, st.path, line, n)
			}
		}
	}
}

func TestClientsHandler_FailedWriteChangesNothing(t *testing.T) {
	f := newAdmin(t)
	logs := &logBuf{}
	f.h = NewClientsHandler(f.s, slog.New(slog.NewTextHandler(logs, nil)))
	f.do(t, "PUT", "/clients/k-1", `{"capacity": 10, "refill_rate": 1}`)
	f.s.log.Close() // the disk fails
	if code, v := f.do(t, "PUT", "/clients/k-1", `{"capacity": 2, "refill_rate": 1}`); code != 500 || !strings.Contains(v["error"].(string), "saving the limits failed") {
		t.Fatalf("PUT with a failing disk = %d %v, want 500", code, v)
	}
	if code, _ := f.do(t, "DELETE", "/clients/k-1", ""); code != 500 {
		t.Fatalf("DELETE with a failing disk = %d, want 500", code)
	}
	if got := logs.lines("level=ERROR"); len(got) != 2 {
		t.Fatalf("want an ERROR line per failed save, got %q", got)
	}
	if d := f.l.TakeKind(KeyAPI, "k-1"); d.Limit != 10 {
		t.Fatalf("limiter: %+v, want the old limit 10", d)
	}
	if lim, _ := f.s.Get("k-1"); lim.Capacity != 10 {
		t.Fatalf("store: %+v, want the old limit 10", lim)
	}
}

func TestClientsHandler_ChangeOnDiskGets409(t *testing.T) {
	edit := []byte(`{"clients": {"k-9": {"capacity": 9, "refill_rate": 1}}}`)
	tests := []struct {
		name   string
		link   bool                                          // the clients file is a symlink to real.json
		change func(t *testing.T, path string) (kept string) // returns the file that must keep the edit
	}{
		{"hand edit", false, func(t *testing.T, path string) string {
			os.WriteFile(path, edit, 0o600)
			return path
		}},
		{"symlink re-pointed", true, func(t *testing.T, path string) string {
			// What ln -sfn other.json clients.json does.
			other := filepath.Join(filepath.Dir(path), "other.json")
			os.WriteFile(other, edit, 0o600)
			if err := os.Symlink("other.json", path+".new"); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(path+".new", path); err != nil {
				t.Fatal(err)
			}
			return other
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "clients.json")
			if tt.link {
				os.WriteFile(filepath.Join(filepath.Dir(path), "real.json"), []byte(`{"clients": {}}`), 0o600)
				if err := os.Symlink("real.json", path); err != nil {
					t.Skip("no symlinks here:", err)
				}
			}
			s, err := OpenStore(path, newStoreLimiter())
			if err != nil {
				t.Fatal(err)
			}
			f := &adminFixture{NewClientsHandler(s, nil), s, s.l, path}
			f.do(t, "PUT", "/clients/k-1", `{"capacity": 10, "refill_rate": 1}`)
			f.s.compact()
			kept := tt.change(t, path)
			for _, req := range [][3]string{{"PUT", "/clients/k-2", `{"capacity": 2, "refill_rate": 1}`}, {"DELETE", "/clients/k-1", ""},
				{"PUT", "/clients", `{"clients": {}}`}} {
				if code, v := f.do(t, req[0], req[1], req[2]); code != 409 || !strings.Contains(v["error"].(string), "reload") {
					t.Fatalf("%s %s after a %s = %d %v, want 409 saying to reload", req[0], req[1], tt.name, code, v)
				}
			}
			if data, _ := os.ReadFile(kept); string(data) != string(edit) {
				t.Fatalf("after the %s, %s holds:\n%s", tt.name, kept, data)
			}
		})
	}
}

func TestClientsHandler_CanonicalKeysAndBulkPut(t *testing.T) {
	f := newAdmin(t)
	if code, v := f.do(t, "PUT", "/clients/2001:DB8::1", `{"capacity": 7, "refill_rate": 1}`); code != 200 || v["key"] != "2001:db8::/64" {
		t.Fatalf("PUT an IPv6 address = %d %v, want its /64 as the key", code, v)
	}
	if code, v := f.do(t, "GET", "/clients/2001:db8::ffff", ""); code != 200 || v["key"] != "2001:db8::/64" {
		t.Fatalf("GET another address of the /64 = %d %v", code, v)
	}
	if code, v := f.do(t, "PUT", "/clients", `{"clients": {"k-1": {"capacity": 1, "refill_rate": 1}, "::ffff:10.0.0.1": {"capacity": 2, "refill_rate": 1}}}`); code != 200 || v["clients"] != 2.0 {
		t.Fatalf("bulk PUT = %d %v", code, v)
	}
	_, v := f.do(t, "GET", "/clients", "")
	want := map[string]any{"k-1": map[string]any{"capacity": 1.0, "refill_rate": 1.0}, "10.0.0.1": map[string]any{"capacity": 2.0, "refill_rate": 1.0}}
	if !reflect.DeepEqual(v["clients"], want) {
		t.Fatalf("after bulk PUT: %v, want %v", v["clients"], want)
	}
	if f.l.HasLimits(KeyIP, "2001:db8::1") || !f.l.HasLimits(KeyIP, "10.0.0.1") {
		t.Fatal("the limiter does not follow the bulk PUT")
	}
}

func TestClientsHandler_ConcurrentPutsAllSurvive(t *testing.T) {
	f := newAdmin(t)
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			w := httptest.NewRecorder()
			body := fmt.Sprintf(`{"capacity": %d, "refill_rate": 1}`, i+1)
			f.h.ServeHTTP(w, httptest.NewRequest("PUT", fmt.Sprint("/clients/k-", i), strings.NewReader(body)))
			if w.Code != 200 {
				t.Errorf("PUT k-%d = %d %s", i, w.Code, w.Body)
			}
		})
	}
	wg.Wait()
	if n := reopen(t, f.path).Len(); n != 30 {
		t.Fatalf("file holds %d clients after 30 concurrent PUTs", n)
	}
	if n := f.l.Stats().Overrides; n != 30 {
		t.Fatalf("limiter holds %d overrides after 30 concurrent PUTs", n)
	}
}
