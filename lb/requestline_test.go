package lb

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestBalancer_RefusesOverHTTP2WhatHTTP1CannotCarry: HTTP/2 carries a
// method, a query or an :authority as any string without CR, LF or NUL, and
// net/http's server hands such a request to the handler. Written into the
// backend's HTTP/1.1 request line or Host field, "GET /admin HTTP/1.1 X"
// as a method makes the backend read a request for /admin. The balancer
// answers 400 and sends nothing.
func TestBalancer_RefusesOverHTTP2WhatHTTP1CannotCarry(t *testing.T) {
	var conns atomic.Int64 // connections the backend accepted
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "from the backend")
	}))
	be.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	be.Start()
	defer be.Close()
	b := newBalancer(t, testConfig(t, be.URL), &logBuffer{})
	f := startTLSBalancer(t, b, true)
	addr := strings.TrimPrefix(f.URL, "https://")

	for _, tc := range []struct{ name, method, path, authority, want string }{
		{"method with spaces", "GET /admin HTTP/1.1 X", "/public", "127.0.0.1", "method is not a token"},
		{"method with a tab", "GET\t/admin", "/public", "127.0.0.1", "method is not a token"},
		{"method with a non-token byte", "G@T", "/public", "127.0.0.1", "method is not a token"},
		{"query with a space", "GET", "/public?a /admin HTTP/1.1", "127.0.0.1", "a space, a control byte or a fragment in its query"},
		{"query with a fragment", "GET", "/public?a#b", "127.0.0.1", "a space, a control byte or a fragment in its query"},
		{"target * for GET", "GET", "*", "127.0.0.1", "target * is for OPTIONS only"},
		{"path with a space", "GET", "/a /admin", "127.0.0.1", "a space, a control byte or a fragment in its path"},
		{"path with a fragment", "GET", "/a#b", "127.0.0.1", "a space, a control byte or a fragment in its path"},
		// No :path or :scheme, as RFC 9113 section 8.5 has it; h1.Server
		// answers CONNECT with 501, and so does the balancer. (Found by an
		// attacker's review: it was forwarded as "CONNECT / HTTP/1.1", and
		// a backend's 2xx with a Content-Length put the tunnel in the pool.)
		{"CONNECT", "CONNECT", "", "127.0.0.1:9", "not implemented: the request method CONNECT is not proxied"},
		{"authority with a space and a path", "GET", "/public", "a b/admin", "Host is not a valid host"},
		{"authority with a bad port", "GET", "/public", "127.0.0.1:8o", "Host is not a valid host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := h2Exchange(t, addr, tc.method, tc.path, tc.authority)
			if !strings.Contains(got, tc.want) {
				t.Errorf("answer body %q, want the balancer's 400 saying %q", got, tc.want)
			}
		})
	}
	if n := conns.Load(); n != 0 {
		t.Fatalf("the balancer opened %d connections to the backend, want none", n)
	}
	// The same client, plain: proxied, so the refusals above are not the
	// raw client's own doing.
	if got := h2Exchange(t, addr, "GET", "/public", "127.0.0.1"); got != "from the backend" {
		t.Fatalf("a plain HTTP/2 request got %q, want the backend's answer", got)
	}
}

// h2Exchange sends one request over HTTP/2 made by hand (net/http's client
// refuses to send a method that is not a token) and returns the body of
// stream 1's answer, or "reset" when the stream or connection is reset.
// An empty path sends neither :path nor :scheme, as for CONNECT; extra
// fields follow the pseudo-fields.
// Fields are sent as HPACK literals without indexing or Huffman coding.
func h2Exchange(t *testing.T, addr, method, path, authority string, extra ...[2]string) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN chose %q, want h2", p)
	}
	c.SetDeadline(time.Now().Add(failAfter))
	fields := [][2]string{{":method", method}, {":scheme", "https"}, {":path", path}, {":authority", authority}}
	if path == "" {
		fields = [][2]string{{":method", method}, {":authority", authority}} // CONNECT
	}
	fields = append(fields, extra...)
	var block []byte
	for _, f := range fields {
		block = append(block, 0) // literal field without indexing, new name
		block = hpackString(block, f[0])
		block = hpackString(block, f[1])
	}
	out := []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	out = h2Frame(out, 0x4, 0, 0, nil)     // SETTINGS
	out = h2Frame(out, 0x1, 0x5, 1, block) // HEADERS, END_STREAM|END_HEADERS
	if _, err := c.Write(out); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var body []byte
	for {
		var h [9]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			t.Fatalf("reading the answer: %v (so far %q)", err, body)
		}
		payload := make([]byte, int(h[0])<<16|int(h[1])<<8|int(h[2]))
		if _, err := io.ReadFull(br, payload); err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		typ, flags, stream := h[3], h[4], binary.BigEndian.Uint32(h[5:])&(1<<31-1)
		switch {
		case typ == 0x4 && flags&0x1 == 0: // SETTINGS: acknowledge
			if _, err := c.Write(h2Frame(nil, 0x4, 0x1, 0, nil)); err != nil {
				t.Fatal(err)
			}
		case typ == 0x3 && stream == 1, typ == 0x7: // RST_STREAM, GOAWAY
			return "reset"
		case typ == 0x0 && stream == 1: // DATA
			body = append(body, payload...)
			if flags&0x1 != 0 {
				return string(body)
			}
		case typ == 0x1 && stream == 1 && flags&0x1 != 0: // HEADERS ending the stream
			return string(body)
		}
	}
}

