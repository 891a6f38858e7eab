package lb

import (
	"net/http"
	"net/netip"
	"testing"
)

func mustPrefixes(t *testing.T, ss ...string) TrustedProxies {
	t.Helper()
	var out TrustedProxies
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestClientIP(t *testing.T) {
	trusted := []string{"10.0.0.0/8", "::1/128", "127.0.0.1/32"}
	tests := []struct {
		name        string
		trusted     []string
		remote      string
		xff         []string
		want        string
		wantTrusted bool
	}{
		{"direct IPv4 peer", trusted, "203.0.113.9:5000", nil, "203.0.113.9", false},
		{"direct IPv6 peer", trusted, "[2001:db8::7]:5000", nil, "2001:db8::7", false},
		{"IPv4-mapped IPv6 peer is keyed as IPv4", nil, "[::ffff:203.0.113.9]:5000", nil, "203.0.113.9", false},
		{"untrusted peer cannot spoof", trusted, "203.0.113.9:5000", []string{"1.2.3.4"}, "203.0.113.9", false},
		{"nothing trusted: header ignored", nil, "10.0.0.1:5000", []string{"1.2.3.4"}, "10.0.0.1", false},
		{"trusted peer: its client", trusted, "10.0.0.1:5000", []string{"198.51.100.2"}, "198.51.100.2", true},
		{"trusted peer: right-most untrusted wins over a spoofed left part", trusted, "10.0.0.1:5000",
			[]string{"6.6.6.6, 198.51.100.2, 10.0.0.5"}, "198.51.100.2", true},
		{"several header lines read as one list", trusted, "10.0.0.1:5000",
			[]string{"6.6.6.6", "198.51.100.2, 10.1.1.1"}, "198.51.100.2", true},
		{"all hops trusted: the left-most", trusted, "10.0.0.1:5000", []string{"10.9.9.9, 10.0.0.5"}, "10.9.9.9", true},
		{"trusted peer without header", trusted, "10.0.0.1:5000", nil, "10.0.0.1", true},
		{"IPv6 client via trusted loopback", trusted, "[::1]:5000", []string{"2001:db8::1"}, "2001:db8::1", true},
		{"entry with a port", trusted, "10.0.0.1:5000", []string{"198.51.100.2:4711"}, "198.51.100.2", true},
		{"malformed entry stops the walk", trusted, "10.0.0.1:5000", []string{"198.51.100.2, garbage"}, "10.0.0.1", true},
		{"non-canonical IPv6 is normalised", trusted, "10.0.0.1:5000", []string{"2001:DB8:0::1"}, "2001:db8::1", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tt.remote, Header: http.Header{}}
			if tt.xff != nil {
				r.Header["X-Forwarded-For"] = tt.xff
			}
			ip, text, peer := mustPrefixes(t, tt.trusted...).ClientIP(r)
			if text != tt.want || ip.String() != tt.want || peer != tt.wantTrusted {
				t.Fatalf("ClientIP = %v %q trusted=%v, want %q trusted=%v", ip, text, peer, tt.want, tt.wantTrusted)
			}
		})
	}
}

func TestClientIP_DoesNotAllocate(t *testing.T) {
	tp := mustPrefixes(t, "10.0.0.0/8")
	r := &http.Request{RemoteAddr: "10.0.0.1:5000", Header: http.Header{"X-Forwarded-For": {"198.51.100.2, 10.0.0.5"}}}
	if n := testing.AllocsPerRun(100, func() { tp.ClientIP(r) }); n != 0 {
		t.Fatalf("ClientIP allocates %v times per call, want 0", n)
	}
}
