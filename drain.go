package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// errInterrupted is serve's error when a second signal cut the drain short.
var errInterrupted = errors.New("a second signal during the drain: stopped at once, requests in flight were cut off")

// drain stops accepting, waits up to timeouts.shutdown for in-flight
// requests and upgraded connections, and closes whatever is left. Every
// drainEvery it logs what it is still waiting for. A value from term (a
// second SIGINT or SIGTERM) ends the wait at once: everything is closed and
// drain returns errInterrupted.
func (a *app) drain(term <-chan os.Signal) error {
	grace := a.cfg.Load().Timeouts.Shutdown.D()
	a.log.Info("shutting down: no new connections; waiting for in-flight requests (a second Ctrl-C or SIGTERM stops at once)", "grace", grace)
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		if a.redirect != nil {
			a.redirect.Shutdown(ctx)
		}
		err := a.srv.Shutdown(ctx)
		if err == nil {
			err = a.bal.WaitUpgrades(ctx)
		}
		done <- err
	}()
	report := time.NewTicker(a.drainEvery)
	defer report.Stop()
	var err error
wait:
	for {
		select {
		case err = <-done:
			break wait
		case now := <-report.C:
			a.log.Info("draining: " + a.waitingFor() + ", " + (grace - now.Sub(start)).Round(time.Second).String() + " left")
		case sig := <-term:
			a.log.Warn("second "+sig.String()+": stopping now; cutting off "+a.waitingFor(),
				"after", time.Since(start).Round(time.Millisecond))
			a.closeAll()
			return errInterrupted
		}
	}
	if err != nil {
		a.log.Warn("drain period over: closing remaining connections", "after", time.Since(start).Round(time.Millisecond),
			"waiting_for", a.waitingFor())
	}
	a.closeAll()
	a.log.Info("stopped", "drained_in", time.Since(start).Round(time.Millisecond))
	return nil
}

// closeAll cancels every request still running and closes every listener
// and connection.
func (a *app) closeAll() {
	a.hardCancel()
	a.srv.Close()
	if a.admin != nil {
		a.admin.Close()
	}
	if a.redirect != nil {
		a.redirect.Close()
	}
}

// waitingFor says what the drain waits for: "3 requests in flight, 1
// upgraded connection".
func (a *app) waitingFor() string {
	var n int64
	for _, b := range a.bal.Status() {
		n += b.InFlight
	}
	s := plural(int(n), "request") + " in flight"
	if u := a.bal.Upgrades(); u > 0 {
		s += fmt.Sprintf(", %s", plural(int(u), "upgraded connection"))
	}
	return s
}
