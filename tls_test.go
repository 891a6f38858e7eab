package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCert is a self-signed certificate for localhost and 127.0.0.1,
// made in the test, written as PEM to cert.pem and key.pem in its dir.
type testCert struct {
	serial            *big.Int
	certPEM, keyPEM   []byte
	certFile, keyFile string
	certificate       *x509.Certificate
}

func newTestCert(t *testing.T, dir string, serial int64) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: fmt.Sprintf("stdlb test %d", serial)},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true, // self-signed: the client trusts it as its own root
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c := &testCert{serial: tmpl.SerialNumber,
		certPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem")}
	c.certificate, _ = x509.ParseCertificate(der)
	return c
}

// write puts the certificate and key in their files, replacing what was
// there, as an operator renewing a certificate does.
func (c *testCert) write(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(c.certFile, c.certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.keyFile, c.keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
}

// tlsClient returns a client that trusts certs and speaks h2 (HTTP/2 by
// ALPN) or http/1.1 only.
func tlsClient(t *testing.T, proto string, certs ...*testCert) *http.Client {
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c.certificate)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	if proto == "h2" {
		tr.ForceAttemptHTTP2 = true
	} else {
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: failAfterApp}
}

// failAfterApp bounds a request in these tests: only a failing one waits
// that long.
const failAfterApp = 30 * time.Second

// startTLSApp serves backends (name, URL pairs) over TLS with cert, with
// tlsExtra appended to the tls object and extra to the config.
func startTLSApp(t *testing.T, cert *testCert, tlsExtra, extra string, backends ...string) *runningApp {
	t.Helper()
	path := filepath.Join(filepath.Dir(cert.certFile), "config.json")
	writeNamedConfig(t, path, `, "tls": {"cert_file": "cert.pem", "key_file": "key.pem"`+tlsExtra+`}`+extra, backends...)
	return startApp(t, path)
}

