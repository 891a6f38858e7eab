package main

import (
	"context"
	"sync"
	"time"

	"stdlb/bucket"
)

// limiterRates keeps a minute of the rate limiter's decision counts,
// sampled every five seconds, for the admitted/s and rejected/s of
// /status and the status page, over the same minute as the balancer's own
// rates (lb.Balancer.RunSampler). It is safe for concurrent use.
type limiterRates struct {
	// mu guards the ring: written by run, read by rates.
	mu      sync.Mutex
	samples [13]decisions // 12 intervals of 5 s
	n, last int           // samples filled; index of the newest
}

// decisions is the limiter's cumulative counts at one instant.
type decisions struct {
	at                 time.Time
	admitted, rejected uint64
}

func (r *limiterRates) add(d decisions) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last = (r.last + 1) % len(r.samples)
	r.samples[r.last] = d
	r.n = min(r.n+1, len(r.samples))
}

// rates returns the decisions per second from the oldest sample kept to
// cur, and the seconds that covers; all zero for less than a second.
func (r *limiterRates) rates(cur decisions) (window, admitted, rejected float64) {
	r.mu.Lock()
	if r.n == 0 {
		r.mu.Unlock()
		return 0, 0, 0
	}
	from := r.samples[(r.last-r.n+1+len(r.samples))%len(r.samples)]
	r.mu.Unlock()
	dt := cur.at.Sub(from.at).Seconds()
	if dt < 1 {
		return 0, 0, 0
	}
	per := func(n uint64) float64 { return float64(int64(float64(n)/dt*1000+0.5)) / 1000 }
	return float64(int64(dt*1000+0.5)) / 1000, per(cur.admitted - from.admitted), per(cur.rejected - from.rejected)
}

// run samples l at once and then every five seconds until ctx ends.
func (r *limiterRates) run(ctx context.Context, l *bucket.Limiter) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		st := l.Stats()
		r.add(decisions{at: time.Now(), admitted: st.Admitted, rejected: st.Rejected})
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
