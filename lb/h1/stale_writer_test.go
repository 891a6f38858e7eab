package h1

import (
	"bufio"
	"io"
	"net/http"
	"testing"
)

// Review finding 6: srvResponse's comment promises that "a handler
// goroutine that outlives ServeHTTP (a bug) cannot write into the next
// answer on the connection", but Write does not look at done: the answer
// is one per request, the write buffer is the connection's. A goroutine
// left behind by a handler writes into whatever answer comes next on the
// connection, and Write reports success.
func TestServer_StaleResponseWriterCannotWriteIntoTheNextAnswer(t *testing.T) {
	stale := make(chan http.ResponseWriter, 1)
	staleDone := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/first":
			io.WriteString(w, "first") // no Content-Length: chunked
			stale <- w                 // kept by a goroutine that outlives the handler
		case "/second":
			<-staleDone // the stale write has happened
			w.Header().Set("Content-Length", "6")
			io.WriteString(w, "second")
		}
	})
	s := startServer(t, &http.Server{Handler: h})
	conn := dialTest(t, s.Addr())
	br := bufio.NewReader(conn)
	io.WriteString(conn, "GET /first HTTP/1.1\r\nHost: h\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(resp.Body); string(b) != "first" {
		t.Fatalf("first answer %q", b)
	}
	w := <-stale
	io.WriteString(conn, "GET /second HTTP/1.1\r\nHost: h\r\n\r\n")
	_, werr := io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nFORGED")
	staleDone <- werr
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the second answer is unreadable (the stale Write returned %v): %v", werr, err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "second" || werr == nil {
		t.Fatalf("second answer %d %q; the stale Write returned %v, want an error", resp.StatusCode, b, werr)
	}
}
