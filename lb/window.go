package lb

import (
	"context"
	"math"
	"strconv"
	"time"
)

// The sampler's schedule and memory. A series keeps windowSamples
// cumulative samples (the last minute, for rates and quantiles) and
// historyLen points (ten minutes, for charts): 13 × 176 B + 120 × 12 B,
// about 3.7 KB per backend, plus two such series for the balancer.
const (
	sampleInterval = 5 * time.Second
	windowSamples  = 13  // 12 intervals: a minute
	historyLen     = 120 // ten minutes
)

// sample is a series' cumulative counts at one instant.
type sample struct {
	at      time.Time
	answers uint64
	errors  uint64           // answers with a 5xx status
	buckets [nBuckets]uint64 // latency histogram, per bucket
}

// point is one sampling interval of a series, for a chart. p99 is NaN
// when the interval had no answers.
type point struct{ rate, errRate, p99 float32 }

// series is a ring of recent samples and a longer ring of the points
// between consecutive ones. Guarded by the mutex of the stats it is in.
type series struct {
	recent      [windowSamples]sample
	nRecent     int // how many of recent are filled
	lastRecent  int // index of the newest
	points      [historyLen]point
	nPoints     int // how many of points are filled
	nextPoint   int // index the next point goes to
	lastPointAt int // index of the newest point, valid when nPoints > 0
}

// add takes a new sample; from the second on, each adds a point.
func (s *series) add(cur sample) {
	if s.nRecent > 0 {
		prev := &s.recent[s.lastRecent]
		r := ratesBetween(prev, &cur)
		p := point{rate: float32(r.RequestsPerSecond), errRate: float32(r.Responses5xxPerSecond), p99: float32(math.NaN())}
		if r.LatencyP99 > 0 {
			p.p99 = float32(r.LatencyP99)
		}
		s.points[s.nextPoint] = p
		s.lastPointAt = s.nextPoint
		s.nextPoint = (s.nextPoint + 1) % historyLen
		s.nPoints = min(s.nPoints+1, historyLen)
	}
	s.lastRecent = (s.lastRecent + 1) % windowSamples
	s.recent[s.lastRecent] = cur
	s.nRecent = min(s.nRecent+1, windowSamples)
}

// oldest returns the oldest sample kept; false if there is none.
func (s *series) oldest() (sample, bool) {
	if s.nRecent == 0 {
		return sample{}, false
	}
	return s.recent[(s.lastRecent-s.nRecent+1+windowSamples)%windowSamples], true
}

// history returns the series' points, oldest first.
func (s *series) history() SeriesHistory {
	h := SeriesHistory{
		RequestsPerSecond:     make(Values, s.nPoints),
		Responses5xxPerSecond: make(Values, s.nPoints),
		LatencyP99:            make(Values, s.nPoints),
	}
	start := (s.nextPoint - s.nPoints + historyLen) % historyLen
	for i := range s.nPoints {
		p := s.points[(start+i)%historyLen]
		h.RequestsPerSecond[i], h.Responses5xxPerSecond[i], h.LatencyP99[i] = p.rate, p.errRate, p.p99
	}
	return h
}

// Rates are a series' figures between two samples: answers and 5xx
// answers per second, and latency quantiles estimated from the histogram
// (see quantile). WindowSeconds is the time they cover; 0 means there are
// no figures yet: no sample was taken, or the first less than a second
// ago, too short a time for a rate. The quantiles are left out when no
// answer had a latency to take them of.
type Rates struct {
	WindowSeconds         float64 `json:"window_seconds"`
	RequestsPerSecond     float64 `json:"requests_per_second"`
	Responses5xxPerSecond float64 `json:"responses_5xx_per_second"`
	LatencyP50            float64 `json:"latency_p50_seconds,omitzero"`
	LatencyP99            float64 `json:"latency_p99_seconds,omitzero"`
}

// ratesBetween returns the figures of the interval from a to b, none for
// less than a second.
func ratesBetween(a, b *sample) Rates {
	dt := b.at.Sub(a.at).Seconds()
	if dt < 1 {
		return Rates{}
	}
	var d [nBuckets]uint64
	for i := range d {
		d[i] = b.buckets[i] - a.buckets[i]
	}
	return Rates{
		WindowSeconds:         round(dt, 1e3),
		RequestsPerSecond:     round(float64(b.answers-a.answers)/dt, 1e3),
		Responses5xxPerSecond: round(float64(b.errors-a.errors)/dt, 1e3),
		LatencyP50:            round(quantile(0.5, &d), 1e6),
		LatencyP99:            round(quantile(0.99, &d), 1e6),
	}
}

