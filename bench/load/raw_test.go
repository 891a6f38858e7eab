package load

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/url"
	"testing"
	"time"
)

// fixedServer answers every request read from a connection with reply,
// allocating nothing per request, so a benchmark measures the client. It
// stops when the test ends.
func fixedServer(tb testing.TB, reply string) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	out := []byte(reply)
	go func() { // ends when the listener closes
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { // ends when the client hangs up
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					// Requests carry no body: read up to the blank line.
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) <= 2 {
							break
						}
					}
					if _, err := c.Write(out); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func newTestRawClient(tb testing.TB, addr string) *rawClient {
	u, err := url.Parse("http://" + addr + "/")
	if err != nil {
		tb.Fatal(err)
	}
	c := newRawClient(&rawTarget{addr: addr, request: serializeRequest("GET", u, nil, nil), idempotent: true})
	tb.Cleanup(c.close)
	return c
}

func TestRawClient_KeepsOneConnectionAcrossRequests(t *testing.T) {
	addr := fixedServer(t, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n")
	c := newTestRawClient(t, addr)
	var first net.Conn
	for i := range 50 {
		status, err := c.do(context.Background(), time.Now().Add(5*time.Second))
		if err != nil || status != 200 {
			t.Fatalf("request %d: status %d, err %v", i, status, err)
		}
		if i == 0 {
			first = c.conn
		} else if c.conn != first {
			t.Fatalf("request %d dialled a new connection; keep-alive was lost", i)
		}
	}
}

func TestRawClient_HeaderParsing(t *testing.T) {
	if !hasPrefixFold([]byte("Content-LENGTH: 5"), "content-length:") || hasPrefixFold([]byte("Content-Lengt"), "content-length:") {
		t.Error("hasPrefixFold")
	}
	if hasPrefixFold([]byte("content\rlength:"), "content-length:") {
		t.Error("hasPrefixFold folded a control character into '-'")
	}
	for in, want := range map[string]int64{" 42 ": 42, "0": 0, "": -1, "-1": -1, "4x": -1, "9999999999999999999": -1} {
		if got := parseDecimal([]byte(in)); got != want {
			t.Errorf("parseDecimal(%q) = %d, want %d", in, got, want)
		}
	}
	for in, want := range map[string]int64{"1a": 26, "FF;name=v": 255, "0": 0} {
		if got, ok := parseHex([]byte(in)); !ok || got != want {
			t.Errorf("parseHex(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "zz", ";ext"} {
		if _, ok := parseHex([]byte(in)); ok {
			t.Errorf("parseHex(%q) accepted", in)
		}
	}
	u, _ := url.Parse("http://h:1/p?q=1")
	req := serializeRequest("POST", u, map[string][]string{"X-Api-Key": {"k"}}, []byte("ab"))
	want := "POST /p?q=1 HTTP/1.1\r\nHost: h:1\r\nUser-Agent: " + userAgent + "\r\nX-Api-Key: k\r\nContent-Length: 2\r\n\r\nab"
	if !bytes.Equal(req, []byte(want)) {
		t.Errorf("serializeRequest:\n%q\nwant\n%q", req, want)
	}
}

// BenchmarkRawClient/keepalive answers: how much does the generator spend
// per request, beside the server? It should allocate nothing.
func BenchmarkRawClient(b *testing.B) {
	b.Run("keepalive", func(b *testing.B) {
		addr := fixedServer(b, "HTTP/1.1 200 OK\r\nContent-Length: 14\r\nX-Backend: b1\r\n\r\nhello from b1\n")
		c := newTestRawClient(b, addr)
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.do(ctx, time.Now().Add(5*time.Second)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
