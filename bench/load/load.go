// Package load is the load generator behind `go run ./bench` and the
// `make bench` suite: closed-loop and open-loop HTTP/1.1 load over
// keep-alive connections, with latency kept in log-linear histograms.
package load

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Config describes one run. Zero fields take the defaults noted.
type Config struct {
	// URL is the target, http:// or https://.
	URL string
	// Method defaults to GET.
	Method string
	// Header is sent with every request; a Host entry replaces the URL's.
	Header http.Header
	// Body is sent with every request; nil sends none.
	Body []byte
	// Conns is the number of workers, each with its own keep-alive
	// connection. Default 1. In open-loop mode it caps the requests in
	// flight: when the target is slower than Rate allows, requests queue
	// and that queueing counts in their latency.
	Conns int
	// Duration is the measured time. Required.
	Duration time.Duration
	// Warmup runs before Duration and is left out of every figure, so
	// connection setup and cold caches do not count. Default 0.
	Warmup time.Duration
	// Rate, in requests per second, selects open-loop mode: request i is
	// due at start + i/Rate, whether or not earlier ones have answered,
	// and its latency is counted from that due time. 0 means closed loop:
	// each worker sends its next request when the previous one is done.
	Rate float64
	// Timeout bounds each request, dial included. Default 5s.
	Timeout time.Duration
	// Engine is "raw" (default: a minimal HTTP/1.1 client cheap enough
	// not to steal the target's CPU) or "std" (net/http, as a
	// cross-check).
	Engine string
	// Insecure skips TLS certificate verification.
	Insecure bool
	// MeasureStart and MeasureEnd, when set, are called as the measured
	// window opens and closes (from a goroutine of Run's), for example to
	// sample the CPU time of the process under test. Neither is called
	// for a window that a cancelled ctx cut short.
	MeasureStart, MeasureEnd func()
}

// Result holds the figures of one run's measured window.
type Result struct {
	URL    string
	Conns  int
	Rate   float64 // 0 for closed loop
	Warmup time.Duration
	// Duration is the measured window actually run. In open loop it
	// stretches to the last answer to a request due in the window, so an
	// overloaded target's backlog does not inflate Throughput.
	Duration time.Duration
	// Latency holds nanoseconds per response (any status), from the
	// request's send time in closed loop and from its due time in open
	// loop. Failed requests are counted in Errors, not here.
	Latency Histogram
	// Service holds, in open loop only, nanoseconds from the actual send:
	// the figure coordinated omission would have reported.
	Service Histogram
	// Status counts responses by status code.
	Status map[int]int64
	Errors ErrorCounts
	// Unsent counts open-loop requests due in the window that could not
	// be sent before the drain deadline (end + Timeout) because every
	// connection was busy. A non-zero value means the target stalled.
	Unsent int64
	// Interrupted is set when ctx was cancelled before the end.
	Interrupted bool
}

// Mode returns "closed" or "open".
func (r *Result) Mode() string {
	if r.Rate > 0 {
		return "open"
	}
	return "closed"
}

// Responses returns the number of responses received, of any status.
func (r *Result) Responses() int64 { return int64(r.Latency.Count()) }

// Requests returns responses plus failed requests.
func (r *Result) Requests() int64 { return r.Responses() + r.Errors.Total() }

// Throughput returns responses per second over the measured window.
func (r *Result) Throughput() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.Responses()) / r.Duration.Seconds()
}

// Run sends load as cfg says and returns the figures of the measured
// window. Cancelling ctx stops it early: the result then covers what was
// measured so far and has Interrupted set. Run is safe to call from
// several goroutines, though runs side by side share the machine.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Duration <= 0 {
		return nil, errors.New("load: duration must be positive")
	}
	if cfg.Rate < 0 || cfg.Warmup < 0 || cfg.Conns < 0 || cfg.Timeout < 0 {
		return nil, errors.New("load: rate, warmup, conns and timeout must not be negative")
	}
	cfg.Conns = max(cfg.Conns, 1)
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	f, err := newClientFactory(&cfg)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	defer f.shutdown()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := &schedule{start: time.Now(), rate: cfg.Rate, timeout: cfg.Timeout}
	s.warmEnd = s.start.Add(cfg.Warmup)
	s.end = s.warmEnd.Add(cfg.Duration)
	s.drainEnd = s.end.Add(cfg.Timeout)

	workers := make([]*worker, cfg.Conns)
	for i := range workers {
		c, err := f.newClient(runCtx, cfg.Body)
		if err != nil {
			return nil, fmt.Errorf("load: %w", err)
		}
		workers[i] = &worker{c: c}
	}
	var wg sync.WaitGroup
	wg.Go(func() { s.callHooks(runCtx, cfg.MeasureStart, cfg.MeasureEnd) })
	for _, w := range workers {
		stop := context.AfterFunc(runCtx, w.c.interrupt)
		wg.Go(func() {
			defer stop()
			defer w.c.close()
			if cfg.Rate > 0 {
				w.openLoop(runCtx, s)
			} else {
				w.closedLoop(runCtx, s)
			}
		})
	}
	wg.Wait()
	stopped := time.Now()

	r := &Result{
		URL: cfg.URL, Conns: cfg.Conns, Rate: cfg.Rate, Warmup: cfg.Warmup,
		Duration: cfg.Duration, Status: map[int]int64{},
	}
	if ctx.Err() != nil {
		r.Interrupted = true
		if stopped.After(s.end) {
			stopped = s.end
		}
		r.Duration = max(0, stopped.Sub(s.warmEnd))
	}
	for _, w := range workers {
		if cfg.Rate > 0 && !r.Interrupted {
			r.Duration = max(r.Duration, w.lastDone.Sub(s.warmEnd))
		}
		r.Latency.Merge(&w.lat)
		r.Service.Merge(&w.svc)
		r.Errors.merge(&w.errs)
		r.Unsent += w.unsent
		for code, n := range w.status {
			if n > 0 {
				r.Status[code] += n
			}
		}
	}
	return r, nil
}