// round rounds x to 1/per: figures for people, not for arithmetic.
func round(x, per float64) float64 { return math.Round(x*per) / per }

// quantile estimates the q-quantile of the durations counted in b (per
// bucket), in seconds, as Prometheus's histogram_quantile does: it finds
// the bucket holding the rank and interpolates linearly between its
// bounds, the first bucket starting at 0. A rank above every bound gives
// the highest bound. It returns 0 for an empty histogram. The estimate is
// only as fine as the buckets: within a factor of 2 to 2.5 in the worst
// case, much closer when the durations spread over a bucket.
func quantile(q float64, b *[nBuckets]uint64) float64 {
	var total uint64
	for _, n := range b {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var below uint64
	lower := 0.0
	for i, n := range b[:len(durationBounds)] {
		upper := float64(durationBounds[i]) / 1e9
		if n > 0 && float64(below+n) >= rank {
			return lower + (upper-lower)*(rank-float64(below))/float64(n)
		}
		below += n
		lower = upper
	}
	return lower
}

// RunSampler samples the balancer's counters at once and then every five
// seconds until ctx ends; it then returns ctx.Err(). The samples give
// Status and Traffic their rates and quantiles over the last minute, and
// History its ten minutes of points. Without it those stay empty.
func (b *Balancer) RunSampler(ctx context.Context) error {
	t := time.NewTicker(sampleInterval)
	defer t.Stop()
	for {
		b.sample(time.Now())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// sample takes one sample of every backend in use and of the balancer.
func (b *Balancer) sample(now time.Time) {
	for _, be := range b.pool.Load().backends {
		cur := be.stats.current(be, now)
		be.stats.mu.Lock()
		be.stats.series.add(cur)
		be.stats.mu.Unlock()
	}
	total, refused := b.stats.current(b, now)
	s := &b.stats
	s.mu.Lock()
	s.total.add(total)
	s.refusals.add(refused)
	if s.total.nPoints > 0 {
		s.times[s.total.lastPointAt] = now.UnixMilli()
	}
	s.mu.Unlock()
}

// History is the recent past for charts: one point per sampling interval
// (IntervalSeconds apart), oldest first, for the balancer and each backend
// in use. Times are the ends of the intervals, in Unix milliseconds. Every
// series ends at the last of them; a backend added since the first starts
// later and has fewer points.
type History struct {
	IntervalSeconds float64          `json:"interval_seconds"`
	Times           []int64          `json:"times"`
	Total           SeriesHistory    `json:"total"`
	Refused         SeriesHistory    `json:"refused"`
	Backends        []BackendHistory `json:"backends"`
}

// BackendHistory is one backend's share of History. Name and URL are the
// same as in BackendStatus.
type BackendHistory struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	SeriesHistory
}

// SeriesHistory is the points of one series.
type SeriesHistory struct {
	RequestsPerSecond     Values `json:"requests_per_second"`
	Responses5xxPerSecond Values `json:"responses_5xx_per_second"`
	LatencyP99            Values `json:"latency_p99_seconds"`
}

// Values are a series' points. NaN, where an interval had no answers to
// take a quantile of, is written as null in JSON.
type Values []float32

// MarshalJSON writes the values as a JSON array.
func (v Values) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 2+8*len(v))
	b = append(b, '[')
	for i, x := range v {
		if i > 0 {
			b = append(b, ',')
		}
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			b = append(b, "null"...)
			continue
		}
		b = strconv.AppendFloat(b, float64(x), 'g', -1, 32)
	}
	return append(b, ']'), nil
}

// History returns the points kept: up to ten minutes' worth. It is safe
// for concurrent use.
func (b *Balancer) History() History {
	h := History{IntervalSeconds: sampleInterval.Seconds()}
	s := &b.stats
	s.mu.Lock()
	h.Total, h.Refused = s.total.history(), s.refusals.history()
	h.Times = make([]int64, s.total.nPoints)
	start := (s.total.nextPoint - s.total.nPoints + historyLen) % historyLen
	for i := range h.Times {
		h.Times[i] = s.times[(start+i)%historyLen]
	}
	s.mu.Unlock()
	for _, be := range b.pool.Load().backends {
		be.stats.mu.Lock()
		bh := BackendHistory{Name: be.name, URL: be.URL.String(), SeriesHistory: be.stats.series.history()}
		be.stats.mu.Unlock()
		h.Backends = append(h.Backends, bh)
	}
	return h
}
