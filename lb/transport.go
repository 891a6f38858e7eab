package lb

import (
	"net"
	"net/http"
	"time"

	"stdlb/lb/h1"
)

// transport sends a pool's requests to its backends. Requests without a
// body to plain-HTTP backends, the bulk of a balancer's traffic, go through
// the backend's own h1.Client; every other request (a body to stream, a
// protocol upgrade, TLS) goes through the pool's http.Transport, which
// handles those with its reader and writer goroutines.
type transport struct {
	std      *http.Transport
	timeouts h1.Timeouts
}

func newTransport(dial, response time.Duration) *transport {
	return &transport{
		std:      newStdTransport(dial, response),
		timeouts: h1.Timeouts{Dial: dial, Response: response},
	}
}

// newStdTransport returns the http.Transport a pool uses for requests the
// direct path does not take.
func newStdTransport(dial, response time.Duration) *http.Transport {
	d := &net.Dialer{Timeout: dial, KeepAlive: 30 * time.Second}
	return &http.Transport{
		DialContext: d.DialContext,
		// The default of 2 idle connections per host makes most concurrent
		// requests open a fresh connection under load; keep enough for a
		// busy balancer to reuse them.
		MaxIdleConns:          0, // no limit across hosts
		MaxIdleConnsPerHost:   h1.MaxIdlePerBackend,
		IdleConnTimeout:       h1.IdleConnTimeout,
		ResponseHeaderTimeout: response,
		ExpectContinueTimeout: time.Second,
		// A proxy passes Accept-Encoding through; it must not add its own
		// and decompress on the client's behalf.
		DisableCompression: true,
	}
}

// roundTrip sends req to be. On the direct path the Response is built in
// sc, which must stay untouched until the caller is done with it.
func (t *transport) roundTrip(req *http.Request, be *Backend, now time.Time, sc *h1.Scratch) (*http.Response, error) {
	if be.URL.Scheme != "http" || !h1.Direct(req) {
		return t.std.RoundTrip(req)
	}
	return be.client.RoundTrip(req, t.timeouts, now, sc)
}
