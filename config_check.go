package main

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"stdlb/bucket"
)

// headerName is an HTTP field name (RFC 9110 token).
var headerName = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

// notAKey maps the header fields key_header may not name, canonical, to
// why. A key is only as good as the check a backend makes of it; these
// fields are consumed or rewritten by HTTP or by the balancer before any
// backend could check them, or hold more than one value a client can vary
// freely. Any of them would give a client a fresh bucket for a new value.
// Authorization stays allowed: a backend checks a bearer token.
var notAKey = func() map[string]string {
	m := map[string]string{
		"Host":           "it names the site asked for, not the client, and any client may send any value",
		"Content-Length": "it frames the request body and differs from one body to the next",
		"Cookie":         "it holds every cookie at once: a client adds a cookie of its own for a fresh bucket while the backend still sees its session",
	}
	for _, h := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Transfer-Encoding", "Upgrade", "Proxy-Authorization"} {
		m[http.CanonicalHeaderKey(h)] = "it is a hop-by-hop field: it ends at the balancer, so no backend could check the key"
	}
	for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded", "X-Real-IP"} {
		m[http.CanonicalHeaderKey(h)] = "it is a forwarding field the balancer sets or drops, and a client may write any address there; " +
			"to limit by address, leave key_header empty (X-Forwarded-For counts only from trusted_proxies)"
	}
	return m
}()

// envName is a portable environment variable name.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// validate checks the meaning of every field and returns one problem per
// line, each starting with its field path. Fields already reported by
// checkShape (in shapeProblems) are not reported again.
func (c *Config) validate(shapeProblems []string) []string {
	var ps []string
	reported := func(path string) bool {
		for _, p := range shapeProblems {
			if strings.HasPrefix(p, "(top level)") {
				return true
			}
			if strings.HasPrefix(p, path+":") || strings.HasPrefix(p, path+".") || strings.HasPrefix(p, path+"[") {
				return true
			}
		}
		return false
	}
	add := func(path, format string, args ...any) {
		if !reported(path) {
			ps = append(ps, path+": "+fmt.Sprintf(format, args...))
		}
	}
	inRange := func(path string, v float64) {
		if r := rangeOf(path); v < r.lo || v > r.hi {
			add(path, "must be %s, got %s", r, formatNumber(v))
		}
	}
	positive := func(path string, d Duration) {
		if d <= 0 {
			add(path, "must be more than 0, got %s", d.D())
		}
	}

	checkListen(add, "listen", c.Listen, false)
	switch c.Algorithm {
	case "round-robin", "weighted-round-robin", "least-connections":
	default:
		add("algorithm", "unknown algorithm %q (want round-robin, weighted-round-robin or least-connections)", c.Algorithm)
	}
	if len(c.Backends) == 0 {
		add("backends", "at least one backend is needed")
	}
	seen, names := map[string]int{}, map[string]int{}
	for i, b := range c.Backends {
		p := fmt.Sprintf("backends[%d]", i)
		if msg := checkBackendURL(b.URL); msg != "" {
			add(p+".url", "%s", msg)
		} else if j, dup := seen[canonicalURL(b.URL)]; dup {
			add(p+".url", "%s duplicates backends[%d] (both are %s)", b.URL, j, canonicalURL(b.URL))
		} else {
			seen[canonicalURL(b.URL)] = i
		}
		inRange(p+".weight", float64(b.Weight))
		checkBackendName(add, p+".name", b.Name, names, i)
	}

	h := c.HealthCheck
	if !strings.HasPrefix(h.Path, "/") {
		add("health_check.path", "must start with /, got %q", h.Path)
	}
	positive("health_check.interval", h.Interval)
	positive("health_check.timeout", h.Timeout)
	inRange("health_check.healthy_threshold", float64(h.HealthyThreshold))
	inRange("health_check.unhealthy_threshold", float64(h.UnhealthyThreshold))
	inRange("retries", float64(c.Retries))
	t := c.Timeouts
	positive("timeouts.read_header", t.ReadHeader)
	positive("timeouts.read_body", t.ReadBody)
	positive("timeouts.write", t.Write)
	positive("timeouts.idle", t.Idle)
	positive("timeouts.backend_dial", t.BackendDial)
	positive("timeouts.backend_response", t.BackendResponse)
	positive("timeouts.shutdown", t.Shutdown)
	inRange("max_header_bytes", float64(c.MaxHeaderBytes))
	if c.LogFormat != "text" && c.LogFormat != "json" {
		add("log_format", "want \"text\" or \"json\", got %q", c.LogFormat)
	}

	r := c.RateLimit
	inRange("rate_limit.capacity", float64(r.Capacity))
	inRange("rate_limit.refill_rate", r.RefillRate)
	positive("rate_limit.refill_interval", r.RefillInterval)
	if r.RefillInterval > Seconds(60) {
		add("rate_limit.refill_interval", "must be at most 1m, got %s", r.RefillInterval.D())
	}
	if r.KeyHeader != "" && !headerName.MatchString(r.KeyHeader) {
		add("rate_limit.key_header", "%q is not a valid header name", r.KeyHeader)
	} else if why, ok := notAKey[http.CanonicalHeaderKey(r.KeyHeader)]; ok {
		add("rate_limit.key_header", "%q cannot tell clients apart: %s", r.KeyHeader, why)
	}
	inRange("rate_limit.max_key_length", float64(r.MaxKeyLength))
	for i, s := range r.TrustedProxies {
		if _, err := parsePrefix(s); err != nil {
			add(fmt.Sprintf("rate_limit.trusted_proxies[%d]", i), "%v", err)
		}
	}
	if r.ClientsFile == "" {
		add("rate_limit.clients_file", "must name the file that keeps per-client limits")
	}
	inRange("rate_limit.max_clients", float64(r.MaxClients))
	positive("rate_limit.idle_timeout", r.IdleTimeout)
	inRange("rate_limit.instances", float64(r.Instances))
	inRange("rate_limit.ipv6_prefix", float64(r.IPv6Prefix))
	checkRateFits(add, r)

	if c.Admin.Listen != "" {
		checkListen(add, "admin.listen", c.Admin.Listen, true)
	}
	c.TLS.check(add)
	checkListenersApart(add, []namedAddr{{"listen", c.Listen}, {"admin.listen", c.Admin.Listen}, {"tls.redirect_http", c.TLS.RedirectHTTP}})
	if !envName.MatchString(c.Admin.TokenEnv) {
		add("admin.token_env", "%q is not an environment variable name", c.Admin.TokenEnv)
	}
	inRange("runtime.gogc", float64(c.Runtime.GOGC))
	if c.Runtime.MemoryLimit != "" {
		if _, err := parseBytes(c.Runtime.MemoryLimit); err != nil {
			add("runtime.memory_limit", "%v", err)
		}
	}
	if !c.Runtime.FastHTTP1 {
		add("runtime.fast_http1", "false is no longer possible: HTTP/1.1 is always served by the balancer's own strict server, "+
			"because net/http's server accepts request framing a proxy must refuse (see Protocol strictness in the README); remove the setting")
	}
	return ps
}

