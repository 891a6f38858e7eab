package main

import (
	"crypto/tls"
	"strings"
	"testing"
)

func TestTLSRows_CertificateAndNginxConfig(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, err := writeSelfSigned(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		t.Fatalf("the certificate and key do not load as a pair: %v", err)
	}
	conf, err := nginxTLSConfig(dir, 4443, []int{1, 2}, certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	want := "listen 127.0.0.1:4443 ssl;\n        ssl_certificate " + certFile + ";\n        ssl_certificate_key " + keyFile + ";"
	if !strings.Contains(conf, want) || strings.Contains(conf, "listen 127.0.0.1:4443;") {
		t.Fatalf("nginx TLS config lacks %q or keeps a plain listener:\n%s", want, conf)
	}
}

func TestTLSNote_RatioOfTheTLSRows(t *testing.T) {
	s := &target{name: stdlbTLSName, rounds: []figures{{rps: 900}, {rps: 1000}, {rps: 1100}}}
	n := &target{name: nginxTLSName, rounds: []figures{{rps: 1000}, {rps: 1000}, {rps: 1000}}}
	if got := tlsNote([]*target{n, s}); !strings.Contains(got, "stdlb +tls over nginx +tls = 1.000") {
		t.Fatalf("note %q", got)
	}
	if got := tlsNote([]*target{s}); got != "" {
		t.Fatalf("note without nginx +tls: %q", got)
	}
}
