package bucket

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
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
	l := New(Config{Default: Limits{Capacity: 100, RefillRate: 50}})
	return &adminFixture{NewClientsHandler(s, l), s, l, path}
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
	again, err := OpenStore(f.path)
	if err != nil {
		t.Fatal(err)
	}
	if got := again.All(); !reflect.DeepEqual(got, map[string]Limits{"192.0.2.1": {3, 1}}) {
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

func TestClientsHandler_FailedWriteChangesNothing(t *testing.T) {
	f := newAdmin(t)
	f.do(t, "PUT", "/clients/k-1", `{"capacity": 10, "refill_rate": 1}`)
	f.s.rename = func(string, string) error { return errors.New("disk full") }
	if code, v := f.do(t, "PUT", "/clients/k-1", `{"capacity": 2, "refill_rate": 1}`); code != 500 || !strings.Contains(v["error"].(string), "disk full") {
		t.Fatalf("PUT with a failing disk = %d %v, want 500", code, v)
	}
	if code, _ := f.do(t, "DELETE", "/clients/k-1", ""); code != 500 {
		t.Fatalf("DELETE with a failing disk = %d, want 500", code)
	}
	if d := f.l.TakeKind(KeyAPI, "k-1"); d.Limit != 10 {
		t.Fatalf("limiter: %+v, want the old limit 10", d)
	}
	if lim, _ := f.s.Get("k-1"); lim.Capacity != 10 {
		t.Fatalf("store: %+v, want the old limit 10", lim)
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
	again, err := OpenStore(f.path)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(again.All()); n != 30 {
		t.Fatalf("file holds %d clients after 30 concurrent PUTs", n)
	}
	if n := f.l.Stats().Overrides; n != 30 {
		t.Fatalf("limiter holds %d overrides after 30 concurrent PUTs", n)
	}
}