func hpackString(b []byte, s string) []byte {
	// A length under 127 fits the 7-bit prefix; the tests' strings do.
	if len(s) >= 127 {
		panic("hpackString: too long for one byte of length")
	}
	return append(append(b, byte(len(s))), s...)
}

func h2Frame(b []byte, typ, flags byte, stream uint32, payload []byte) []byte {
	n := len(payload)
	b = append(b, byte(n>>16), byte(n>>8), byte(n), typ, flags)
	b = binary.BigEndian.AppendUint32(b, stream)
	return append(b, payload...)
}

// TestBalancer_PassesTheQueryAsSent: the backend gets the query the client
// sent, byte for byte, on every front path. httputil.ReverseProxy would
// re-encode a query with a ';' or a bad escape and drop what it cannot
// parse.
func TestBalancer_PassesTheQueryAsSent(t *testing.T) {
	queries := []string{
		"z=1&a=2;c=3",    // ';': re-encoded, sorted, "a=2;c=3" dropped
		"a%zz=1&b=2",     // a bad escape: dropped
		"b=2&a=1",        // order kept
		"q=%3b%3B&r=a+b", // escapes as sent
		"a=1&&b=",        // empty pairs
		"",               // none
	}
	for _, fp := range frontPaths {
		t.Run(fp.name, func(t *testing.T) {
			got := make(chan string, 1)
			be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got <- r.URL.RawQuery
			}))
			defer be.Close()
			f := fp.start(t, newBalancer(t, testConfig(t, be.URL), &logBuffer{}))
			for _, q := range queries {
				u := f.URL + "/x"
				if q != "" {
					u += "?" + q
				}
				resp, err := f.Client().Get(u)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("?%s: status %d", q, resp.StatusCode)
				}
				if b := <-got; b != q {
					t.Errorf("the backend got the query %q, want %q as sent", b, q)
				}
			}
		})
	}
}

// TestBalancer_IgnoresUpgradeFromHTTP10: RFC 9110 section 7.8, a server
// ignores Upgrade in an HTTP/1.0 request, whose client cannot take a 101.
// (Found by an attacker's review: it was passed on, the client got a 101,
// and the request pipelined after it went into the tunnel. nginx 1.22 does
// the same; HAProxy 2.6 answers 400.)
func TestBalancer_IgnoresUpgradeFromHTTP10(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path+" upgrade="+r.Header.Get("Upgrade"))
	}))
	defer be.Close()
	f := startBalancer(t, newBalancer(t, testConfig(t, be.URL), &logBuffer{}))
	c, err := net.Dial("tcp", f.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(failAfter))
	io.WriteString(c, "GET /ws HTTP/1.0\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"+
		"GET /two HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(b) != "/ws upgrade=" {
		t.Fatalf("an HTTP/1.0 request asking to upgrade got %d %q, want the backend's 200 for a plain request", resp.StatusCode, b)
	}
}

