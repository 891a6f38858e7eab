package lb

import (
	"fmt"
	"sync/atomic"
)

// Policy chooses the backend for a request among a fixed set of backends.
//
// Pick returns the index of the chosen backend, or -1 when every backend is
// unhealthy or already tried. tried is a bit set of backend indexes to skip
// (index i is bit i%64: on a pool of more than 64 backends a retry may also
// skip a backend that shares a bit with one already tried, which is harmless).
// Implementations are safe for concurrent use, take no lock and allocate
// nothing.
type Policy interface {
	Pick(tried uint64) int
}

// Algorithm names accepted by NewPolicy.
const (
	AlgorithmRoundRobin         = "round-robin"
	AlgorithmWeightedRoundRobin = "weighted-round-robin"
	AlgorithmLeastConnections   = "least-connections"
)

// NewPolicy returns the policy called name over backends, whose weights are
// given in the same order (weights may be nil when all are 1).
func NewPolicy(name string, backends []*Backend, weights []int) (Policy, error) {
	switch name {
	case AlgorithmRoundRobin:
		return &RoundRobin{backends: backends}, nil
	case AlgorithmWeightedRoundRobin:
		return NewWeightedRoundRobin(backends, weights), nil
	case AlgorithmLeastConnections:
		return NewLeastConnections(backends, weights), nil
	}
	return nil, fmt.Errorf("lb: unknown algorithm %q (want %s, %s or %s)", name,
		AlgorithmRoundRobin, AlgorithmWeightedRoundRobin, AlgorithmLeastConnections)
}

// usable reports whether b may take the request: healthy and not yet tried.
func usable(b *Backend, i int, tried uint64) bool {
	return tried&(1<<(uint(i)&63)) == 0 && b.healthy.Load()
}

// RoundRobin sends each request to the next backend in turn.
type RoundRobin struct {
	backends []*Backend
	// next is the shared cursor. Every backend looked at advances it, so an
	// unhealthy backend's turn passes to the one after it and the remaining
	// backends share the load evenly instead of the next one taking double.
	next atomic.Uint64
}

// NewRoundRobin returns a round-robin policy over backends.
func NewRoundRobin(backends []*Backend) *RoundRobin { return &RoundRobin{backends: backends} }

// Pick implements Policy.
func (p *RoundRobin) Pick(tried uint64) int {
	n := uint64(len(p.backends))
	for range n {
		i := int((p.next.Add(1) - 1) % n)
		if usable(p.backends[i], i, tried) {
			return i
		}
	}
	return -1
}

// WeightedRoundRobin spreads requests in proportion to the backends'
// weights, interleaved the way nginx's smooth weighted round robin does it:
// weights 3 and 1 give a, a, b, a rather than a, a, a, b.
//
// The sequence for one cycle is computed once, when the pool is built, so a
// pick is an atomic increment and an array read instead of nginx's update of
// every backend's current weight under a lock. An unhealthy backend's slots go
// to the backends after it in the sequence, which keeps the others close to
// their weights.
type WeightedRoundRobin struct {
	backends []*Backend
	seq      []uint16 // backend index for each slot of one cycle
	next     atomic.Uint64
}

// NewWeightedRoundRobin returns a smooth weighted round robin over backends.
// Weights below 1 count as 1; the cycle is as long as the sum of the weights
// divided by their greatest common divisor.
func NewWeightedRoundRobin(backends []*Backend, weights []int) *WeightedRoundRobin {
	return &WeightedRoundRobin{backends: backends, seq: smoothSequence(normalWeights(len(backends), weights))}
}

// Pick implements Policy.
func (p *WeightedRoundRobin) Pick(tried uint64) int {
	n := uint64(len(p.seq))
	if n == 0 {
		return -1
	}
	start := p.next.Add(1) - 1
	// Scan forward locally and advance the shared cursor past the skipped
	// slots only when something was skipped: the common case stays one
	// atomic add, and the all-down case costs one pass over the cycle.
	for k := range n {
		i := int(p.seq[(start+k)%n])
		if usable(p.backends[i], i, tried) {
			if k > 0 {
				p.next.Add(k)
			}
			return i
		}
	}
	return -1
}

// smoothSequence lays out one cycle of nginx's smooth weighted round robin:
// each step adds every weight to its backend's current value, picks the
// largest and subtracts the total from it.
func smoothSequence(weights []int) []uint16 {
	total := 0
	for _, w := range weights {
		total += w
	}
	seq := make([]uint16, 0, total)
	current := make([]int, len(weights))
	for range total {
		best := 0
		for i, w := range weights {
			current[i] += w
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		seq = append(seq, uint16(best))
	}
	return seq
}

// normalWeights returns n weights, each at least 1, divided by their
// greatest common divisor so that 20,10 cycles as quickly as 2,1.
func normalWeights(n int, weights []int) []int {
	out := make([]int, n)
	g := 0
	for i := range out {
		out[i] = 1
		if i < len(weights) && weights[i] > 1 {
			out[i] = weights[i]
		}
		g = gcd(g, out[i])
	}
	for i := range out {
		out[i] /= g
	}
	return out
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// LeastConnections sends each request to the backend with the fewest
// requests in flight relative to its weight. The scan starts at a rotating
// position so that ties, such as an idle pool, are shared in turn rather
// than all going to the first backend.
type LeastConnections struct {
	backends []*Backend
	weights  []int64
	next     atomic.Uint64
}

// NewLeastConnections returns a least-connections policy over backends.
// Weights below 1 count as 1.
func NewLeastConnections(backends []*Backend, weights []int) *LeastConnections {
	w := make([]int64, len(backends))
	for i, v := range normalWeights(len(backends), weights) {
		w[i] = int64(v)
	}
	return &LeastConnections{backends: backends, weights: w}
}

// Pick implements Policy.
func (p *LeastConnections) Pick(tried uint64) int {
	n := len(p.backends)
	if n == 0 {
		return -1
	}
	i := int((p.next.Add(1) - 1) % uint64(n))
	best, bestLoad, bestWeight := -1, int64(0), int64(1)
	for range n {
		if b := p.backends[i]; usable(b, i, tried) {
			// Compare load/weight without dividing: a/wa < b/wb <=> a*wb < b*wa.
			load, w := b.inFlight.Load(), p.weights[i]
			if best < 0 || load*bestWeight < bestLoad*w {
				best, bestLoad, bestWeight = i, load, w
			}
		}
		if i++; i == n {
			i = 0
		}
	}
	return best
}