func checkListen(add func(string, string, ...any), path, addr string, needHost bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		add(path, "want host:port or :port, got %q", addr)
		return
	}
	if needHost && host == "" {
		add(path, "name the address to listen on, e.g. 127.0.0.1%s (an empty host listens on every interface)", addr)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		add(path, "bad port %q", port)
	}
}

// namedAddr is a listen address and the field that gives it.
type namedAddr struct{ field, addr string }

// checkListenersApart reports each listener whose address clashes with an
// earlier one's (see listenClash): the second would fail to start with
// "address already in use", which the file alone shows. Empty addresses
// (off) and bad ones (reported by checkListen) are skipped.
func checkListenersApart(add func(string, string, ...any), ls []namedAddr) {
	for i, b := range ls {
		for _, a := range ls[:i] {
			if port, wildcard, clash := listenClash(a.addr, b.addr); clash {
				why := ""
				if wildcard {
					why = ", and a listener with no host, 0.0.0.0 or [::] takes its port on every address"
				}
				add(b.field, "%s clashes with %s (%s): both want port %d%s; give each its own port", b.addr, a.field, a.addr, port, why)
				break
			}
		}
	}
}

// listenClash reports whether listening on a and then on b would fail:
// both on one port other than 0, and on one address, or either on every
// address (no host, 0.0.0.0 or ::: Go listens on both families then). It
// also reports that port, and whether a wildcard made the clash. Host
// names other than localhost are compared as written.
func listenClash(a, b string) (port int, wildcard, clash bool) {
	ha, pa, okA := splitListen(a)
	hb, pb, okB := splitListen(b)
	if !okA || !okB || pa != pb || pa == 0 {
		return 0, false, false
	}
	if ha == "" || hb == "" {
		return pa, ha != hb, true
	}
	return pa, false, ha == hb
}

// splitListen returns the host of a listen address in a form fit to
// compare ("" for every address, an IP address unmapped, localhost as
// 127.0.0.1, other names in lower case) and its port number.
func splitListen(addr string) (host string, port int, ok bool) {
	h, p, err := net.SplitHostPort(addr)
	if addr == "" || err != nil {
		return "", 0, false
	}
	port, err = net.LookupPort("tcp", p)
	if err != nil {
		return "", 0, false
	}
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if h == "localhost" {
		h = "127.0.0.1" // where Go's Listen puts it
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		if ip.IsUnspecified() {
			return "", port, true
		}
		h = ip.Unmap().String()
	}
	return h, port, true
}

