package h1

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Review finding 4 (continued): doc.go promises that unasked bytes are
// reported to Client.OnDiscard, and no test at this commit looks at
// OnDiscard. This one does, for bytes that come with an answer and bytes
// that come while the connection sits idle. (It passes on the current
// code.)
func TestClient_ReportsUnaskedBytesToOnDiscard(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sameTime bool
	}{{"after the answer, in the same write", true}, {"on the idle connection", false}} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			idle := make(chan struct{})
			sent := make(chan struct{})
			go func() {
				for first := true; ; first = false {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func(first bool) {
						defer c.Close()
						br := bufio.NewReader(c)
						for i := 0; ; i++ {
							req, err := http.ReadRequest(br)
							if err != nil {
								return
							}
							io.Copy(io.Discard, req.Body)
							answer := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
							if first && i == 0 && tc.sameTime {
								answer += "STRAY"
							}
							io.WriteString(c, answer)
							if first && i == 0 && !tc.sameTime {
								<-idle
								io.WriteString(c, "STRAY")
								close(sent)
							}
						}
					}(first)
				}
			}()
			var mu sync.Mutex
			var reports []string
			cl := NewClient(ln.Addr().String())
			cl.OnDiscard = func(reason string) {
				mu.Lock()
				reports = append(reports, reason)
				mu.Unlock()
			}
			defer cl.Close()
			get := func() {
				req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/", nil)
				resp, err := cl.RoundTrip(req, Timeouts{Dial: 5 * time.Second, Response: 5 * time.Second}, new(Scratch))
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != "ok" {
					t.Fatalf("answer %q", b)
				}
			}
			get()
			if !tc.sameTime {
				close(idle)
				<-sent
				waitFor(t, "the stray bytes to reach the idle connection", func() bool {
					cl.idle.mu.Lock()
					defer cl.idle.mu.Unlock()
					if len(cl.idle.stack) != 1 {
						return false
					}
					_, state := newPeeker(cl.idle.stack[0].nc).look()
					return state == peekData
				})
			}
			get()
			mu.Lock()
			defer mu.Unlock()
			if len(reports) != 1 || !strings.Contains(reports[0], "STRAY") {
				t.Fatalf("OnDiscard was told %q; want one report that shows the stray bytes", reports)
			}
		})
	}
}
