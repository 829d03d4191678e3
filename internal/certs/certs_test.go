package certs_test

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/certs"
	"github.com/tollgate/tollgate/internal/certs/certstest"
)

// serve accepts TLS connections with cfg and completes each handshake,
// for clients to see what is served and whether they are admitted.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := tls.Server(c, cfg)
				if tc.Handshake() == nil {
					tc.Write([]byte("ok"))
				}
			}()
		}
	}()
	return lis.Addr().String()
}

// dial completes a handshake and a read, returning the server's leaf.
func dial(addr string, roots *x509.CertPool, client *tls.Certificate) (*x509.Certificate, error) {
	cfg := &tls.Config{RootCAs: roots, ServerName: "tollgate.test"}
	if client != nil {
		cfg.Certificates = []tls.Certificate{*client}
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	// With TLS 1.3 the client learns of a refused client certificate only
	// when it reads.
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil {
		return nil, err
	}
	return c.ConnectionState().PeerCertificates[0], nil
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestNewFailsClosed(t *testing.T) {
	ca := certstest.NewCA(t, "ca")
	dir := t.TempDir()
	good := certstest.WriteFiles(t, dir, ca.Issue(t, certstest.Spec{SANs: []string{"tollgate.test"}}), ca.PEM)
	other := ca.Issue(t, certstest.Spec{SANs: []string{"tollgate.test"}})
	mismatched := filepath.Join(dir, "other.key")
	os.WriteFile(mismatched, other.KeyPEM, 0o600)
	expired := certstest.WriteFiles(t, t.TempDir(), ca.Issue(t, certstest.Spec{NotAfter: time.Now().Add(-time.Minute)}), ca.PEM)
	garbageCA := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbageCA, []byte("not a certificate"), 0o600)
	for name, files := range map[string]certs.Files{
		"missing cert":      {Cert: filepath.Join(dir, "nope.crt"), Key: good.Key},
		"missing key":       {Cert: good.Cert, Key: filepath.Join(dir, "nope.key")},
		"key of another":    {Cert: good.Cert, Key: mismatched},
		"expired":           {Cert: expired.Cert, Key: expired.Key},
		"CA bundle garbage": {Cert: good.Cert, Key: good.Key, ClientCA: garbageCA},
		"CA bundle missing": {Cert: good.Cert, Key: good.Key, ClientCA: filepath.Join(dir, "nope.pem")},
		"no key named":      {Cert: good.Cert},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := certs.New(files, 0, discard()); err == nil {
				t.Fatal("got a reloader, want an error")
			}
		})
	}
	if _, err := certs.New(certs.Files{Cert: good.Cert, Key: good.Key, ClientCA: good.CA}, 0, discard()); err != nil {
		t.Fatalf("good files: %v", err)
	}
}

