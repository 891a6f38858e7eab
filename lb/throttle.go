package lb

import (
	"strconv"
	"sync/atomic"
	"time"
)

// throttleEvery is the least time between two log lines of one kind of
// repeated event (a 503, a retry, a failed request). An outage makes every
// request fail the same way; one line per request would drown the log and
// cost a write per request when the balancer can least afford it.
const throttleEvery = 5 * time.Second

// throttle lets one log line of a kind through every throttleEvery and
// counts the ones it holds back, so the next line can say how many there
// were. The zero value is ready; it is safe for concurrent use.
type throttle struct {
	last       atomic.Int64 // UnixNano of the last line let through
	suppressed atomic.Int64 // lines held back since
}

// allow reports whether to log now and, if so, how many lines were held
// back since the last one.
func (t *throttle) allow(now time.Time) (bool, int64) {
	last := t.last.Load()
	if now.UnixNano()-last < int64(throttleEvery) || !t.last.CompareAndSwap(last, now.UnixNano()) {
		t.suppressed.Add(1)
		return false, 0
	}
	return true, t.suppressed.Swap(0)
}

// more is the suffix for a line after n were held back.
func more(n int64) string {
	if n == 0 {
		return ""
	}
	return " (and " + strconv.FormatInt(n, 10) + " more like it since the last such line)"
}
