package lb

import (
	"sync"
	"sync/atomic"
	"time"
)

// backendStats are a backend's counters beyond its status codes, and the
// samples its rates and quantiles are computed from. The counters are
// independent atomics, added to by record once per request without a
// lock; series is written by the sampler every sampleInterval.
type backendStats struct {
	latency       durationHistogram // from the last attempt's start to the end of the answer
	bytesSent     atomic.Uint64     // request body bytes forwarded
	bytesReceived atomic.Uint64     // response body bytes relayed to clients
	retries       atomic.Uint64     // requests that failed here and went on to another backend
	stateChanges  atomic.Uint64     // moves between up and down, counted under Backend.mu

	// mu guards series, written by the sampler, read by Status and History.
	mu     sync.Mutex
	series series
}

// balancerStats are the balancer-wide counterparts of backendStats: the
// answers it made itself, every 5xx, and the series of the status page's
// totals row and charts.
type balancerStats struct {
	refused   durationHistogram // answers made without a backend (Balancer.local)
	errors5xx atomic.Uint64     // every 5xx answer, the balancer's own included

	// mu guards the fields below, written by the sampler, read by Traffic
	// and History.
	mu       sync.Mutex
	total    series // every answer; latency of those from backends
	refusals series // answers made without a backend
	// times are the instants of total's points, Unix milliseconds, in the
	// same ring positions.
	times [historyLen]int64
}

// reqStats is what an exchange notes about its attempts for the counters
// and the access log. Owned by the request's goroutine.
type reqStats struct {
	sent     time.Time     // when the last attempt was sent
	ttfb     time.Duration // from sent to the response head, when timed
	answered bool          // the client's answer is the backend's response
}

// responded notes that the attempt sent at sent got a response. The time
// to first byte costs a clock read, taken only when timed (the access log
// is the only reader).
func (s *reqStats) responded(sent time.Time, timed bool) {
	s.answered = true
	if timed {
		s.ttfb = time.Since(sent)
	}
}

// record counts a finished request: by status, in the latency histograms,
// and in the byte counters of the backend that answered. It runs once per
// request, on the request's goroutine: atomic adds, no lock, no allocation.
func (b *Balancer) record(ex *exchange, status int, dur time.Duration) {
	if status >= 500 {
		b.stats.errors5xx.Add(1)
	}
	if ex.cur < 0 {
		b.local.add(status)
		b.stats.refused.observe(dur)
		return
	}
	be := ex.backend()
	be.byStatus.add(status)
	b.durations.observe(dur)
	s := &be.stats
	since := dur
	if !ex.stats.sent.IsZero() {
		since -= ex.stats.sent.Sub(ex.start)
	}
	s.latency.observe(since)
	if ex.stats.answered && ex.rw.bytes > 0 {
		s.bytesReceived.Add(uint64(ex.rw.bytes))
	}
	if n := ex.bytesIn(); n > 0 {
		s.bytesSent.Add(uint64(n))
	}
}

// bytesIn returns how many bytes of the request body have been read so far.
func (ex *exchange) bytesIn() int64 {
	if ex.body == nil {
		return 0
	}
	return ex.body.n.Load()
}

// stateSince returns when b last went up or down, or joined if it never did.
func (b *Backend) stateSince() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changedAt
}

// current returns the backend's cumulative counts at now.
func (s *backendStats) current(be *Backend, now time.Time) sample {
	c := sample{at: now}
	s.latency.load(&c.buckets)
	for _, n := range c.buckets {
		c.answers += n
	}
	for i := 500 - 100; i < len(be.byStatus); i++ {
		c.errors += be.byStatus[i].Load()
	}
	return c
}

// traffic returns the backend's totals, and its rates and quantiles from
// the oldest sample kept (about a minute ago) to now.
func (s *backendStats) traffic(be *Backend, now time.Time) BackendTraffic {
	cur := s.current(be, now)
	t := BackendTraffic{
		Responses5xx:  cur.errors,
		Retries:       s.retries.Load(),
		BytesSent:     s.bytesSent.Load(),
		BytesReceived: s.bytesReceived.Load(),
		StateChanges:  s.stateChanges.Load(),
	}
	s.mu.Lock()
	from, ok := s.series.oldest()
	s.mu.Unlock()
	if ok {
		t.Rates = ratesBetween(&from, &cur)
	}
	return t
}

// BackendTraffic is a backend's share of the traffic, part of
// BackendStatus: totals since it joined the configuration, and Rates over
// about the last minute (all zero before RunSampler has taken a sample).
type BackendTraffic struct {
	Responses5xx  uint64 `json:"responses_5xx"`  // answers with a 5xx status, the balancer's 502 and 504 included
	Retries       uint64 `json:"retries"`        // requests that failed here and went on to another backend
	BytesSent     uint64 `json:"bytes_sent"`     // request body bytes forwarded to it
	BytesReceived uint64 `json:"bytes_received"` // response body bytes from it that reached clients
	StateChanges  uint64 `json:"state_changes"`  // moves between up and down
	Rates
}

// Traffic is the balancer's rates over about the last minute: every
// answer, and the answers it made itself without a backend (429 rate
// limited, 503 no healthy backend, 400 bad client key).
type Traffic struct {
	Total   Rates `json:"total"`
	Refused Rates `json:"refused"`
}

// Traffic returns the balancer-wide rates from the oldest sample kept to
// now; all zero before RunSampler has taken a sample. It is safe for
// concurrent use.
func (b *Balancer) Traffic() Traffic { return b.trafficAt(time.Now()) }

func (b *Balancer) trafficAt(now time.Time) Traffic {
	total, refused := b.stats.current(b, now)
	var t Traffic
	s := &b.stats
	s.mu.Lock()
	fromTotal, ok := s.total.oldest()
	fromRefused, _ := s.refusals.oldest()
	s.mu.Unlock()
	if ok {
		t.Total = ratesBetween(&fromTotal, &total)
		t.Refused = ratesBetween(&fromRefused, &refused)
	}
	return t
}

// current returns the balancer-wide cumulative counts at now: every answer
// (with the latency of those from backends), and those made without one.
func (s *balancerStats) current(b *Balancer, now time.Time) (total, refused sample) {
	total, refused = sample{at: now}, sample{at: now}
	b.durations.load(&total.buckets)
	s.refused.load(&refused.buckets)
	for i := range total.buckets {
		total.answers += total.buckets[i]
		refused.answers += refused.buckets[i]
	}
	total.answers += refused.answers
	total.errors = s.errors5xx.Load()
	for i := 500 - 100; i < len(b.local); i++ {
		refused.errors += b.local[i].Load()
	}
	return total, refused
}
