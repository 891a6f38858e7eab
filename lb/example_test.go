package lb_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"

	"stdlb/lb"
)

// A balancer over two backends, round robin: requests alternate.
func Example() {
	var backends []lb.BackendConfig
	for _, name := range []string{"a", "b"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "hello from "+name)
		}))
		defer srv.Close()
		u, _ := url.Parse(srv.URL)
		backends = append(backends, lb.BackendConfig{URL: u})
	}
	bal, err := lb.New(lb.Config{Backends: backends, Algorithm: lb.AlgorithmRoundRobin}, lb.Options{})
	if err != nil {
		panic(err)
	}
	front := httptest.NewServer(bal)
	defer front.Close()
	for range 4 {
		resp, err := http.Get(front.URL)
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(string(body))
	}
	// Output:
	// hello from a
	// hello from b
	// hello from a
	// hello from b
}

// A smooth weighted round robin gives weights 3 and 1 as a, a, b, a.
func ExampleNewWeightedRoundRobin() {
	var backends []*lb.Backend
	for _, host := range []string{"a:80", "b:80"} {
		backends = append(backends, lb.NewBackend(&url.URL{Scheme: "http", Host: host}))
	}
	p := lb.NewWeightedRoundRobin(backends, []int{3, 1})
	for range 4 {
		fmt.Print(backends[p.Pick(0)].URL.Host, " ")
	}
	fmt.Println()
	// Output: a:80 a:80 b:80 a:80
}