func TestReloadSwitchesAndKeepsOldOnBadPair(t *testing.T) {
	ca := certstest.NewCA(t, "ca")
	dir := t.TempDir()
	first := ca.Issue(t, certstest.Spec{SANs: []string{"tollgate.test"}})
	files := certstest.WriteFiles(t, dir, first, ca.PEM)
	r, err := certs.New(certs.Files{Cert: files.Cert, Key: files.Key}, time.Hour, discard())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := r.ServerConfig(certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, cfg)
	servedSerial := func() *big.Int {
		t.Helper()
		leaf, err := dial(addr, ca.Pool(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return leaf.SerialNumber
	}
	if got := servedSerial(); got.Cmp(first.Serial) != 0 {
		t.Fatalf("served serial %v, want %v", got, first.Serial)
	}

	// A new certificate with the old key: the pair does not match.
	second := ca.Issue(t, certstest.Spec{SANs: []string{"tollgate.test"}})
	os.WriteFile(files.Cert, second.CertPEM, 0o600)
	if err := r.Reload(); err == nil {
		t.Fatal("reload of a mismatched pair: got nil error")
	}
	if err := r.Reload(); err == nil {
		t.Fatal("second reload of the same mismatched pair: got nil error")
	}
	if got := r.Errors(); got != 1 {
		t.Fatalf("errors after the same bad pair twice: got %d, want 1", got)
	}
	if got := servedSerial(); got.Cmp(first.Serial) != 0 {
		t.Fatalf("after a bad pair, served serial %v, want the old %v", got, first.Serial)
	}

	// The key follows: the pair is good again and is served.
	os.WriteFile(files.Key, second.KeyPEM, 0o600)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(); got.Cmp(second.Serial) != 0 {
		t.Fatalf("after rotation, served serial %v, want %v", got, second.Serial)
	}
	if !r.NotAfter().Equal(second.TLS.Leaf.NotAfter) {
		t.Fatalf("NotAfter %v, want %v", r.NotAfter(), second.TLS.Leaf.NotAfter)
	}
}

func TestRunPicksUpRotation(t *testing.T) {
	ca := certstest.NewCA(t, "ca")
	dir := t.TempDir()
	files := certstest.WriteFiles(t, dir, ca.Issue(t, certstest.Spec{SANs: []string{"tollgate.test"}}), ca.PEM)
	r, err := certs.New(certs.Files{Cert: files.Cert, Key: files.Key}, 20*time.Millisecond, discard())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	go r.Run(ctx)
	next := ca.Issue(t, certstest.Spec{SANs: []string{"tollgate.test"}, NotAfter: time.Now().Add(48 * time.Hour).Truncate(time.Second)})
	certstest.WriteFiles(t, dir, next, ca.PEM)
	deadline := time.Now().Add(5 * time.Second)
	for !r.NotAfter().Equal(next.TLS.Leaf.NotAfter) {
		if time.Now().After(deadline) {
			t.Fatalf("NotAfter %v, want %v after rotation", r.NotAfter(), next.TLS.Leaf.NotAfter)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestClientCertificates(t *testing.T) {
	ca := certstest.NewCA(t, "ca")
	otherCA := certstest.NewCA(t, "other")
	dir := t.TempDir()
	files := certstest.WriteFiles(t, dir, ca.Issue(t, certstest.Spec{SANs: []string{"tollgate.test"}}), ca.PEM)
	r, err := certs.New(certs.Files{Cert: files.Cert, Key: files.Key, ClientCA: files.CA}, time.Hour, discard())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := r.ServerConfig(certs.Options{RequireClientCert: true, ClientSANs: []string{"spiffe://cluster.local/ns/edge/sa/envoy", "envoy.edge"}})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, cfg)
	envoy := ca.Issue(t, certstest.Spec{Client: true, SANs: []string{"spiffe://cluster.local/ns/edge/sa/envoy"}})
	envoyDNS := ca.Issue(t, certstest.Spec{Client: true, SANs: []string{"envoy.edge"}})
	stranger := ca.Issue(t, certstest.Spec{Client: true, SANs: []string{"spiffe://cluster.local/ns/other/sa/app"}})
	foreign := otherCA.Issue(t, certstest.Spec{Client: true, SANs: []string{"spiffe://cluster.local/ns/edge/sa/envoy"}})
	for name, tc := range map[string]struct {
		client *tls.Certificate
		ok     bool
	}{
		"no client certificate": {nil, false},
		"allowed URI SAN":       {&envoy.TLS, true},
		"allowed DNS SAN":       {&envoyDNS.TLS, true},
		"SAN not allowed":       {&stranger.TLS, false},
		"another CA, right SAN": {&foreign.TLS, false},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := dial(addr, ca.Pool(), tc.client)
			if got := err == nil; got != tc.ok {
				t.Fatalf("admitted %v (err %v), want %v", got, err, tc.ok)
			}
		})
	}

	// A new CA bundle is loaded like a certificate: clients of the new CA
	// get in, those of the old one no longer do.
	certstest.WriteFiles(t, dir, &certstest.Leaf{CertPEM: mustRead(t, files.Cert), KeyPEM: mustRead(t, files.Key)}, otherCA.PEM)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := dial(addr, ca.Pool(), &foreign.TLS); err != nil {
		t.Fatalf("client of the new CA after reload: %v", err)
	}
	if _, err := dial(addr, ca.Pool(), &envoy.TLS); err == nil {
		t.Fatal("client of the old CA after reload: admitted")
	}
}

func TestServerConfigRefusesInconsistentOptions(t *testing.T) {
	ca := certstest.NewCA(t, "ca")
	files := certstest.WriteFiles(t, t.TempDir(), ca.Issue(t, certstest.Spec{SANs: []string{"tollgate.test"}}), ca.PEM)
	r, err := certs.New(certs.Files{Cert: files.Cert, Key: files.Key}, time.Hour, discard())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ServerConfig(certs.Options{RequireClientCert: true}); err == nil {
		t.Fatal("client certificates required without a CA bundle: got nil error")
	}
	if _, err := r.ServerConfig(certs.Options{ClientSANs: []string{"x"}}); err == nil {
		t.Fatal("SANs without client certificates: got nil error")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
