package h1

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// A method, query or Host that HTTP/1.1 cannot carry, as HTTP/2 can hand them
// to a handler: written into a request line or a Host field, each would be
// read by a backend as something the client did not frame.
var unsendable = []struct {
	name, method, host, query string
}{
	{"query with a space (a second version)", "GET", "example.com", "a b HTTP/1.1"},
	{"query with a tab", "GET", "example.com", "a\tb"},
	{"query with CRLF", "GET", "example.com", "a\r\nX: y"},
	{"query with DEL", "GET", "example.com", "a\x7f"},
	{"query with a fragment", "GET", "example.com", "a#b"},
	{"CONNECT", "CONNECT", "example.com:443", ""},
	{"method with spaces (a second request line)", "GET /admin HTTP/1.1", "example.com", ""},
	{"method with a tab", "GET\t/admin", "example.com", ""},
	{"method with CRLF", "GET\r\nX: y", "example.com", ""},
	{"method with a non-token byte", "G@T", "example.com", ""},
	{"method empty", "", "example.com", ""},
	{"method with a byte over 0x7f", "G\xc3\xa9T", "example.com", ""},
	{"Host with a space", "GET", "a b", ""},
	{"Host with a path", "GET", "example.com/admin", ""},
	{"Host with userinfo", "GET", "user@example.com", ""},
	{"Host with CRLF", "GET", "example.com\r\nX-Injected: 1", ""},
	{"Host with a bad port", "GET", "example.com:8o", ""},
	{"Host with only a port", "GET", ":80", ""},
	{"Host with an unclosed IPv6 bracket", "GET", "[::1", ""},
}

func TestCheckRequest_RefusesWhatHTTP1CannotCarry(t *testing.T) {
	for _, tc := range unsendable {
		t.Run(tc.name, func(t *testing.T) {
			req := &http.Request{Method: tc.method, Host: tc.host, URL: &url.URL{Path: "/", RawQuery: tc.query}}
			var he *Error
			if err := CheckRequest(req); !errors.As(err, &he) || he.Kind != KindRequest {
				t.Errorf("CheckRequest(%q, Host %q) = %v, want an *Error of KindRequest", tc.method, tc.host, err)
			}
		})
	}
}

func TestCheckRequest_TakesPlainRequests(t *testing.T) {
	for _, tc := range []struct{ method, host, path string }{
		{"GET", "example.com", "/"}, // each with the query below
		{"PROPFIND", "example.com:8080", "/"},
		{"M-SEARCH", "[2001:db8::1]:443", "/"},
		{"PURGE", "10.0.0.1", "/"},
		{"GET", "my_service.internal", "/"},
		{"GET", "", "/"}, // HTTP/1.0 without Host: written as the URL's host, or empty
		{"OPTIONS", "example.com", "*"},
	} {
		req := &http.Request{Method: tc.method, Host: tc.host, URL: &url.URL{Path: tc.path, RawQuery: "a=1;b=%zz&c=\"<>\xc3\xa9"}}
		if err := CheckRequest(req); err != nil {
			t.Errorf("CheckRequest(%q, Host %q) = %v, want nil", tc.method, tc.host, err)
		}
	}
}

// TestClient_SendsNothingCheckRequestRefuses: the client refuses such a
// request before it takes or dials a connection.
func TestClient_SendsNothingCheckRequestRefuses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cl := NewClient(ln.Addr().String())
	defer cl.Close()
	for _, tc := range unsendable {
		req := &http.Request{Method: tc.method, Host: tc.host, URL: &url.URL{Scheme: "http", Host: ln.Addr().String(), Path: "/", RawQuery: tc.query}, Header: http.Header{}}
		resp, err := cl.RoundTrip(req, Timeouts{Response: 10 * time.Second}, new(Scratch))
		var he *Error
		if !errors.As(err, &he) || he.Kind != KindRequest {
			if resp != nil {
				resp.Body.Close()
			}
			t.Errorf("%s: RoundTrip = %v, want an *Error of KindRequest", tc.name, err)
		}
	}
	// A dial would have completed before RoundTrip returned, so its
	// connection would be waiting here already.
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(100 * time.Millisecond))
	if c, err := ln.Accept(); err == nil {
		c.Close()
		t.Fatal("the client connected to the backend for a request it refuses")
	}
}

// BenchmarkCheckRequest: what the check costs a request (the balancer
// makes it twice: before admission, and in RoundTrip).
func BenchmarkCheckRequest(b *testing.B) {
	req := &http.Request{Method: "GET", Host: "api.example.com:8080", URL: &url.URL{Path: "/"}}
	b.ReportAllocs()
	for b.Loop() {
		if CheckRequest(req) != nil {
			b.Fatal("refused")
		}
	}
}
