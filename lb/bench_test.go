package lb

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkPick answers: what does choosing a backend cost, per policy and
// pool size, with every core picking at once?
func BenchmarkPick(b *testing.B) {
	for _, name := range []string{AlgorithmRoundRobin, AlgorithmWeightedRoundRobin, AlgorithmLeastConnections} {
		for _, n := range []int{3, 16} {
			b.Run(fmt.Sprintf("%s/backends=%d", name, n), func(b *testing.B) {
				bs := testBackends(n)
				weights := make([]int, n)
				for i := range weights {
					weights[i] = i%3 + 1
				}
				p, _ := NewPolicy(name, bs, weights)
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if p.Pick(0) < 0 {
							b.Fatal("no backend")
						}
					}
				})
			})
		}
	}
}

// BenchmarkProxy answers: what does one request through the balancer cost,
// end to end over loopback keep-alive connections to an httptest backend?
// The client and the backend run in the same process, so the figures
// include them: the "direct" case, the client talking to the backend
// itself, is that share, and the difference is the balancer's.
func BenchmarkProxy(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from the backend")
	}))
	defer backend.Close()
	b.Run("direct", func(b *testing.B) { benchmarkGet(b, backend.URL+"/") })
	for _, accessLog := range []bool{false, true} {
		b.Run(fmt.Sprintf("keepalive/access-log=%v", accessLog), func(b *testing.B) {
			cfg := Config{Backends: []BackendConfig{{URL: mustURL(b, backend.URL)}}, AccessLog: accessLog}
			bal, err := New(cfg, Options{Logger: (&logBuffer{}).logger(), AccessLog: discardLogger()})
			if err != nil {
				b.Fatal(err)
			}
			front := httptest.NewServer(bal)
			defer front.Close()
			benchmarkGet(b, front.URL+"/")
		})
	}
}

// benchmarkGet measures sequential keep-alive GETs of url.
func benchmarkGet(b *testing.B, url string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	req, _ := http.NewRequest("GET", url, nil)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}