// Rounds runs every config once per round, for rounds rounds, rotating
// which one goes first (A B, B A, A B, ...), so slow drift of the machine
// (thermal limits, a neighbour's load) falls on every target alike. It
// returns results[round][target]. progress, when set, is called after each
// run. A cancelled ctx stops it between or during runs with ctx's error
// and the rounds completed so far.
func Rounds(ctx context.Context, configs []Config, rounds int, progress func(round, target int, r *Result)) ([][]*Result, error) {
	if len(configs) == 0 || rounds < 1 {
		return nil, fmt.Errorf("load: rounds needs at least one config and one round")
	}
	var out [][]*Result
	for round := range rounds {
		results := make([]*Result, len(configs))
		for k := range configs {
			i := (round + k) % len(configs)
			r, err := Run(ctx, configs[i])
			if err != nil {
				return out, fmt.Errorf("round %d, %s: %w", round+1, configs[i].URL, err)
			}
			if r.Interrupted {
				return out, ctx.Err()
			}
			results[i] = r
			if progress != nil {
				progress(round, i, r)
			}
		}
		out = append(out, results)
	}
	return out, nil
}

// Median returns the median of xs (the mean of the middle two for an even
// count), or 0 for none. xs is not modified.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// schedule holds a run's instants, shared read-only by its workers except
// for next, the open-loop sequence number.
type schedule struct {
	start, warmEnd, end, drainEnd time.Time
	rate                          float64
	timeout                       time.Duration
	next                          atomic.Int64
}

// due returns when open-loop request i is due.
func (s *schedule) due(i int64) time.Time {
	return s.start.Add(time.Duration(float64(i) * float64(time.Second) / s.rate))
}

// callHooks calls start and end as the measured window opens and closes.
func (s *schedule) callHooks(ctx context.Context, start, end func()) {
	t := time.NewTimer(time.Until(s.warmEnd))
	defer t.Stop()
	for _, step := range []struct {
		at   time.Time
		hook func()
	}{{s.warmEnd, start}, {s.end, end}} {
		t.Reset(time.Until(step.at))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if step.hook != nil {
			step.hook()
		}
	}
}

// worker is one connection's load loop and its private figures, merged
// after the run so the hot path takes no shared lock.
type worker struct {
	c      client
	lat    Histogram
	svc    Histogram
	status [1000]int64
	errs   ErrorCounts
	unsent int64
	// lastDone is when the worker's last measured open-loop request ended.
	lastDone time.Time
}

func (w *worker) record(status int, err error, lat time.Duration) {
	if err != nil {
		w.errs.add(err)
		return
	}
	w.lat.Record(int64(lat))
	w.status[min(max(status, 0), len(w.status)-1)]++
}

// closedLoop sends a request, waits for the whole answer, and repeats until
// the window closes. Requests started in the warm-up are not recorded.
func (w *worker) closedLoop(ctx context.Context, s *schedule) {
	for {
		sent := time.Now()
		if !sent.Before(s.end) {
			return
		}
		status, err := w.c.do(ctx, sent.Add(s.timeout))
		done := time.Now()
		if ctx.Err() != nil {
			return // interrupted: this request is neither answer nor failure
		}
		if !sent.Before(s.warmEnd) {
			w.record(status, err, done.Sub(sent))
		}
	}
}

// openLoop claims the next due request, waits for its due time if that is
// still ahead, sends it, and records latency from the due time. A worker
// that is late (every connection was busy) sends at once rather than skip
// the request, so a stall shows as the queue of late requests it causes.
func (w *worker) openLoop(ctx context.Context, s *schedule) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		i := s.next.Add(1) - 1
		due := s.due(i)
		if !due.Before(s.end) {
			return
		}
		measured := !due.Before(s.warmEnd)
		sent := time.Now()
		if sent.After(s.drainEnd) {
			if measured {
				w.unsent++
			}
			continue
		}
		if wait := due.Sub(sent); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
			sent = time.Now()
		}
		status, err := w.c.do(ctx, sent.Add(s.timeout))
		done := time.Now()
		if ctx.Err() != nil {
			return
		}
		if measured {
			w.lastDone = done
			w.record(status, err, done.Sub(due))
			if err == nil {
				w.svc.Record(int64(done.Sub(sent)))
			}
		}
	}
}
