package lb

import (
	"net/http"
	"net/netip"
	"strings"
)

// ClientIP returns the address of the client that sent r and its text form,
// and whether the direct peer is a trusted proxy.
//
// The address is the direct peer's unless the peer is trusted. Then
// X-Forwarded-For is read from the right, skipping trusted hops, and the
// first address that is not trusted is the client: entries left of it were
// written by the client itself and prove nothing. When every hop is trusted
// the left-most one is used. A malformed entry ends the walk at the last good
// address. IPv4-mapped IPv6 addresses are reported as IPv4, so one client has
// one key whichever way it arrives.
//
// The text is taken from the request without allocating when it is already
// in canonical form, as it almost always is.
func (t TrustedProxies) ClientIP(r *http.Request) (ip netip.Addr, text string, peerTrusted bool) {
	host := hostOnly(r.RemoteAddr)
	ip, err := netip.ParseAddr(host)
	if err != nil {
		// Not a TCP peer (a test's fake RemoteAddr, a unix socket): key by
		// whatever identifies it rather than lumping all such clients together.
		return netip.Addr{}, r.RemoteAddr, false
	}
	ip = ip.Unmap()
	text = host
	if len(t) == 0 || !t.Contains(ip) {
		return ip, canonical(ip, text), false
	}
	values := r.Header["X-Forwarded-For"]
	for v := len(values) - 1; v >= 0; v-- {
		list := values[v]
		for list != "" {
			entry := list
			if i := strings.LastIndexByte(list, ','); i >= 0 {
				entry, list = list[i+1:], list[:i]
			} else {
				list = ""
			}
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			a, ok := parseForwarded(entry)
			if !ok {
				return ip, canonical(ip, text), true
			}
			ip, text = a, hostOnly(entry)
			if !t.Contains(a) {
				return ip, canonical(ip, text), true
			}
		}
	}
	return ip, canonical(ip, text), true
}

// parseForwarded parses one X-Forwarded-For entry: an address, optionally
// with a port as some proxies write it.
func parseForwarded(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

// hostOnly strips a port and IPv6 brackets: "1.2.3.4:80" -> "1.2.3.4",
// "[::1]:80" -> "::1". It returns s unchanged when there is nothing to strip.
func hostOnly(s string) string {
	if strings.HasPrefix(s, "[") {
		if i := strings.IndexByte(s, ']'); i > 0 {
			return s[1:i]
		}
		return s
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 && strings.IndexByte(s, ':') == i {
		return s[:i]
	}
	return s
}

// canonical returns text when it is already ip's canonical form, else the
// canonical form (which allocates).
func canonical(ip netip.Addr, text string) string {
	var buf [64]byte
	if string(ip.AppendTo(buf[:0])) == text {
		return text
	}
	return ip.String()
}
