package load

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// client is one worker's connection to the target. do sends one request
// and reads the whole response; interrupt may be called from another
// goroutine to abort a do in progress once the run's context is done.
type client interface {
	do(ctx context.Context, deadline time.Time) (status int, err error)
	interrupt()
	close()
}

// clientFactory makes one client per worker.
type clientFactory struct {
	raw *rawTarget // engine "raw"

	// engine "std": one Transport for the run, sized for Conns keep-alive
	// connections.
	transport *http.Transport
	std       *http.Client
	newReq    func(ctx context.Context) (*http.Request, error)
}

func newClientFactory(cfg *Config) (*clientFactory, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("url %q: %w", cfg.URL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("url %q: scheme must be http or https", cfg.URL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("url %q: no host", cfg.URL)
	}
	var tlsConfig *tls.Config
	if u.Scheme == "https" {
		tlsConfig = &tls.Config{ServerName: u.Hostname(), InsecureSkipVerify: cfg.Insecure}
	}
	method := cmpOr(cfg.Method, http.MethodGet)
	switch cfg.Engine {
	case "", "raw":
		addr := u.Host
		if u.Port() == "" {
			addr = net.JoinHostPort(u.Hostname(), map[string]string{"http": "80", "https": "443"}[u.Scheme])
		}
		return &clientFactory{raw: &rawTarget{
			addr:       addr,
			tlsConfig:  tlsConfig,
			request:    serializeRequest(method, u, cfg.Header, cfg.Body),
			noBody:     method == http.MethodHead,
			idempotent: isIdempotent(method),
		}}, nil
	case "std":
		tr := &http.Transport{
			Proxy:               nil, // measure the target, not an environment proxy
			DialContext:         (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:     tlsConfig,
			MaxIdleConns:        cfg.Conns,
			MaxIdleConnsPerHost: cfg.Conns,
			MaxConnsPerHost:     cfg.Conns,
			DisableCompression:  true,
			IdleConnTimeout:     90 * time.Second,
		}
		f := &clientFactory{transport: tr, std: &http.Client{Transport: tr, Timeout: cfg.Timeout}}
		f.newReq = func(ctx context.Context) (*http.Request, error) {
			req, err := http.NewRequestWithContext(ctx, method, cfg.URL, nil)
			if err != nil {
				return nil, fmt.Errorf("build request: %w", err)
			}
			req.Header = cfg.Header.Clone()
			if req.Header == nil {
				req.Header = http.Header{}
			}
			if h := req.Header.Get("Host"); h != "" {
				req.Host = h
			}
			req.Header.Set("User-Agent", userAgent)
			return req, nil
		}
		return f, nil
	default:
		return nil, fmt.Errorf("engine %q: want raw or std", cfg.Engine)
	}
}

// newClient returns a client for one worker; ctx is the run's context.
func (f *clientFactory) newClient(ctx context.Context, body []byte) (client, error) {
	if f.raw != nil {
		return newRawClient(f.raw), nil
	}
	req, err := f.newReq(ctx)
	if err != nil {
		return nil, err
	}
	return &stdClient{client: f.std, req: req, body: body}, nil
}

// shutdown releases what the factory holds once every client is closed.
func (f *clientFactory) shutdown() {
	if f.transport != nil {
		f.transport.CloseIdleConnections()
	}
}

// stdClient uses net/http, as a cross-check on the raw engine and for
// targets it cannot speak to. It reuses one *http.Request per worker,
// which net/http allows once the previous response body is closed.
type stdClient struct {
	client *http.Client
	req    *http.Request
	body   []byte
}

func (c *stdClient) do(ctx context.Context, _ time.Time) (int, error) {
	if c.body != nil {
		c.req.Body = io.NopCloser(bytes.NewReader(c.body))
		c.req.ContentLength = int64(len(c.body))
	}
	resp, err := c.client.Do(c.req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return resp.StatusCode, fmt.Errorf("read body: %w", err)
	}
	return resp.StatusCode, nil
}

func (c *stdClient) interrupt() {} // the request carries the run's context
func (c *stdClient) close()     {}

const userAgent = "stdlb-bench/1"

// serializeRequest writes the request once; every rawClient sends these
// same bytes. A Host given in header replaces the URL's.
func serializeRequest(method string, u *url.URL, header http.Header, body []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", method, u.RequestURI())
	host := u.Host
	if h := header.Get("Host"); h != "" {
		host = h
	}
	fmt.Fprintf(&b, "Host: %s\r\nUser-Agent: %s\r\n", host, userAgent)
	names := make([]string, 0, len(header))
	for name := range header {
		names = append(names, name)
	}
	slices.Sort(names) // same bytes every run
	for _, name := range names {
		if strings.EqualFold(name, "Host") || strings.EqualFold(name, "Content-Length") {
			continue
		}
		for _, v := range header[name] {
			fmt.Fprintf(&b, "%s: %s\r\n", name, v)
		}
	}
	if len(body) > 0 || method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}

func isIdempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// hasPrefixFold reports whether line starts with prefix, ignoring ASCII
// case; prefix must be lower case.
func hasPrefixFold(line []byte, prefix string) bool {
	if len(line) < len(prefix) {
		return false
	}
	for i := range len(prefix) {
		ch := line[i]
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		if ch != prefix[i] {
			return false
		}
	}
	return true
}

// containsFold reports whether s contains the lower-case word, ignoring
// ASCII case.
func containsFold(s []byte, word string) bool {
	for i := 0; i+len(word) <= len(s); i++ {
		if hasPrefixFold(s[i:], word) {
			return true
		}
	}
	return false
}

// parseDecimal parses a header value such as " 1234 "; -1 if it is not a
// non-negative decimal number.
func parseDecimal(v []byte) int64 {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || len(v) > 18 {
		return -1
	}
	var n int64
	for _, ch := range v {
		if ch < '0' || ch > '9' {
			return -1
		}
		n = n*10 + int64(ch-'0')
	}
	return n
}

// parseHex parses a chunk-size line, ignoring chunk extensions.
func parseHex(line []byte) (int64, bool) {
	var n int64
	digits := 0
	for _, ch := range line {
		var d byte
		switch {
		case ch >= '0' && ch <= '9':
			d = ch - '0'
		case ch >= 'a' && ch <= 'f':
			d = ch - 'a' + 10
		case ch >= 'A' && ch <= 'F':
			d = ch - 'A' + 10
		default:
			return n, digits > 0 && (ch == ';' || ch == ' ' || ch == '\t')
		}
		if digits++; digits > 15 {
			return 0, false
		}
		n = n<<4 | int64(d)
	}
	return n, digits > 0
}
