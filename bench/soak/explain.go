package main

import (
	"fmt"
	"sync"
	"time"
)

// explainer knows why a request may have failed: the flaky backend tells
// it which requests it misbehaved on, a killed backend which requests it
// was serving, and the faults when they killed a backend or reloaded. A
// failure it cannot explain is the one to look at. It is safe for
// concurrent use.
type explainer struct {
	// mu guards every field.
	mu     sync.Mutex
	byID   map[string]string
	events []event // kills and reloads, in order
}

type event struct {
	at   time.Time
	what string
}

// window is how long after a kill or a reload a failure is put down to it:
// requests that were on their way to the backend, and the balancer's
// passive check, which marks a backend down at the first refused dial.
const window = 2 * time.Second

func newExplainer() *explainer { return &explainer{byID: map[string]string{}} }

// mark records why request id may fail. The last reason marked stands: a
// request sent again (the balancer retries a GET, on a fresh connection
// to the same backend when a pooled one failed) fails for the last.
func (e *explainer) mark(id, why string) {
	e.mu.Lock()
	e.byID[id] = why
	e.mu.Unlock()
}

// happened records a kill or a reload at at.
func (e *explainer) happened(at time.Time, what string) {
	e.mu.Lock()
	e.events = append(e.events, event{at, what})
	e.mu.Unlock()
}

// why says why request id failed at at, or "UNEXPLAINED".
func (e *explainer) why(id string, at time.Time) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if w, ok := e.byID[id]; ok {
		return w
	}
	for i := len(e.events) - 1; i >= 0; i-- {
		ev := e.events[i]
		if d := at.Sub(ev.at); d >= 0 && d < window {
			return fmt.Sprintf("within %v of %s", window, ev.what)
		}
	}
	return unexplained
}

// unexplained is why's answer when it knows no reason.
const unexplained = "UNEXPLAINED"
