package lb

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// Review finding 8: a client that sends its body in one-byte chunks makes
// the balancer write to the backend once per chunk: h1's chunked decoder
// returns at most one chunk per Read, and the body writer re-chunks and
// flushes what each Read gave. Six bytes from the client cost a write
// system call and a chunk header to the backend (on the built balancer a
// 768 KiB upload of one-byte chunks took 0.21 s of CPU; the same bytes in
// one chunk too little to measure). nginx and HAProxy buffer and forward
// what has arrived in one send.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

func TestBalancer_TinyChunksArrivingTogetherAreNotWrittenOneByOne(t *testing.T) {
	be := namedBackend(t, "b", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Got", itoa64(n))
	}))
	cfg := testConfig(t, be.URL)
	b := newBalancer(t, cfg, &logBuffer{})
	var writes atomic.Int64
	b.pool.Load().backends[0].client.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{c, &writes}, nil
	}
	f := startBalancer(t, b)
	conn, err := net.Dial("tcp", f.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const chunks = 4096
	io.WriteString(conn, "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"+
		strings.Repeat("1\r\nx\r\n", chunks)+"0\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Got"); got != itoa64(chunks) {
		t.Fatalf("the backend got %s bytes, want %d", got, chunks)
	}
	if n := writes.Load(); n > 64 {
		t.Fatalf("%d one-byte chunks sent in one write cost %d writes to the backend", chunks, n)
	}
}

func itoa64(n int64) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
