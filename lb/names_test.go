package lb

import (
	"strings"
	"testing"
)

func TestBalancer_NamesBackendsAndARenameStartsAfresh(t *testing.T) {
	a, b := mustURL(t, "http://127.0.0.1:1"), mustURL(t, "http://127.0.0.1:2")
	cfg := Config{Backends: []BackendConfig{{URL: a, Name: "web-1"}, {URL: b}}}
	bal, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	st := bal.Status()
	if st[0].Name != "web-1" || st[0].URL != a.String() || st[1].Name != b.String() || st[1].URL != b.String() {
		t.Fatalf("status names %q %q, URLs %q %q; want web-1 and the URL where none is given",
			st[0].Name, st[1].Name, st[0].URL, st[1].URL)
	}
	if m := bal.Metrics(); m.Backends[0].Name != "web-1" || m.Backends[0].URL != a.String() {
		t.Fatalf("metrics: %+v", m.Backends[0])
	}
	if h := bal.History(); h.Backends[0].Name != "web-1" || h.Backends[0].URL != a.String() || h.Backends[1].Name != b.String() {
		t.Fatalf("history names %q %q, URL %q; want web-1 with its URL, and the URL where no name is given",
			h.Backends[0].Name, h.Backends[1].Name, h.Backends[0].URL)
	}

	first := bal.pool.Load().backends[0]
	first.requests.Add(7)
	if err := bal.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if bal.pool.Load().backends[0] != first {
		t.Fatal("a reload that keeps URL and name made a new backend, losing its health and counters")
	}
	cfg.Backends[0].Name = "web-one"
	if err := bal.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if be := bal.pool.Load().backends[0]; be == first || be.Name() != "web-one" || be.requests.Load() != 0 {
		t.Fatalf("renamed backend: %q with %d requests; want a new one, counting from 0 under its new name",
			be.Name(), be.requests.Load())
	}

	dup := Config{Backends: []BackendConfig{{URL: a, Name: "x"}, {URL: b, Name: "x"}}}
	if err := bal.Apply(dup); err == nil || !strings.Contains(err.Error(), `backends[1]: the name "x" is taken`) {
		t.Fatalf("two backends named x: %v", err)
	}
}
