package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The TLS rows: the balancer and nginx, each terminating TLS with the same
// certificate, HTTP/1.1 over keep-alive connections (the load generator
// offers no ALPN, so neither speaks HTTP/2). Their ratio, stdlb +tls over
// nginx +tls, is added to the table's notes: its "vs nginx" column compares
// with plain nginx.
const (
	stdlbTLSName = "stdlb +tls"
	nginxTLSName = "nginx +tls"
)

// tlsStdlbConfig is stdlbConfig with a tls section.
type tlsStdlbConfig struct {
	lbConfig
	TLS struct {
		CertFile string `json:"cert_file"`
		KeyFile  string `json:"key_file"`
	} `json:"tls"`
}

// startTLSTargets starts the balancer and nginx with TLS on ports[0] and
// ports[2] (ports[1]: the balancer's admin API), in front of backends.
func startTLSTargets(ctx context.Context, ps *procs, dir, stdlbBin, nginxBin string, ports, backends []int) ([]*target, error) {
	certFile, keyFile, err := writeSelfSigned(dir)
	if err != nil {
		return nil, err
	}
	var targets []*target
	add := func(name string, p *proc, port int) error {
		url := fmt.Sprintf("https://127.0.0.1:%d/", port)
		if err := waitReady(ctx, p, url, 15*time.Second); err != nil {
			return err
		}
		targets = append(targets, &target{name: name, url: url, proc: p})
		return nil
	}

	cfg := tlsStdlbConfig{lbConfig: stdlbConfig(dir, "stdlb-tls", ports[0], ports[1], backends, false)}
	cfg.TLS.CertFile, cfg.TLS.KeyFile = certFile, keyFile
	cfgPath := filepath.Join(dir, "stdlb-tls.json")
	if err := writeJSONFile(cfgPath, cfg); err != nil {
		return nil, err
	}
	p, err := ps.start(dir, "stdlb-tls", stdlbBin, "-config", cfgPath)
	if err != nil {
		return nil, err
	}
	if err := add(stdlbTLSName, p, ports[0]); err != nil {
		return nil, err
	}

	// nginx's own directory: its pid file, logs and temp paths stay apart
	// from the plain-HTTP nginx's.
	ndir := filepath.Join(dir, "nginx-tls")
	if err := os.MkdirAll(filepath.Join(ndir, "nginx-tmp"), 0o755); err != nil {
		return nil, fmt.Errorf("nginx tls dir: %w", err)
	}
	conf, err := nginxTLSConfig(ndir, ports[2], backends, certFile, keyFile)
	if err != nil {
		return nil, err
	}
	confPath := filepath.Join(ndir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("nginx tls config: %w", err)
	}
	p, err = ps.start(ndir, "nginx-tls", nginxBin, "-p", ndir, "-c", confPath, "-e", filepath.Join(ndir, "nginx-error.log"))
	if err != nil {
		return nil, err
	}
	if err := add(nginxTLSName, p, ports[2]); err != nil {
		return nil, err
	}
	return targets, nil
}

// nginxTLSConfig is nginxConfig with TLS on its listener.
func nginxTLSConfig(dir string, port int, backends []int, certFile, keyFile string) (string, error) {
	plain := fmt.Sprintf("listen 127.0.0.1:%d;", port)
	conf := nginxConfig(dir, port, backends)
	if !strings.Contains(conf, plain) {
		return "", fmt.Errorf("nginx tls: the generated config has no %q to put TLS on", plain)
	}
	return strings.Replace(conf, plain, fmt.Sprintf("listen 127.0.0.1:%d ssl;\n        ssl_certificate %s;\n        ssl_certificate_key %s;",
		port, certFile, keyFile), 1), nil
}

// tlsNote returns the note comparing the TLS rows, or "" without them.
func tlsNote(targets []*target) string {
	var s, n *target
	for _, t := range targets {
		switch t.name {
		case stdlbTLSName:
			s = t
		case nginxTLSName:
			n = t
		}
	}
	if s == nil || n == nil {
		return ""
	}
	return fmt.Sprintf("TLS (same certificate, HTTP/1.1, keep-alive): %s over %s = %s (median of per-round throughput ratios)",
		stdlbTLSName, nginxTLSName, fmtRatio(s.ratioTo(n)))
}

// writeSelfSigned writes a self-signed ECDSA P-256 certificate for
// 127.0.0.1 and its key to dir, and returns their paths.
func writeSelfSigned(dir string) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("tls key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "stdlb bench"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", fmt.Errorf("tls certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", fmt.Errorf("tls key: %w", err)
	}
	certFile, keyFile = filepath.Join(dir, "tls-cert.pem"), filepath.Join(dir, "tls-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", fmt.Errorf("tls certificate: %w", err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", fmt.Errorf("tls key: %w", err)
	}
	return certFile, keyFile, nil
}
