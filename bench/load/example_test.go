package load_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"stdlb/bench/load"
)

func ExampleRun() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("hello\n"))
	}))
	defer srv.Close()

	r, err := load.Run(context.Background(), load.Config{
		URL:      srv.URL,
		Conns:    4,
		Warmup:   50 * time.Millisecond,
		Duration: 200 * time.Millisecond,
		Rate:     1000, // open loop: 1000 requests per second, 200 of them measured
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.Mode(), r.Requests()+r.Unsent, "due;", r.Errors.Total(), "errors")
	fmt.Println("every answer was a 200:", r.Status[200] == r.Responses())
	// Output:
	// open 200 due; 0 errors
	// every answer was a 200: true
}

func ExampleHistogram() {
	var h load.Histogram // the zero value is ready
	for ms := int64(1); ms <= 1000; ms++ {
		h.Record(ms * int64(time.Millisecond))
	}
	fmt.Println("p50", time.Duration(h.Quantile(0.5)).Round(time.Millisecond))
	fmt.Println("p99", time.Duration(h.Quantile(0.99)).Round(time.Millisecond))
	fmt.Println("max", time.Duration(h.Max()), "count", h.Count())
	// The exact p99 is 990ms; the histogram answers within RelativeError
	// (0.4%) of it.

	// Output:
	// p50 500ms
	// p99 992ms
	// max 1s count 1000
}