// echoProto is a backend that answers with the X-Forwarded-Proto it got.
func echoProto(t *testing.T, name string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		io.WriteString(w, "proto "+r.Header.Get("X-Forwarded-Proto"))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestTLS_ProxiesHTTP1AndHTTP2(t *testing.T) {
	cert := newTestCert(t, t.TempDir(), 1)
	cert.write(t)
	a := echoProto(t, "a")
	r := startTLSApp(t, cert, "", "", "a", a.URL)
	for _, tc := range []struct{ alpn, proto string }{{"h2", "HTTP/2.0"}, {"http/1.1", "HTTP/1.1"}} {
		resp, err := tlsClient(t, tc.alpn, cert).Get("https://" + r.Addr() + "/x")
		if err != nil {
			t.Fatalf("%s: %v", tc.alpn, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Proto != tc.proto || string(body) != "proto https" || resp.Header.Get("X-Backend") != "a" {
			t.Fatalf("%s: %d %s %q from %q; want 200 %s \"proto https\" from a", tc.alpn, resp.StatusCode, resp.Proto, body,
				resp.Header.Get("X-Backend"), tc.proto)
		}
	}
	r.app.access.Flush()
	for _, want := range []string{"path=/x proto=HTTP/2.0 tls=true", "path=/x proto=HTTP/1.1 tls=true"} {
		if !strings.Contains(r.access.String(), want) {
			t.Errorf("access log lacks %q:\n%s", want, r.access)
		}
	}
	// Plain HTTP on the TLS port is refused, not proxied.
	if resp, err := http.Get("http://" + r.Addr() + "/x"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), "proto") {
			t.Fatalf("plain HTTP on the TLS listener was proxied: %d %q", resp.StatusCode, body)
		}
	}
}

func TestTLS_MinVersion(t *testing.T) {
	cert := newTestCert(t, t.TempDir(), 1)
	cert.write(t)
	a := echoProto(t, "a")
	r := startTLSApp(t, cert, `, "min_version": "1.3"`, "", "a", a.URL)
	c := tlsClient(t, "h2", cert)
	c.Transport.(*http.Transport).TLSClientConfig.MaxVersion = tls.VersionTLS12
	if resp, err := c.Get("https://" + r.Addr() + "/"); err == nil {
		resp.Body.Close()
		t.Fatal("a TLS 1.2 client was served with min_version 1.3")
	}
	c = tlsClient(t, "h2", cert)
	resp, err := c.Get("https://" + r.Addr() + "/")
	if err != nil || resp.TLS.Version != tls.VersionTLS13 {
		t.Fatalf("TLS 1.3 client: %v", err)
	}
	resp.Body.Close()
}

func TestTLS_RateLimitAndFailoverOverHTTP2(t *testing.T) {
	cert := newTestCert(t, t.TempDir(), 1)
	cert.write(t)
	up := echoProto(t, "up")
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close() // refuses connections: every request there is retried on up
	r := startTLSApp(t, cert, "", `, "retries": 1, "rate_limit": {"enabled": true, "capacity": 4, "refill_rate": 0.001}`,
		"down", down.URL, "up", up.URL)
	c := tlsClient(t, "h2", cert)
	var statuses []int
	for range 5 {
		resp, err := c.Get("https://" + r.Addr() + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("answered over %s, want HTTP/2", resp.Proto)
		}
		if resp.StatusCode == 200 && resp.Header.Get("X-Backend") != "up" {
			t.Fatalf("200 from %q, want up", resp.Header.Get("X-Backend"))
		}
		if resp.StatusCode == 429 && resp.Header.Get("Retry-After") == "" {
			t.Fatal("429 without Retry-After")
		}
		statuses = append(statuses, resp.StatusCode)
	}
	if fmt.Sprint(statuses) != "[200 200 200 200 429]" {
		t.Fatalf("statuses %v: want the 4 the bucket holds answered (by up, after down refused) and the fifth refused", statuses)
	}
}

func TestTLS_ReloadSwapsTheCertificateForNewConnectionsOnly(t *testing.T) {
	dir := t.TempDir()
	first, second := newTestCert(t, dir, 1), newTestCert(t, dir, 2)
	first.write(t)
	a := echoProto(t, "a")
	t.Setenv("STDLB_TEST_ADMIN_TOKEN", "s3cret")
	r := startTLSApp(t, first, "", "", "a", a.URL)
	url := "https://" + r.Addr() + "/"
	served := func(c *http.Client) *big.Int {
		t.Helper()
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		return resp.TLS.PeerCertificates[0].SerialNumber
	}
	old := tlsClient(t, "h2", first, second)
	if s := served(old); s.Cmp(first.serial) != 0 {
		t.Fatalf("served certificate %v, want %v", s, first.serial)
	}

	second.write(t)
	code, out := adminDo(t, "POST", "http://"+r.AdminAddr()+"/reload", "s3cret", "")
	if code != 200 || !strings.Contains(fmt.Sprint(out["certificate"]), "cert.pem (localhost, 127.0.0.1") {
		t.Fatalf("POST /reload: %d %v", code, out)
	}
	if s := served(tlsClient(t, "h2", first, second)); s.Cmp(second.serial) != 0 {
		t.Fatalf("a new connection after the reload got certificate %v, want the new one, %v", s, second.serial)
	}
	// The connection opened before keeps working, with the certificate it
	// was made with: a new connection would have got the new one.
	if s := served(old); s.Cmp(first.serial) != 0 {
		t.Fatalf("the connection from before the reload: certificate %v, want %v on the same connection", s, first.serial)
	}

	// A bad certificate on reload: rejected, the one in use stays.
	os.WriteFile(first.keyFile, []byte("not a key"), 0o600)
	code, out = adminDo(t, "POST", "http://"+r.AdminAddr()+"/reload", "s3cret", "")
	if code != 422 || !strings.Contains(fmt.Sprint(out["problems"]), "tls.key_file: "+first.keyFile+" holds no PEM private key") {
		t.Fatalf("reload with a bad key: %d %v", code, out)
	}
	if s := served(tlsClient(t, "h2", first, second)); s.Cmp(second.serial) != 0 {
		t.Fatalf("after a rejected reload a new connection got certificate %v, want %v", s, second.serial)
	}
}

func TestTLS_BadFilesAreConfigErrors(t *testing.T) {
	dir := t.TempDir()
	cert, other := newTestCert(t, dir, 1), newTestCert(t, t.TempDir(), 2)
	path := filepath.Join(dir, "config.json")
	writeNamedConfig(t, path, `, "tls": {"cert_file": "cert.pem", "key_file": "key.pem"}`, "a", "http://127.0.0.1:9")
	check := func(want string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		code := run([]string{"-config", path, "-check-config"}, &stdout, &stderr)
		if want == "" {
			if code != 0 || !strings.Contains(stdout.String(), "certificate "+cert.certFile+" (localhost, 127.0.0.1; expires ") {
				t.Fatalf("good files: exit %d, %q %q", code, stdout.String(), stderr.String())
			}
			return
		}
		if code != 2 || !strings.Contains(stderr.String(), path+": "+want) {
			t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr.String(), want)
		}
	}
	check("tls.cert_file: " + cert.certFile + ": no such file or directory")
	cert.write(t)
	check("")
	os.WriteFile(cert.keyFile, other.keyPEM, 0o600)
	check("tls.key_file: " + cert.keyFile + " does not go with the certificate in " + cert.certFile)
	os.WriteFile(cert.certFile, cert.keyPEM, 0o600)
	check("tls.cert_file: " + cert.certFile + " holds no PEM certificate")

	writeNamedConfig(t, path, `, "tls": {"key_file": "key.pem", "min_version": "1.1", "redirect_http": ":80"}`, "a", "http://127.0.0.1:9")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-config", path, "-check-config"}, &stdout, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), "tls.cert_file: missing: key_file is set") ||
		!strings.Contains(stderr.String(), `tls.min_version: want "1.2" or "1.3", got "1.1"`) {
		t.Fatalf("exit %d, %q", code, stderr.String())
	}
}

