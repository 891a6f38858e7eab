package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// faults kills and restarts backends and reloads the balancer's
// configuration on a schedule, from run's goroutine; its counts are read
// once run has returned.
type faults struct {
	bal         *balancer
	backends    []*backend
	flakyURL    string
	rng         *rand.Rand
	ex          *explainer    // told of each reload (a backend tells it of its own kill)
	killEvery   time.Duration // 0: never
	downFor     time.Duration
	reloadEvery time.Duration // 0: never
	logf        func(format string, args ...any)

	kills, restarts, restartFailures, reloads, reloadFailures int
}

// set returns configuration generation i: the backends but the last (even
// i) or but the first (odd i), and the flaky one, under round-robin and
// least-connections in turn, so that each reload adds one backend, removes
// another and changes the policy.
func (f *faults) set(i int) backendSet {
	bs := f.backends[:len(f.backends)-1]
	algorithm := "round-robin"
	if i%2 == 1 {
		bs, algorithm = f.backends[1:], "least-connections"
	}
	s := backendSet{algorithm: algorithm}
	for _, b := range bs {
		s.urls = append(s.urls, "http://"+b.address())
	}
	s.urls = append(s.urls, f.flakyURL)
	return s
}

// run injects faults until ctx ends, then restarts the backends still down.
func (f *faults) run(ctx context.Context) {
	type restart struct {
		b  *backend
		at time.Time
	}
	var down []restart
	start := time.Now()
	nextKill, nextReload := start.Add(f.killEvery), start.Add(f.reloadEvery)
	gen := 0
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			for _, r := range down {
				f.restart(r.b, start)
			}
			return
		case <-tick.C:
		}
		now := time.Now()
		for len(down) > 0 && !now.Before(down[0].at) {
			f.restart(down[0].b, start)
			down = down[1:]
		}
		if f.killEvery > 0 && !now.Before(nextKill) {
			nextKill = now.Add(f.killEvery)
			var up []*backend
			for _, b := range f.backends {
				if b.isUp() {
					up = append(up, b)
				}
			}
			if len(up) > 1 { // one stays up, so that the soak is not only 502s and 503s
				b := up[f.rng.IntN(len(up))]
				b.kill(func() bool { return f.rng.IntN(2) == 0 })
				f.kills++
				f.logf("%6.1fs  killed backend %s (%s); restart in %v", time.Since(start).Seconds(), b.name, b.address(), f.downFor)
				down = append(down, restart{b, now.Add(f.downFor)})
			}
		}
		if f.reloadEvery > 0 && !now.Before(nextReload) {
			nextReload = now.Add(f.reloadEvery)
			gen++
			f.ex.happened(now, "a reload")
			if err := f.bal.reload(f.set(gen)); err != nil {
				f.reloadFailures++
				f.logf("%6.1fs  reload failed: %v", time.Since(start).Seconds(), err)
			} else {
				f.reloads++
				f.logf("%6.1fs  reloaded: %s", time.Since(start).Seconds(), describeSet(f.set(gen)))
			}
		}
	}
}

func (f *faults) restart(b *backend, start time.Time) {
	if err := b.start(); err != nil {
		f.restartFailures++
		f.logf("%6.1fs  restart of %s failed: %v", time.Since(start).Seconds(), b.name, err)
		return
	}
	f.restarts++
	f.logf("%6.1fs  restarted backend %s", time.Since(start).Seconds(), b.name)
}

func describeSet(s backendSet) string { return fmt.Sprintf("%s over %v", s.algorithm, s.urls) }
