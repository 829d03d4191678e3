package certs_test

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/certs"
	"github.com/tollgate/tollgate/internal/certs/certstest"
)

// BenchmarkHandshake is one full TLS handshake (ECDSA P-256, TLS 1.3) with
// the reloading configuration, with and without a client certificate: the
// price of a new connection to the shared service, paid once per
// connection, not per Check.
func BenchmarkHandshake(b *testing.B) {
	ca := certstest.NewCA(b, "ca")
	files := certstest.WriteFiles(b, b.TempDir(), ca.Issue(b, certstest.Spec{SANs: []string{"tollgate.test"}}), ca.PEM)
	r, err := certs.New(certs.Files{Cert: files.Cert, Key: files.Key, ClientCA: files.CA}, time.Hour, discard())
	if err != nil {
		b.Fatal(err)
	}
	client := ca.Issue(b, certstest.Spec{Client: true, SANs: []string{"envoy"}})
	for name, opt := range map[string]certs.Options{
		"tls":  {},
		"mtls": {RequireClientCert: true, ClientSANs: []string{"envoy"}},
	} {
		b.Run(name, func(b *testing.B) {
			cfg, err := r.ServerConfig(opt)
			if err != nil {
				b.Fatal(err)
			}
			ccfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "tollgate.test", Certificates: []tls.Certificate{client.TLS}}
			b.ReportAllocs()
			for b.Loop() {
				c, s := net.Pipe()
				done := make(chan error, 1)
				go func() { done <- tls.Server(s, cfg).Handshake() }()
				if err := tls.Client(c, ccfg).Handshake(); err != nil {
					b.Fatal(err)
				}
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				c.Close()
				s.Close()
			}
		})
	}
}
