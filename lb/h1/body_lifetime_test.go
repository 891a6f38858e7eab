package h1

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"testing"
)

// Review finding 4 (a rule of doc.go no h1 test holds it to): "when the
// handler returns, a read still waiting for the client is interrupted and
// waited for, and every later read fails". The only test of it is lb's
// TestBalancer_BodyReaderDoesNotOutliveTheExchange, which passes on lb's
// own bodyReader.end() whatever srvBody.finish does. This holds h1 to it
// with a plain handler that leaves its body to a goroutine. (It passes on
// the current code.)
func TestServer_BodyReadOutlivingItsHandlerIsInterruptedAndFailsAfter(t *testing.T) {
	firstRead := make(chan error, 1)
	laterRead := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started := make(chan struct{})
		go func() {
			buf := make([]byte, 64)
			_, err := r.Body.Read(buf) // what the client sent with the head
			close(started)
			for err == nil {
				_, err = r.Body.Read(buf) // waits for the client, who sends no more
			}
			firstRead <- err
			_, err = r.Body.Read(buf)
			laterRead <- err
		}()
		<-started
		w.Header().Set("Content-Length", "5")
		io.WriteString(w, "early")
	})
	s := startServer(t, &http.Server{Handler: h})
	conn := dialTest(t, s.Addr())
	io.WriteString(conn, "POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\nonly a few bytes")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	if !resp.Close {
		t.Fatal("the answer to a request whose body was not read to its end does not say Connection: close")
	}
	if err := receive(t, firstRead, "the read waiting for the client to be interrupted"); err == nil || err == io.EOF {
		t.Fatalf("the interrupted read returned %v", err)
	}
	if err := receive(t, laterRead, "a read after the handler returned"); !errors.Is(err, ErrBodyAfterHandler) {
		t.Fatalf("a read after the handler returned got %v, want ErrBodyAfterHandler", err)
	}
}
