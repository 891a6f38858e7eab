package lb

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"stdlb/lb/h1"
)

// testCert returns a self-signed certificate for 127.0.0.1, made in the
// test.
func testCert(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "stdlb test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// startTLSBalancer serves b over TLS, as a balancer with a certificate
// does: HTTP/1.1 on h1.Server's own loop, HTTP/2 (when h2 is true and the
// client asks for it) on net/http's server.
func startTLSBalancer(t *testing.T, b *Balancer, h2 bool) *front {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	protos := []string{"http/1.1"}
	if h2 {
		protos = []string{"h2", "http/1.1"}
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{testCert(t)}, NextProtos: protos}
	hs := &http.Server{Handler: b, TLSConfig: cfg}
	f := &front{URL: "https://" + ln.Addr().String(), srv: h1.NewServer(hs),
		client: &http.Client{Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
			ForceAttemptHTTP2: h2,
		}}}
	serveFront(t, f, tls.NewListener(ln, cfg), func() (net.Conn, error) {
		return tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	})
	return f
}

// frontPaths are the ways a client reaches the balancer, for tests that
// must hold on each: plain HTTP/1.1, HTTP/1.1 over TLS (both on h1.Server's
// loop), and HTTP/2 over TLS (net/http's server).
var frontPaths = []struct {
	name  string
	start func(*testing.T, *Balancer) *front
}{
	{"front=http1", startBalancer},
	{"front=tls-http1", func(t *testing.T, b *Balancer) *front { return startTLSBalancer(t, b, false) }},
	{"front=tls-h2", func(t *testing.T, b *Balancer) *front { return startTLSBalancer(t, b, true) }},
}

// TestBalancer_HTTPSBackendConnectionsAreReused: requests to an https
// backend go over TLS, and one quiet connection carries them one after
// another (its session tickets do not make it look unquiet).
func TestBalancer_HTTPSBackendConnectionsAreReused(t *testing.T) {
	var mu sync.Mutex
	peers := map[string]int{}
	be := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		peers[r.RemoteAddr]++
		mu.Unlock()
		io.WriteString(w, "over tls")
	}))
	t.Cleanup(be.Close)
	b := newBalancer(t, testConfig(t, be.URL), &logBuffer{})
	roots := x509.NewCertPool()
	roots.AddCert(be.Certificate())
	b.pool.Load().backends[0].client.TLS = &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
	f := startBalancer(t, b)
	for i := range 5 {
		resp, body := get(t, f.Client(), f.URL+"/x")
		if resp.StatusCode != 200 || body != "over tls" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(peers) != 1 {
		t.Fatalf("5 sequential requests came over %d backend connections, want 1: %v", len(peers), peers)
	}
}
