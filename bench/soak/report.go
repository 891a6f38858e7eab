package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"
)

// sample is the balancer's state at one instant, and the clients' totals.
type sample struct {
	at                         time.Duration
	proc                       procSample
	procOK                     bool
	inFlight, upgraded         int64
	gaugesOK                   bool
	sent, failures, mismatches int64
}

// sampler samples the balancer every so often from run's goroutine; its
// samples are read once run has returned.
type sampler struct {
	bal     *balancer
	t       *tally
	every   time.Duration
	start   time.Time
	out     io.Writer
	client  http.Client
	samples []sample
}

func (s *sampler) run(ctx context.Context) {
	s.client.Timeout = 2 * time.Second
	fmt.Fprintf(s.out, "%8s %9s %5s %7s %9s %4s %9s %7s %10s\n", "time", "rss MiB", "fds", "threads", "in-flight", "ws", "requests", "failed", "mismatches")
	tick := time.NewTicker(s.every)
	defer tick.Stop()
	for {
		s.print(s.take())
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// take samples now, and keeps the sample.
func (s *sampler) take() sample {
	sm := sample{at: time.Since(s.start)}
	var err error
	sm.proc, err = readProc(s.bal.pid())
	sm.procOK = err == nil
	sm.inFlight, sm.upgraded, err = s.bal.gauges(&s.client)
	sm.gaugesOK = err == nil
	sm.sent, sm.failures, sm.mismatches = s.t.totals()
	s.samples = append(s.samples, sm)
	return sm
}

func (s *sampler) print(sm sample) {
	fmt.Fprintf(s.out, "%7.0fs %9.1f %5d %7d %9d %4d %9d %7d %10d\n", sm.at.Seconds(), float64(sm.proc.rssKB)/1024,
		sm.proc.fds, sm.proc.threads, sm.inFlight, sm.upgraded, sm.sent, sm.failures, sm.mismatches)
}

// settle waits, up to limit, until the balancer has no request in flight
// and no upgraded connection open, and says whether it got there and when.
func (s *sampler) settle(limit time.Duration) (bool, time.Duration) {
	start := time.Now()
	for time.Since(start) < limit {
		in, up, err := s.bal.gauges(&s.client)
		if err == nil && in == 0 && up == 0 {
			return true, time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false, time.Since(start)
}

// result is what a soak came to.
type result struct {
	opts            options
	elapsed         time.Duration
	tally           *tally
	samples         []sample
	after           sample // once the load stopped and the balancer settled
	quiet           bool
	quietAfter      time.Duration
	faults          *faults
	flakyModes      map[string]int64
	backendRequests map[string]int64
	died            string // why, when the balancer died during the load
	exitCode        int
	exitTook        time.Duration
	exitInTime      bool
	log             *stderrLog
	accessLines     int64
}

// failures lists what makes the soak fail.
func (r *result) failures() []string {
	var f []string
	if n := r.tally.mismatchN; n > 0 {
		f = append(f, fmt.Sprintf("%d mismatches", n))
	}
	if n := r.log.panicN; n > 0 {
		f = append(f, fmt.Sprintf("%d stderr lines about a panic, data race or fatal error", n))
	}
	switch {
	case r.died != "":
		f = append(f, r.died)
	case !r.exitInTime:
		f = append(f, "the balancer did not exit within its drain after SIGTERM")
	case r.exitCode != 0:
		f = append(f, fmt.Sprintf("the balancer exited with status %d after SIGTERM", r.exitCode))
	}
	return f
}

func (r *result) print(w io.Writer) {
	t, o := r.tally, r.opts
	fmt.Fprintf(w, "\n== soak: %v, %d clients, %d backends + 1 flaky (%.0f%% misbehaving), access log %s, race %v, seed %d ==\n",
		r.elapsed.Round(time.Second), o.clients, o.backends, 100*o.flaky, onOff(o.accessLog), o.race, o.seed)
	var sum kindCount
	kinds := slices.Sorted(maps.Keys(t.kinds))
	fmt.Fprintf(w, "\nrequests by scenario:\n  %-15s %9s %9s %9s %10s %9s %9s %9s\n", "", "sent", "ok", "balancer", "unexpected", "conn-err", "MISMATCH", "slowest")
	for _, k := range kinds {
		c := t.kinds[k]
		fmt.Fprintf(w, "  %-15s %9d %9d %9d %10d %9d %9d %9s\n", k, c.sent, c.ok, c.balancer, c.unexpected, c.connErr, c.mismatch,
			c.slowest.Round(time.Millisecond))
		sum.sent += c.sent
		sum.ok += c.ok
		sum.balancer += c.balancer
		sum.unexpected += c.unexpected
		sum.connErr += c.connErr
		sum.mismatch += c.mismatch
	}
	fmt.Fprintf(w, "  %-15s %9d %9d %9d %10d %9d %9d\n", "total", sum.sent, sum.ok, sum.balancer, sum.unexpected, sum.connErr, sum.mismatch)
	fmt.Fprintf(w, "  %.0f requests/s; %d WebSocket messages echoed; hang-up and reset scenarios expect no answer\n",
		float64(sum.sent)/r.elapsed.Seconds(), t.wsMessages)

	fmt.Fprintf(w, "\nanswers by status:")
	for _, code := range slices.Sorted(maps.Keys(t.statuses)) {
		fmt.Fprintf(w, " %d: %d;", code, t.statuses[code])
	}
	fmt.Fprintln(w)

	fmt.Fprintf(w, "\nerrors by kind [and why: what the flaky backend did, a kill, a reload, or UNEXPLAINED] (count, then the first one):\n")
	printGroups(w, t.errs, 14)

	fmt.Fprintf(w, "\nUNEXPLAINED failures: %d (balancer errors, unexpected answers and broken exchanges no fault accounts for)\n", t.unexplained)
	fmt.Fprintf(w, "\nMISMATCHES: %d\n", t.mismatchN)
	for i, m := range t.mismatches {
		fmt.Fprintf(w, "--- mismatch %d: %s\n", i+1, m)
	}

	f := r.faults
	fmt.Fprintf(w, "\nfaults: %d backend kills, %d restarts (%d failed), %d reloads (%d failed)\n",
		f.kills, f.restarts, f.restartFailures, f.reloads, f.reloadFailures)
	fmt.Fprintf(w, "flaky backend's answers by mode:")
	for _, m := range slices.Sorted(maps.Keys(r.flakyModes)) {
		fmt.Fprintf(w, " %s %d;", m, r.flakyModes[m])
	}
	fmt.Fprintf(w, "\nrequests each backend served (health checks included):")
	for _, b := range slices.Sorted(maps.Keys(r.backendRequests)) {
		fmt.Fprintf(w, " %s %d;", b, r.backendRequests[b])
	}
	fmt.Fprintln(w)

	r.printProcess(w)
	if o.accessLog {
		fmt.Fprintf(w, "access log: %d lines\n", r.accessLines)
	}
	if fails := r.failures(); len(fails) > 0 {
		fmt.Fprintf(w, "\nFAIL: %s\n", strings.Join(fails, "; "))
	} else {
		fmt.Fprintf(w, "\nPASS: no mismatch, no panic, the balancer lived and exited 0\n")
	}
}

func (r *result) printProcess(w io.Writer) {
	fmt.Fprintf(w, "\nbalancer process over time:\n")
	var rss, fds []int64
	for _, s := range r.samples {
		if s.procOK {
			rss, fds = append(rss, s.proc.rssKB), append(fds, int64(s.proc.fds))
		}
	}
	if len(rss) > 0 {
		fmt.Fprintf(w, "  RSS MiB min %.1f max %.1f; fds min %d max %d (%d samples under load)\n",
			float64(slices.Min(rss))/1024, float64(slices.Max(rss))/1024, slices.Min(fds), slices.Max(fds), len(rss))
	}
	fmt.Fprintf(w, "  %8s %8s %5s %7s %9s %4s %9s\n", "time", "RSS MiB", "fds", "threads", "in-flight", "ws", "requests")
	step := max(1, (len(r.samples)+9)/10)
	for i, s := range r.samples {
		if i%step == 0 || i == len(r.samples)-1 {
			fmt.Fprintf(w, "  %7.0fs %8.1f %5d %7d %9d %4d %9d\n", s.at.Seconds(), float64(s.proc.rssKB)/1024,
				s.proc.fds, s.proc.threads, s.inFlight, s.upgraded, s.sent)
		}
	}
	if r.died != "" {
		fmt.Fprintf(w, "  DIED: %s; stderr ends:\n%s\n", r.died, r.log.tailText())
	} else {
		a := r.after
		fmt.Fprintf(w, "  %7.0fs %8.1f %5d %7d %9d %4d %9d  (after the load)\n", a.at.Seconds(), float64(a.proc.rssKB)/1024,
			a.proc.fds, a.proc.threads, a.inFlight, a.upgraded, a.sent)
		fmt.Fprintf(w, "  after the load: %s after %v: RSS %.1f MiB, %d fds, %d threads, %d in flight, %d upgraded\n",
			map[bool]string{true: "quiet", false: "NOT QUIET"}[r.quiet], r.quietAfter.Round(time.Millisecond),
			float64(a.proc.rssKB)/1024, a.proc.fds, a.proc.threads, a.inFlight, a.upgraded)
		fmt.Fprintf(w, "  SIGTERM: exit status %d after %v (%s the %v drain)\n", r.exitCode, r.exitTook.Round(time.Millisecond),
			map[bool]string{true: "within", false: "NOT within"}[r.exitInTime], shutdownGrace)
	}
	l := r.log
	fmt.Fprintf(w, "  stderr: %d lines; warnings and errors by message (digits folded):\n", l.lines)
	printGroups(w, l.groups, 1)
	fmt.Fprintf(w, "  lines about a panic, data race or fatal error: %d\n", l.panicN)
	for _, p := range l.panics {
		fmt.Fprintf(w, "    %s\n", p)
	}
}

// printGroups prints counted groups, the UNEXPLAINED first, then the most
// frequent, each with up to lines lines of its first example.
func printGroups(w io.Writer, groups map[string]*example, lines int) {
	odd := func(k string) int {
		if strings.Contains(k, unexplained) {
			return 0
		}
		return 1
	}
	keys := slices.SortedFunc(maps.Keys(groups), func(a, b string) int {
		return cmp.Or(cmp.Compare(odd(a), odd(b)), cmp.Compare(groups[b].n, groups[a].n), strings.Compare(a, b))
	})
	if len(keys) == 0 {
		fmt.Fprintf(w, "    none\n")
	}
	for _, k := range keys {
		e := groups[k]
		fmt.Fprintf(w, "  %8d  %s\n", e.n, k)
		ex := strings.Split(strings.TrimRight(e.first, "\n"), "\n")
		if len(ex) > lines {
			ex = append(ex[:lines], "    ...")
		}
		if lines > 1 || ex[0] != k {
			for _, line := range ex {
				fmt.Fprintf(w, "            %s\n", line)
			}
		}
	}
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
