package main

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestBackend_Endpoints(t *testing.T) {
	srv := httptest.NewServer(newHandler("b7"))
	defer srv.Close()
	tests := []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"GET", "/", "", 200, "hello from b7\n"},
		{"GET", "/healthz", "", 200, "ok\n"},
		{"POST", "/health/down", "", 200, "b7: health checks now fail\n"},
		{"GET", "/healthz", "", 503, "b7 is down (POST /health/up to bring it back)\n"},
		{"POST", "/health/up", "", 200, "b7: health checks now pass\n"},
		{"GET", "/healthz", "", 200, "ok\n"},
		{"GET", "/status/418", "", 418, "b7 answered 418\n"},
		{"GET", "/status/42", "", 400, "code: want a number between 200 and 599\n"},
		{"GET", "/sleep?delay=10ms", "", 200, "b7 slept 10ms\n"},
		{"GET", "/sleep?delay=forever", "", 400, "delay: want a duration between 0 and 5m, e.g. ?delay=500ms\n"},
		{"POST", "/echo", strings.Repeat("0123456789", 10000), 200, strings.Repeat("0123456789", 10000)},
		{"GET", "/stream?n=3&every=1ms", "", 200, "b7 line 1 of 3\nb7 line 2 of 3\nb7 line 3 of 3\n"},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, srv.URL+tt.path, strings.NewReader(tt.body))
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || string(body) != tt.want || resp.Header.Get("X-Backend") != "b7" {
			t.Errorf("%s %s: %d %q (X-Backend %q), want %d %q", tt.method, tt.path, resp.StatusCode,
				trim(string(body)), resp.Header.Get("X-Backend"), tt.status, trim(tt.want))
		}
	}
}

func trim(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

func TestBackend_HeadersAsJSON(t *testing.T) {
	srv := httptest.NewServer(newHandler("b1"))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/headers", nil)
	req.Header.Add("X-Thing", "one")
	req.Header.Add("X-Thing", "two")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	if h["X-Thing"] != "one, two" || h["Host"] == "" {
		t.Fatalf("headers = %v", h)
	}
}

func TestBackend_WebSocketEcho(t *testing.T) {
	srv := httptest.NewServer(newHandler("b1"))
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	// RFC 6455 section 1.3's worked example.
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("Sec-WebSocket-Accept = %q", got)
	}
	for _, msg := range []string{"hello", strings.Repeat("x", 300)} {
		conn.Write(clientFrame(0x1, []byte(msg)))
		op, payload := serverFrame(t, br)
		if op != 0x1 || string(payload) != msg {
			t.Fatalf("echo of %d bytes: op %d, %d bytes", len(msg), op, len(payload))
		}
	}
	conn.Write(clientFrame(0x8, []byte{0x03, 0xE8}))
	if op, _ := serverFrame(t, br); op != 0x8 {
		t.Fatalf("close answered with op %d", op)
	}
}

// clientFrame builds a masked, final frame as a browser sends it.
func clientFrame(op byte, payload []byte) []byte {
	var mask [4]byte
	rand.Read(mask[:])
	f := []byte{0x80 | op}
	switch n := len(payload); {
	case n < 126:
		f = append(f, 0x80|byte(n))
	default:
		f = append(f, 0x80|126)
		f = binary.BigEndian.AppendUint16(f, uint16(n))
	}
	f = append(f, mask[:]...)
	for i, c := range payload {
		f = append(f, c^mask[i%4])
	}
	return f
}

func serverFrame(t *testing.T, r *bufio.Reader) (byte, []byte) {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		t.Fatal(err)
	}
	n := int(h[1] & 0x7F)
	if n == 126 {
		var ext [2]byte
		io.ReadFull(r, ext[:])
		n = int(binary.BigEndian.Uint16(ext[:]))
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		t.Fatal(err)
	}
	return h[0] & 0x0F, p
}
