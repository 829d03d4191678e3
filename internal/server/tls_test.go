package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tollgate/tollgate/internal/certs/certstest"
	"github.com/tollgate/tollgate/internal/server"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// serverSpec is the server certificate every TLS test serves: the name
// clients verify, on loopback.
var serverSpec = certstest.Spec{CommonName: "tollgate", SANs: []string{"tollgate.test", "127.0.0.1"}}

// tlsClient dials addr's gRPC over TLS, trusting roots and presenting
// client (nil: none), and returns an Authorization client.
func tlsClient(tb testing.TB, addr string, roots *x509.CertPool, client *tls.Certificate) authv3.AuthorizationClient {
	tb.Helper()
	cfg := &tls.Config{RootCAs: roots, ServerName: "tollgate.test"}
	if client != nil {
		cfg.Certificates = []tls.Certificate{*client}
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

func check(c authv3.AuthorizationClient, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Check(ctx, req)
}

func httpsGet(tb testing.TB, roots *x509.CertPool, client *tls.Certificate, url string) (*http.Response, string, error) {
	tb.Helper()
	cfg := &tls.Config{RootCAs: roots, ServerName: "tollgate.test"}
	if client != nil {
		cfg.Certificates = []tls.Certificate{*client}
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	resp, err := c.Get(url)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

func TestTLSOnEveryListener(t *testing.T) {
	f := MustSeed(t, store.SQLite)
	ca := certstest.NewCA(t, "tollgate test CA")
	leaf := ca.Issue(t, serverSpec)
	files := certstest.WriteFiles(t, t.TempDir(), leaf, ca.PEM)
	s := MustStartServer(t, f.URL, func(c *server.Config) {
		c.Listen.AuthzHTTP = "127.0.0.1:0"
		c.TLS.CertFile, c.TLS.KeyFile = files.Cert, files.Key
	})
	req := envoyRequest{Path: "/v1/prices/AAPL", Headers: hdr("x-api-key", f.V("basic"))}

	resp, err := check(tlsClient(t, s.GRPCAddr().String(), ca.Pool(), nil), req.proto())
	if err != nil {
		t.Fatalf("Check over TLS: %v", err)
	}
	expectAllow(t, req, resp, f.Token(t, "basic"), 1, true)

	if _, err := check(s.Auth, req.proto()); err == nil {
		t.Fatal("plaintext Check on a TLS listener: got an answer, want an error")
	}
	if _, err := check(tlsClient(t, s.GRPCAddr().String(), certstest.NewCA(t, "other").Pool(), nil), req.proto()); err == nil {
		t.Fatal("Check from a client that does not trust the certificate: got an answer")
	}

	for name, url := range map[string]string{
		"http":       "https://" + s.HTTPAddr().String() + "/healthz",
		"metrics":    "https://" + s.MetricsAddr().String() + "/metrics",
		"authz-http": "https://" + s.AuthzHTTPAddr().String() + "/nginx",
	} {
		t.Run(name, func(t *testing.T) {
			resp, _, err := httpsGet(t, ca.Pool(), nil, url)
			if err != nil {
				t.Fatalf("GET %s: %v", url, err)
			}
			if got := resp.TLS.PeerCertificates[0].SerialNumber; got.Cmp(leaf.Serial) != 0 {
				t.Fatalf("served serial %v, want %v", got, leaf.Serial)
			}
			plain := &http.Client{Timeout: 5 * time.Second}
			if r, err := plain.Get(strings.Replace(url, "https://", "http://", 1)); err == nil && r.StatusCode < 400 {
				t.Fatalf("plain HTTP on a TLS listener: got %d, want a failure", r.StatusCode)
			}
		})
	}
	_, body, err := httpsGet(t, ca.Pool(), nil, "https://"+s.MetricsAddr().String()+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("tollgate_tls_cert_not_after_seconds %g", float64(leaf.TLS.Leaf.NotAfter.Unix()))
	if !strings.Contains(body, want) {
		t.Fatalf("metrics lack %q", want)
	}
}

func TestTLSStartFailsClosed(t *testing.T) {
	ca := certstest.NewCA(t, "ca")
	dir := t.TempDir()
	files := certstest.WriteFiles(t, dir, ca.Issue(t, serverSpec), ca.PEM)
	other := certstest.WriteFiles(t, t.TempDir(), ca.Issue(t, serverSpec), ca.PEM)
	for name, tc := range map[string]server.TLSConfig{
		"unreadable cert":     {CertFile: filepath.Join(dir, "nope.crt"), KeyFile: files.Key},
		"key of another cert": {CertFile: files.Cert, KeyFile: other.Key},
		"unreadable CA":       {CertFile: files.Cert, KeyFile: files.Key, ClientCAFile: filepath.Join(dir, "nope.pem")},
		"cert without key":    {CertFile: files.Cert},
		"CA without cert":     {ClientCAFile: files.CA},
		"SANs without CA":     {CertFile: files.Cert, KeyFile: files.Key, ClientSANs: []string{"envoy"}},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := server.DefaultConfig()
			cfg.Listen.GRPC, cfg.Listen.HTTP, cfg.Listen.Metrics = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
			cfg.Store.URL = storetest.URL(t, store.SQLite)
			tc.ReloadInterval = time.Second
			cfg.TLS = tc
			s, err := server.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
			if err == nil {
				t.Fatalf("server.New: got a server (%v), want an error", s.GRPCAddr())
			}
		})
	}
}

func TestMTLS(t *testing.T) {
	f := MustSeed(t, store.SQLite)
	ca := certstest.NewCA(t, "tollgate test CA")
	clientCA := certstest.NewCA(t, "envoy client CA")
	otherCA := certstest.NewCA(t, "someone else's CA")
	files := certstest.WriteFiles(t, t.TempDir(), ca.Issue(t, serverSpec), clientCA.PEM)
	const envoyID = "spiffe://cluster.local/ns/edge/sa/envoy"
	s := MustStartServer(t, f.URL, func(c *server.Config) {
		c.Listen.AuthzHTTP = "127.0.0.1:0"
		c.TLS = server.TLSConfig{CertFile: files.Cert, KeyFile: files.Key, ClientCAFile: files.CA,
			ClientSANs: []string{envoyID}, ReloadInterval: time.Second}
	})
	req := envoyRequest{Path: "/v1/prices/AAPL", Headers: hdr("x-api-key", f.V("basic"))}
	envoy := clientCA.Issue(t, certstest.Spec{Client: true, SANs: []string{envoyID}})
	for name, tc := range map[string]struct {
		client *tls.Certificate
		ok     bool
	}{
		"allowed SAN":                  {&envoy.TLS, true},
		"no client certificate":        {nil, false},
		"another CA, same SAN":         {&otherCA.Issue(t, certstest.Spec{Client: true, SANs: []string{envoyID}}).TLS, false},
		"the server's CA, same SAN":    {&ca.Issue(t, certstest.Spec{Client: true, SANs: []string{envoyID}}).TLS, false},
		"SAN not in the allow-list":    {&clientCA.Issue(t, certstest.Spec{Client: true, SANs: []string{"spiffe://cluster.local/ns/dev/sa/app"}}).TLS, false},
		"allowed SAN as the CN only":   {&clientCA.Issue(t, certstest.Spec{Client: true, CommonName: envoyID}).TLS, false},
		"allowed SAN, server cert EKU": {&clientCA.Issue(t, certstest.Spec{SANs: []string{envoyID}}).TLS, false},
	} {
		t.Run(name, func(t *testing.T) {
			resp, err := check(tlsClient(t, s.GRPCAddr().String(), ca.Pool(), tc.client), req.proto())
			if !tc.ok {
				if err == nil {
					t.Fatalf("Check: got %s, want the handshake refused", describe(resp))
				}
				if _, _, err := httpsGet(t, ca.Pool(), tc.client, "https://"+s.AuthzHTTPAddr().String()+"/nginx"); err == nil {
					t.Fatal("HTTP authorization: got an answer, want the handshake refused")
				}
				return
			}
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			expectAllow(t, req, resp, f.Token(t, "basic"), 1, true)
			if _, _, err := httpsGet(t, ca.Pool(), tc.client, "https://"+s.AuthzHTTPAddr().String()+"/nginx"); err != nil {
				t.Fatalf("HTTP authorization: %v", err)
			}
		})
	}
	// The Tokens API and metrics ask for no client certificate: people
	// and scrapers reach them.
	for _, url := range []string{"https://" + s.HTTPAddr().String() + "/healthz", "https://" + s.MetricsAddr().String() + "/metrics"} {
		if _, _, err := httpsGet(t, ca.Pool(), nil, url); err != nil {
			t.Fatalf("GET %s without a client certificate: %v", url, err)
		}
	}
}

// TestTLSRotation rotates the files under Checks sent without pause: new
// connections get the new certificate, and no Check fails, neither on
// connections opened before nor after. A bad pair keeps the good one
// serving and shows in the metrics.
func TestTLSRotation(t *testing.T) {
	f := MustSeed(t, store.SQLite)
	ca := certstest.NewCA(t, "tollgate test CA")
	clientCA := certstest.NewCA(t, "envoy client CA")
	dir := t.TempDir()
	first := ca.Issue(t, serverSpec)
	files := certstest.WriteFiles(t, dir, first, clientCA.PEM)
	s := MustStartServer(t, f.URL, func(c *server.Config) {
		c.TLS = server.TLSConfig{CertFile: files.Cert, KeyFile: files.Key, ClientCAFile: files.CA, ReloadInterval: 20 * time.Millisecond}
	})
	envoy := clientCA.Issue(t, certstest.Spec{Client: true, SANs: []string{"envoy"}})
	req := envoyRequest{Path: "/v1/prices/AAPL", Headers: hdr("x-api-key", f.V("basic"))}.proto()

	served := func() *big.Int {
		t.Helper()
		c, err := tls.Dial("tcp", s.GRPCAddr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "tollgate.test",
			Certificates: []tls.Certificate{envoy.TLS}, NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber
	}
	if got := served(); got.Cmp(first.Serial) != 0 {
		t.Fatalf("served serial %v, want %v", got, first.Serial)
	}

	var checks, failures atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var once sync.Once
	halt := func() { once.Do(func() { close(stop) }); wg.Wait() }
	t.Cleanup(halt)
	clientTLS := credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), ServerName: "tollgate.test", Certificates: []tls.Certificate{envoy.TLS}})
	for i := range 4 {
		wg.Go(func() {
			// Half the workers keep one connection across the rotation,
			// half open a new one for every few Checks.
			var conn *grpc.ClientConn
			defer func() { conn.Close() }()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if conn == nil || i%2 == 1 && n%5 == 0 {
					if conn != nil {
						conn.Close()
					}
					var err error
					if conn, err = grpc.NewClient(s.GRPCAddr().String(), grpc.WithTransportCredentials(clientTLS)); err != nil {
						panic(err)
					}
				}
				resp, err := check(authv3.NewAuthorizationClient(conn), req)
				checks.Add(1)
				if err == nil && resp.GetOkResponse() == nil {
					err = errors.New("not allowed: " + describe(resp))
				}
				if err != nil {
					failures.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
				}
			}
		})
	}
	waitChecks := func(n int64) {
		t.Helper()
		target := checks.Load() + n
		for deadline := time.Now().Add(10 * time.Second); checks.Load() < target; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("only %d checks in 10s", checks.Load())
			}
		}
	}
	waitServed := func(want *big.Int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); served().Cmp(want) != 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("served serial %v 10s after rotation, want %v", served(), want)
			}
		}
	}
	waitChecks(50)

	// A bad pair: the new certificate with the old key.
	bad := ca.Issue(t, serverSpec)
	certstest.WriteFiles(t, dir, &certstest.Leaf{CertPEM: bad.CertPEM, KeyPEM: first.KeyPEM}, clientCA.PEM)
	metricsURL := "https://" + s.MetricsAddr().String() + "/metrics"
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, body, err := httpsGet(t, ca.Pool(), nil, metricsURL)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(body, "\ntollgate_tls_reload_errors_total 1\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the refused pair was not counted in tollgate_tls_reload_errors_total within 10s")
		}
	}
	waitChecks(50)
	if got := served(); got.Cmp(first.Serial) != 0 {
		t.Fatalf("after a bad pair, served serial %v, want the old %v", got, first.Serial)
	}

	second := ca.Issue(t, serverSpec)
	certstest.WriteFiles(t, dir, second, clientCA.PEM)
	waitServed(second.Serial)
	waitChecks(50)
	third := ca.Issue(t, serverSpec)
	certstest.WriteFiles(t, dir, third, clientCA.PEM)
	waitServed(third.Serial)
	waitChecks(50)
	halt()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d of %d Checks failed across the rotations; the first: %v", n, checks.Load(), firstFailure.Load())
	}
	t.Logf("%d Checks across two rotations and a refused pair, none failed", checks.Load())
}
