package lb

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
)

// testBackends returns n healthy backends named b0..bn-1.
func testBackends(n int) []*Backend {
	out := make([]*Backend, n)
	for i := range out {
		out[i] = NewBackend(&url.URL{Scheme: "http", Host: fmt.Sprintf("b%d", i)})
	}
	return out
}

// picks runs n sequential picks and returns the backend hosts in order.
func picks(p Policy, backends []*Backend, n int) []string {
	out := make([]string, 0, n)
	for range n {
		i := p.Pick(0)
		if i < 0 {
			out = append(out, "-")
			continue
		}
		out = append(out, backends[i].URL.Host)
	}
	return out
}

func counts(seq []string) map[string]int {
	m := map[string]int{}
	for _, s := range seq {
		m[s]++
	}
	return m
}

func TestRoundRobin_ExactDistribution(t *testing.T) {
	bs := testBackends(3)
	got := counts(picks(NewRoundRobin(bs), bs, 300))
	want := map[string]int{"b0": 100, "b1": 100, "b2": 100}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("300 picks over 3 backends: got %v, want %v", got, want)
	}
}

func TestRoundRobin_SkipsUnhealthyEvenly(t *testing.T) {
	bs := testBackends(3)
	bs[1].healthy.Store(false)
	got := counts(picks(NewRoundRobin(bs), bs, 300))
	want := map[string]int{"b0": 150, "b2": 150}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("b1 down: got %v, want %v (its turns shared, not all given to b2)", got, want)
	}
}

