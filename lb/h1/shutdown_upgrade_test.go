package h1

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"
)

// Review finding 7: Shutdown's documentation says "As with
// http.Server.Shutdown, upgraded connections are not waited for", but a
// hijacked connection stays tracked until its handler returns, so
// Shutdown waits for every WebSocket to end (and Close closes them), unlike
// http.Server, which stops tracking a connection when it is hijacked.
func TestServer_ShutdownDoesNotWaitForHijackedConnections(t *testing.T) {
	hijacked, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	srv := startServer(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n")
		close(hijacked)
		<-release // relaying, as ReverseProxy does for a WebSocket
	})})
	conn := dialTest(t, srv.Addr())
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n")
	receive(t, hijacked, "the handler to hijack the connection")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with only an upgraded connection open: %v", err)
	}
}