func TestTLS_RedirectHTTPAnswers308ToHTTPS(t *testing.T) {
	cert := newTestCert(t, t.TempDir(), 1)
	cert.write(t)
	a := echoProto(t, "a")
	r := startTLSApp(t, cert, `, "redirect_http": "127.0.0.1:0"`, "", "a", a.URL)
	_, port, _ := net.SplitHostPort(r.Addr())
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct{ method, host, want string }{
		{"GET", "shop.example", "https://shop.example:" + port + "/a/b?q=1"},
		{"POST", "shop.example:80", "https://shop.example:" + port + "/a/b?q=1"},
		{"GET", "[::1]:80", "https://[::1]:" + port + "/a/b?q=1"},
	} {
		req, _ := http.NewRequest(tc.method, "http://"+r.redirectLn.Addr().String()+"/a/b?q=1", nil)
		req.Host = tc.host
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != tc.want {
			t.Errorf("%s Host %s: %d to %q, want 308 to %q", tc.method, tc.host, resp.StatusCode, resp.Header.Get("Location"), tc.want)
		}
	}
	if h := redirectToHTTPS("443"); h != nil {
		req := httptest.NewRequest("GET", "http://shop.example/x", nil)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if loc := w.Header().Get("Location"); loc != "https://shop.example/x" {
			t.Errorf("to port 443: Location %q, want no port", loc)
		}
	}
}

// TestCertificate_DescribeNamesWhatClientsCheck: the log line for a
// certificate lists its DNS and IP names, and says so when it has none
// (clients check those, not the common name), without touching the
// certificate's own lists.
func TestCertificate_DescribeNamesWhatClientsCheck(t *testing.T) {
	leaf := &x509.Certificate{
		DNSNames:    make([]string, 1, 4), // spare room an append could write into
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotAfter:    time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC),
	}
	leaf.DNSNames[0] = "example.com"
	c := &certificate{Certificate: tls.Certificate{Leaf: leaf}, certFile: "cert.pem"}
	if got, want := c.describe(), "cert.pem (example.com, 127.0.0.1; expires 2030-01-02)"; got != want {
		t.Errorf("describe() = %q, want %q", got, want)
	}
	if spare := leaf.DNSNames[:2]; spare[1] != "" {
		t.Errorf("describe wrote %q into the certificate's DNSNames", spare[1])
	}
	c.Leaf = &x509.Certificate{Subject: pkix.Name{CommonName: "example.com"}, NotAfter: leaf.NotAfter}
	if got := c.describe(); !strings.Contains(got, "no DNS or IP names") {
		t.Errorf("describe() = %q for a certificate with only a common name, want it to say it has no names", got)
	}
}