// rawGet sends a GET for target with the extra field lines over HTTP/1.1
// and returns the answer's body.
func rawGet(t *testing.T, addr, target, fields string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(failAfter))
	io.WriteString(c, "GET "+target+" HTTP/1.1\r\nHost: a\r\n"+fields+"Connection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestBalancer_PassesThePathAsSent: the backend gets the path the client
// sent, byte for byte, over HTTP/1.1 and HTTP/2. (Found by an attacker's
// review: url.URL.EscapedPath re-encodes a path that holds a byte over
// 0x7f from its decoded form, so "..%2f..%2fadmin\xc3\xa9" reached the
// backend as "../../admin%C3%A9", a path it was not asked for.)
func TestBalancer_PassesThePathAsSent(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.RequestURI)
	}))
	defer be.Close()
	b := newBalancer(t, testConfig(t, be.URL), &logBuffer{})
	plain := startBalancer(t, b)
	tls := startTLSBalancer(t, b, true)
	for _, target := range []string{
		"/files/..%2f..%2fadmin\xc3\xa9",
		"/group%2Fproject\xff",
		"/a%3bb\xc3\xa9?q=1",
		"/plain/%41%2f",
		"/caf\xc3\xa9",
		"/x",
	} {
		if got := rawGet(t, plain.Addr(), target, ""); got != target {
			t.Errorf("HTTP/1.1 %q reached the backend as %q", target, got)
		}
		if got := h2Exchange(t, strings.TrimPrefix(tls.URL, "https://"), "GET", target, "127.0.0.1"); got != target {
			t.Errorf("HTTP/2 %q reached the backend as %q", target, got)
		}
	}
}

// TestBalancer_LeavesOutNamesWithUnderscores: a field whose name holds a
// '_' reaches neither the limiter nor the backend, over HTTP/1.1 or
// HTTP/2, as nginx leaves it out: CGI, WSGI, PHP and Rack backends read
// X_Forwarded_For as X-Forwarded-For. (Found by attackers' reviews: a WSGI
// backend saw HTTP_X_FORWARDED_FOR='6.6.6.6,127.0.0.1', and X_API_Key was
// counted by nobody.)
func TestBalancer_LeavesOutNamesWithUnderscores(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var names []string
		for k := range r.Header {
			if strings.Contains(k, "_") {
				names = append(names, k)
			}
		}
		fmt.Fprintf(w, "%v %s", names, r.Header.Get("X-Kept"))
	}))
	defer be.Close()
	b := newBalancer(t, testConfig(t, be.URL), &logBuffer{})
	plain := startBalancer(t, b)
	tls := startTLSBalancer(t, b, true)
	const want = "[] yes"
	if got := rawGet(t, plain.Addr(), "/", "X_Forwarded_For: 6.6.6.6\r\nX_API_Key: real\r\nX-Kept: yes\r\n"); got != want {
		t.Errorf("HTTP/1.1: the backend answered %q, want %q", got, want)
	}
	got := h2Exchange(t, strings.TrimPrefix(tls.URL, "https://"), "GET", "/", "127.0.0.1",
		[2]string{"x_forwarded_for", "6.6.6.6"}, [2]string{"x_api_key", "real"}, [2]string{"x-kept", "yes"})
	if got != want {
		t.Errorf("HTTP/2: the backend answered %q, want %q", got, want)
	}
}

// TestBalancer_HTTP2ExpectsOnly100Continue: an Expect other than
// 100-continue is a 417 over HTTP/2 as over HTTP/1.1, never forwarded.
// (Found by an attacker's review: it reached the backend.)
func TestBalancer_HTTP2ExpectsOnly100Continue(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "from the backend, expect="+r.Header.Get("Expect"))
	}))
	defer be.Close()
	f := startTLSBalancer(t, newBalancer(t, testConfig(t, be.URL), &logBuffer{}), true)
	got := h2Exchange(t, strings.TrimPrefix(f.URL, "https://"), "GET", "/", "127.0.0.1", [2]string{"expect", "something"})
	if !strings.Contains(got, "expectation failed") {
		t.Fatalf("Expect: something over HTTP/2 got %q, want the balancer's 417", got)
	}
}

// TestBalancer_HTTP2HasHTTP1sFieldLimit: more than 100 fields is a 431
// over HTTP/2 as over HTTP/1.1, however small HPACK makes them. (Found by
// an attacker's review: 1,700 fields from a block of 1,783 bytes reached
// the backend.)
func TestBalancer_HTTP2HasHTTP1sFieldLimit(t *testing.T) {
	var conns atomic.Int64
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	be.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	be.Start()
	defer be.Close()
	f := startTLSBalancer(t, newBalancer(t, testConfig(t, be.URL), &logBuffer{}), true)
	extra := make([][2]string, 101)
	for i := range extra {
		extra[i] = [2]string{"x-f", "y"}
	}
	got := h2Exchange(t, strings.TrimPrefix(f.URL, "https://"), "GET", "/", "127.0.0.1", extra...)
	if !strings.Contains(got, "more than 100 fields") || conns.Load() != 0 {
		t.Fatalf("101 fields over HTTP/2: %q, %d backend connections; want the balancer's 431 and none", got, conns.Load())
	}
}
