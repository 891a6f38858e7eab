package bucket_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"

	"stdlb/bucket"
)

func Example() {
	// Bursts of 2, then one token a second (10 ticks of 100ms).
	l := bucket.New(bucket.Config{Default: bucket.Limits{Capacity: 2, RefillRate: 1}})
	// In a program: go l.Run(ctx), which ticks every RefillInterval.
	for range 3 {
		fmt.Println(l.Allow("192.0.2.1"))
	}
	for range 10 {
		l.Tick()
	}
	fmt.Println(l.Allow("192.0.2.1"))
	// Output:
	// true
	// true
	// false
	// true
}

func ExampleGate() {
	// In a program: go l.Run(ctx). Here no tick runs, so nothing refills
	// between the two requests whatever the machine does.
	l := bucket.New(bucket.Config{Default: bucket.Limits{Capacity: 1, RefillRate: 0.5}})

	g := &bucket.Gate{
		Limiter:   l,
		KeyHeader: "X-API-Key",
		ClientIP:  func(r *http.Request) netip.Addr { return netip.MustParseAddr("192.0.2.1") }, // the balancer's trusted-proxy logic
	}
	h := g.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello")
	}))
	for range 2 {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
		fmt.Print(w.Code, " ", w.Header().Get("Retry-After"), " ", w.Body)
	}
	// Output:
	// 200  hello
	// 429 2 {"error":"rate limit exceeded","retry_after":2}
}