func TestWeightedRoundRobin_SmoothSequence(t *testing.T) {
	tests := []struct {
		weights []int
		want    string
	}{
		{[]int{3, 1}, "b0 b0 b1 b0"},
		{[]int{5, 1, 1}, "b0 b0 b1 b0 b2 b0 b0"}, // nginx's documented example
		{[]int{1, 1, 1}, "b0 b1 b2"},
		{[]int{20, 10}, "b0 b1 b0"}, // reduced by the gcd
		{[]int{0, -3, 2}, "b2 b0 b1 b2"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.weights), func(t *testing.T) {
			bs := testBackends(len(tt.weights))
			p := NewWeightedRoundRobin(bs, tt.weights)
			n := len(strings.Fields(tt.want))
			if got := strings.Join(picks(p, bs, n), " "); got != tt.want {
				t.Fatalf("first cycle: got %q, want %q", got, tt.want)
			}
			// The next cycle repeats the first.
			if got := strings.Join(picks(p, bs, n), " "); got != tt.want {
				t.Fatalf("second cycle: got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestWeightedRoundRobin_SkipsUnhealthy(t *testing.T) {
	bs := testBackends(3)
	p := NewWeightedRoundRobin(bs, []int{4, 2, 1})
	bs[0].healthy.Store(false)
	got := counts(picks(p, bs, 700))
	if got["b0"] != 0 || got["-"] != 0 {
		t.Fatalf("b0 down: got %v; want no pick of b0 and no failed pick", got)
	}
	if got["b1"] <= got["b2"] {
		t.Fatalf("with b0 down, b1 (weight 2) should still get more than b2 (weight 1): %v", got)
	}
}

func TestLeastConnections_PicksFewestInFlight(t *testing.T) {
	bs := testBackends(3)
	p := NewLeastConnections(bs, nil)
	bs[0].inFlight.Store(5)
	bs[1].inFlight.Store(2)
	bs[2].inFlight.Store(7)
	for range 10 {
		if i := p.Pick(0); i != 1 {
			t.Fatalf("in-flight 5,2,7: picked b%d, want b1", i)
		}
	}
	bs[1].healthy.Store(false)
	if i := p.Pick(0); i != 0 {
		t.Fatalf("b1 down, in-flight 5,-,7: picked b%d, want b0", i)
	}
}

func TestLeastConnections_HeldRequestsSpreadLoad(t *testing.T) {
	// Each pick holds its request (in-flight +1) as the balancer does, so
	// 9 held requests over 3 backends must land 3, 3, 3.
	bs := testBackends(3)
	p := NewLeastConnections(bs, nil)
	for range 9 {
		bs[p.Pick(0)].inFlight.Add(1)
	}
	for _, b := range bs {
		if n := b.InFlight(); n != 3 {
			t.Fatalf("9 held requests: %s holds %d, want 3", b.URL.Host, n)
		}
	}
}

func TestLeastConnections_TiesRotate(t *testing.T) {
	bs := testBackends(3)
	got := counts(picks(NewLeastConnections(bs, nil), bs, 300))
	want := map[string]int{"b0": 100, "b1": 100, "b2": 100}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("idle pool: got %v, want %v", got, want)
	}
}

func TestLeastConnections_Weighted(t *testing.T) {
	bs := testBackends(2)
	p := NewLeastConnections(bs, []int{3, 1})
	bs[0].inFlight.Store(5) // 5/3 per weight
	bs[1].inFlight.Store(2) // 2/1 per weight
	if i := p.Pick(0); i != 0 {
		t.Fatalf("in-flight 5 (weight 3) vs 2 (weight 1): picked b%d, want b0", i)
	}
}

func TestPolicies_NoneAvailable(t *testing.T) {
	for _, name := range []string{AlgorithmRoundRobin, AlgorithmWeightedRoundRobin, AlgorithmLeastConnections} {
		t.Run(name, func(t *testing.T) {
			empty, err := NewPolicy(name, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if i := empty.Pick(0); i != -1 {
				t.Fatalf("empty pool: Pick = %d, want -1", i)
			}
			bs := testBackends(3)
			p, _ := NewPolicy(name, bs, []int{2, 1, 1})
			if i := p.Pick(0b111); i != -1 {
				t.Fatalf("all tried: Pick = %d, want -1", i)
			}
			for _, b := range bs {
				b.healthy.Store(false)
			}
			if i := p.Pick(0); i != -1 {
				t.Fatalf("all unhealthy: Pick = %d, want -1", i)
			}
			bs[2].healthy.Store(true)
			if i := p.Pick(0); i != 2 {
				t.Fatalf("only b2 healthy: Pick = %d, want 2", i)
			}
			if i := p.Pick(1 << 2); i != -1 {
				t.Fatalf("only b2 healthy and already tried: Pick = %d, want -1", i)
			}
		})
	}
}

func TestNewPolicy_UnknownAlgorithm(t *testing.T) {
	if _, err := NewPolicy("random", nil, nil); err == nil || !strings.Contains(err.Error(), `"random"`) {
		t.Fatalf("NewPolicy(random) error = %v, want one naming the algorithm", err)
	}
}

// TestPolicies_ConcurrentPicks runs picks from many goroutines; under -race
// it proves the policies need no lock, and for round robin that no turn is
// lost or duplicated.
func TestPolicies_ConcurrentPicks(t *testing.T) {
	for _, name := range []string{AlgorithmRoundRobin, AlgorithmWeightedRoundRobin, AlgorithmLeastConnections} {
		t.Run(name, func(t *testing.T) {
			bs := testBackends(4)
			p, _ := NewPolicy(name, bs, []int{1, 1, 1, 1})
			const goroutines, each = 8, 1000
			var mu sync.Mutex
			total := make([]int, len(bs))
			var wg sync.WaitGroup
			for range goroutines {
				wg.Go(func() {
					local := make([]int, len(bs))
					for range each {
						i := p.Pick(0)
						if i < 0 {
							t.Error("Pick found no backend in a healthy pool")
							return
						}
						bs[i].inFlight.Add(1)
						local[i]++
						bs[i].inFlight.Add(-1)
					}
					mu.Lock()
					for i, n := range local {
						total[i] += n
					}
					mu.Unlock()
				})
			}
			wg.Wait()
			if name != AlgorithmLeastConnections {
				want := []int{2000, 2000, 2000, 2000}
				if !slices.Equal(total, want) {
					t.Fatalf("8000 concurrent picks: got %v, want %v", total, want)
				}
			}
		})
	}
}
