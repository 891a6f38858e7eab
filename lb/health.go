package lb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"syscall"
	"time"
)

// maxProbeBody caps how much of a health-check answer is read: enough to
// let the connection finish cleanly, not enough for a broken backend that
// streams forever to cost memory or time.
const maxProbeBody = 64 << 10

// RunHealthChecks probes every backend of the configuration in use with a
// GET on HealthCheck.Path, one round at once and then one every
// HealthCheck.Interval after the previous round ends, until ctx ends; it then
// returns ctx.Err(). Probes of one round run in parallel, each bounded by
// HealthCheck.Timeout. A backend goes down after UnhealthyThreshold
// consecutive failed probes and comes back after HealthyThreshold
// consecutive passes; each change is logged once. An answer from 200 to 399
// passes.
//
// A reload takes effect at the next round: the round reads the pool in use
// when it starts.
func (b *Balancer) RunHealthChecks(ctx context.Context) error {
	client := &http.Client{
		// Probes have their own transport so a busy proxy pool cannot delay
		// them, and no keep-alive so each probe also proves the backend
		// accepts connections.
		Transport: &http.Transport{DisableKeepAlives: true, DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	defer client.CloseIdleConnections()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		p := b.pool.Load()
		b.checkRound(ctx, client, p)
		now := time.Now()
		for _, be := range p.backends {
			be.client.CloseStale(now) // the idle pool's own ticker
		}
		timer.Reset(p.cfg.HealthCheck.Interval)
	}
}

// checkRound probes every backend of p once, in parallel, and waits for all.
func (b *Balancer) checkRound(ctx context.Context, client *http.Client, p *pool) {
	hc := p.cfg.HealthCheck
	var wg sync.WaitGroup
	for _, be := range p.backends {
		wg.Go(func() {
			err := probe(ctx, client, be.URL, hc)
			if ctx.Err() != nil {
				return // shutting down: a cancelled probe says nothing about the backend
			}
			reason := ""
			if err != nil {
				reason = probeReason(err, hc.Timeout)
				be.probesFailed.Add(1)
			} else {
				be.probesPassed.Add(1)
			}
			t := be.recordProbe(err, reason, time.Now(), hc.HealthyThreshold, hc.UnhealthyThreshold)
			if !t.changed {
				return
			}
			if t.healthy {
				b.log.Info(fmt.Sprintf("backend %s up: %s", be.name, plural(t.streak, "passed health check")),
					"backend", be.name, "event", "backend_up")
			} else {
				b.log.Warn(fmt.Sprintf("backend %s down: %s: %s", be.name, plural(t.streak, "failed health check"), reason),
					"backend", be.name, "event", "backend_down")
			}
		})
	}
	wg.Wait()
}

// probe makes one health check of the backend at base.
func probe(ctx context.Context, client *http.Client, base *url.URL, hc HealthCheck) error {
	ctx, cancel := context.WithTimeout(ctx, hc.Timeout)
	defer cancel()
	u := *base
	u.Path = hc.Path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "stdlb-health-check")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, maxProbeBody))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 399 {
		return fmt.Errorf("%s answered %d", hc.Path, resp.StatusCode)
	}
	return err
}

// probeReason says why a probe failed, without the request line that
// url.Error puts in front.
func probeReason(err error, timeout time.Duration) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case isTimeout(err):
		return "no answer within " + timeout.String()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}
