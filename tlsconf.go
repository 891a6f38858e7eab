package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"stdlb/lb"
)

// TLSConfig is "tls". With cert_file and key_file set, "listen" serves
// HTTPS, offering HTTP/2 and HTTP/1.1 by ALPN; reloads re-read both files.
type TLSConfig struct {
	CertFile string `json:"cert_file,omitempty"` // PEM, leaf first, then intermediates
	KeyFile  string `json:"key_file,omitempty"`  // PEM
	// MinVersion is the oldest TLS version accepted: "1.2" (default) or
	// "1.3".
	MinVersion string `json:"min_version,omitempty"`
	// RedirectHTTP, when set, is an address (":80") on which every request
	// is answered with a 308 to the same URL over https.
	RedirectHTTP string `json:"redirect_http,omitempty"`
}

// Enabled reports whether the listener serves TLS.
func (t TLSConfig) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// version returns MinVersion as a crypto/tls constant.
func (t TLSConfig) version() uint16 {
	if t.MinVersion == "1.3" {
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

// check reports the problems of "tls" that need no file read.
func (t TLSConfig) check(add func(string, string, ...any)) {
	switch {
	case t.CertFile == "" && t.KeyFile != "":
		add("tls.cert_file", "missing: key_file is set, and TLS needs both")
	case t.CertFile != "" && t.KeyFile == "":
		add("tls.key_file", "missing: cert_file is set, and TLS needs both")
	}
	if t.MinVersion != "1.2" && t.MinVersion != "1.3" {
		add("tls.min_version", `want "1.2" or "1.3", got %q`, t.MinVersion)
	}
	if t.RedirectHTTP != "" {
		if !t.Enabled() {
			add("tls.redirect_http", "redirects to https, which needs cert_file and key_file")
		}
		checkListen(add, "tls.redirect_http", t.RedirectHTTP, false)
	}
}

// certificate is a loaded key pair and where it came from.
type certificate struct {
	tls.Certificate
	certFile string
}

// describe names the certificate for the log: subject, names and expiry.
func (c *certificate) describe() string {
	leaf := c.Leaf
	names := make([]string, 0, len(leaf.DNSNames)+len(leaf.IPAddresses))
	names = append(names, leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	list := strings.Join(names, ", ")
	if list == "" {
		// Clients check the subject alternative names, not the common name.
		list = "no DNS or IP names: clients that verify it will refuse it"
	}
	return fmt.Sprintf("%s (%s; expires %s)", c.certFile, list, leaf.NotAfter.UTC().Format(time.DateOnly))
}

// loadCertificate reads the key pair t names, relative paths against the
// configuration file's directory. Each problem names the field it concerns.
func loadCertificate(t TLSConfig, configPath string) (*certificate, []string) {
	var ps []string
	resolve := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(filepath.Dir(configPath), p)
	}
	certFile, keyFile := resolve(t.CertFile), resolve(t.KeyFile)
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		ps = append(ps, "tls.cert_file: "+fileError(err))
	} else if !hasPEM(certPEM, "CERTIFICATE") {
		ps = append(ps, fmt.Sprintf("tls.cert_file: %s holds no PEM certificate (want -----BEGIN CERTIFICATE-----)", certFile))
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		ps = append(ps, "tls.key_file: "+fileError(err))
	} else if !hasPEM(keyPEM, "PRIVATE KEY") {
		ps = append(ps, fmt.Sprintf("tls.key_file: %s holds no PEM private key (want -----BEGIN ... PRIVATE KEY-----)", keyFile))
	}
	if len(ps) > 0 {
		return nil, ps
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "tls: ")
		if strings.Contains(msg, "public key") {
			return nil, []string{fmt.Sprintf("tls.key_file: %s does not go with the certificate in %s: %s", keyFile, certFile, msg)}
		}
		if strings.Contains(msg, "certificate") {
			return nil, []string{fmt.Sprintf("tls.cert_file: %s: %s", certFile, msg)}
		}
		return nil, []string{fmt.Sprintf("tls.key_file: %s: %s", keyFile, msg)}
	}
	if pair.Leaf == nil { // X509KeyPair fills it since Go 1.23; keep describe safe
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, []string{fmt.Sprintf("tls.cert_file: %s: %v", certFile, err)}
		}
	}
	return &certificate{Certificate: pair, certFile: certFile}, nil
}

// hasPEM reports whether data holds a PEM block whose type ends in kind.
func hasPEM(data []byte, kind string) bool {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return false
		}
		if strings.HasSuffix(b.Type, kind) {
			return true
		}
	}
}

// fileError says what went wrong opening a file without Go's "open" prefix
// doubling the path.
func fileError(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Path + ": " + pe.Err.Error()
	}
	return err.Error()
}

// certStore holds the certificate the listener presents. A reload swaps it;
// a handshake reads it once, so connections already open keep theirs.
type certStore struct{ cur atomic.Pointer[certificate] }

func (s *certStore) set(c *certificate) { s.cur.Store(c) }

// getCertificate is tls.Config.GetCertificate.
func (s *certStore) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return &s.cur.Load().Certificate, nil
}

// serverTLS returns the listener's tls.Config: certificates from s, HTTP/2
// preferred over HTTP/1.1 by ALPN.
func serverTLS(t TLSConfig, s *certStore) *tls.Config {
	return &tls.Config{
		MinVersion:     t.version(),
		GetCertificate: s.getCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}
}

// newRedirectServer answers every request with a 308 to the same host,
// path and query over https on the port of tlsAddr (the TLS listener), as
// nginx's `return 308 https://$host$request_uri` does. A 308, unlike a
// 301, keeps the method and body of a POST.
func newRedirectServer(tlsAddr net.Addr, cfg *Config, logger *slog.Logger) *http.Server {
	_, port, _ := net.SplitHostPort(tlsAddr.String())
	return &http.Server{
		Handler:           redirectToHTTPS(port),
		ReadHeaderTimeout: cfg.Timeouts.ReadHeader.D(),
		ReadTimeout:       cfg.Timeouts.ReadHeader.D(), // nothing is read past the head
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       cfg.Timeouts.Idle.D(),
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

func redirectToHTTPS(port string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if host == "" {
			lb.WriteError(w, http.StatusBadRequest, "this address redirects to https, which needs a Host header")
			return
		}
		if port != "443" {
			host = net.JoinHostPort(host, port)
		} else if strings.Contains(host, ":") {
			host = "[" + host + "]" // an IPv6 literal
		}
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
	})
}