// backendName is what a backend's name may be: short, and plain enough to
// stand unquoted in a log line and as a metrics label.
var backendName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// checkBackendName checks backends[i].name; names maps the names seen so
// far to their index.
func checkBackendName(add func(string, string, ...any), path, name string, names map[string]int, i int) {
	switch j, dup := names[name]; {
	case name == "":
	case !backendName.MatchString(name):
		add(path, "%q is not a usable name (up to 64 letters, digits, '.', '_' or '-', starting with a letter or digit)", name)
	case dup:
		add(path, "%q is also the name of backends[%d]", name, j)
	default:
		names[name] = i
	}
}

// checkBackendURL returns why s is not a usable backend URL, or "".
func checkBackendURL(s string) string {
	u, err := url.Parse(s)
	switch {
	case s == "":
		return "missing (want e.g. http://127.0.0.1:9001)"
	case !strings.Contains(s, "://"):
		return fmt.Sprintf("%q has no http:// or https:// scheme", s)
	case err != nil:
		return fmt.Sprintf("cannot parse %q: %v", s, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Sprintf("%q has no http:// or https:// scheme", s)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Sprintf("%q has no host", s)
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "":
		return fmt.Sprintf("%q has a path, query or fragment; give only scheme, host and port (requests keep their own path)", s)
	case u.User != nil:
		return fmt.Sprintf("%q carries credentials; they are not supported", s)
	case u.Port() != "" && !validPort(u.Port()):
		return fmt.Sprintf("%q: port %s is outside 1-65535", s, u.Port())
	case strings.HasSuffix(u.Host, ":"):
		return fmt.Sprintf("%q: empty port after the colon", s)
	}
	return ""
}

// validPort reports whether p, all digits, is a TCP port from 1 to 65535.
func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535
}

// canonicalURL is a valid backend URL reduced to the server it names, so
// that validate finds one given twice however it is spelt: host in lower
// case without a final dot, an IP address in its usual form
// ([0:0::1] is [::1], ::ffff:1.2.3.4 is 1.2.3.4), the port as a number
// (019001 is 19001) and the scheme's default made explicit.
func canonicalURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if ip, err := netip.ParseAddr(host); err == nil {
		host = ip.Unmap().String()
	}
	port := u.Port()
	if n, err := strconv.Atoi(port); err == nil {
		port = strconv.Itoa(n)
	} else if u.Scheme == "https" {
		port = "443"
	} else {
		port = "80"
	}
	return u.Scheme + "://" + net.JoinHostPort(host, port) // url.Parse puts the scheme in lower case
}

// parsePrefix reads a CIDR ("10.0.0.0/8") or a single address. A CIDR
// with host bits set ("10.0.0.1/8") is refused: it reads as one address
// but would stand for the whole network.
func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		if p != p.Masked() {
			return netip.Prefix{}, fmt.Errorf("%q has host bits set: did you mean %s (the network) or %s (the one address)?",
				s, p.Masked(), netip.PrefixFrom(p.Addr(), p.Addr().BitLen()))
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is neither an address nor a CIDR network", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// parseBytes reads a size such as 512MiB, 2GiB or 1000000.
func parseBytes(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}, {"", 1}}
	for _, u := range units {
		num, ok := strings.CutSuffix(s, u.suffix)
		if !ok {
			continue
		}
		var n int64
		if _, err := fmt.Sscan(num, &n); err != nil || n <= 0 || fmt.Sprint(n) != num {
			break
		}
		return n * u.mult, nil
	}
	return 0, fmt.Errorf("%q is not a size (want e.g. 512MiB or 2GiB)", s)
}

// checkRateFits refuses default limits the limiter could not honour: a
// capacity below one refill interval's refill (the surplus would be lost
// every tick) or a rate below a millionth of a token a tick.
func checkRateFits(add func(string, string, ...any), r RateLimitConfig) {
	if r.RefillInterval <= 0 || r.RefillInterval > Seconds(60) || r.Instances < 1 || r.Instances > 1000 {
		return // reported above
	}
	lim := bucket.Limits{Capacity: r.Capacity, RefillRate: r.RefillRate}
	if lim.Validate() != nil {
		return // reported above
	}
	if err := lim.ValidateFor(r.RefillInterval.D(), r.Instances); err != nil {
		field, msg, _ := strings.Cut(err.Error(), ": ")
		add("rate_limit."+field, "%s", msg)
	}
}
