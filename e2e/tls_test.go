package e2e_test

import (
	"crypto/tls"
	"math/big"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tollgate/tollgate/internal/certs/certstest"
)

func dialTLS(addr string, t *serveTLS) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(t.config())))
}

// TestServeTLS runs "tollgate serve" with the TLS flags and real
// certificates made here: a Check over mTLS is allowed; without a client
// certificate, with one of another CA, or naming a SAN off the list, the
// handshake is refused; rotating the files switches the certificate served
// to new connections while Checks run without pause on one kept connection
// and on fresh ones, and not one fails.
func TestServeTLS(t *testing.T) {
	t.Parallel()
	db, dbURL := MustOpenDB(t)
	acc := MustCreateAccount(t, db, "TLS Co", false)
	_, token := MustCreateToken(t, db, acc.ID, nil)

	ca, clientCA, otherCA := certstest.NewCA(t, "server CA"), certstest.NewCA(t, "envoy CA"), certstest.NewCA(t, "other CA")
	serverSpec := certstest.Spec{CommonName: "tollgate", SANs: []string{"127.0.0.1"}}
	const envoyID = "spiffe://cluster.local/ns/edge/sa/envoy"
	dir := t.TempDir()
	first := ca.Issue(t, serverSpec)
	files := certstest.WriteFiles(t, dir, first, clientCA.PEM)
	envoy := clientCA.Issue(t, certstest.Spec{Client: true, SANs: []string{envoyID}})
	flags := []string{"--tls-cert", files.Cert, "--tls-key", files.Key, "--authz-client-ca", files.CA,
		"--authz-client-sans", envoyID + ",spiffe://cluster.local/ns/edge/sa/other", "--tls-reload-interval", "100ms"}
	r := startServeTLS(t, "tls", []string{"TOLLGATE_DATABASE_URL=" + dbURL}, &serveTLS{roots: ca.Pool(), client: &envoy.TLS}, flags...)
	r.mustAllow(t, call{Token: token})

	for name, client := range map[string]*tls.Certificate{
		"no client certificate": nil,
		"another CA":            &otherCA.Issue(t, certstest.Spec{Client: true, SANs: []string{envoyID}}).TLS,
		"SAN off the list":      &clientCA.Issue(t, certstest.Spec{Client: true, SANs: []string{"spiffe://cluster.local/ns/dev/sa/app"}}).TLS,
	} {
		t.Run(name, func(t *testing.T) {
			o := startClient(t, r, ca, client).check(call{Token: token}, 5*time.Second)
			if o.Allowed || o.Err == "" {
				t.Fatalf("got %v, want the connection refused", o)
			}
		})
	}

	served := func() *big.Int {
		t.Helper()
		c, err := tls.Dial("tcp", r.grpcAddr, &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{envoy.TLS}, NextProtos: []string{"h2"}})
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
	for i := range 4 {
		wg.Go(func() {
			client := r // workers 0 and 2 keep the replica's own connection
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if i%2 == 1 && n%10 == 0 {
					client = startClient(nil, r, ca, &envoy.TLS)
				}
				o := client.check(call{Token: token}, 5*time.Second)
				checks.Add(1)
				if !o.Allowed || o.Bad != "" {
					failures.Add(1)
					firstFailure.CompareAndSwap(nil, o.String())
				}
				if client != r && n%10 == 9 {
					client.conn.Close()
				}
			}
		})
	}
	for _, next := range []*certstest.Leaf{ca.Issue(t, serverSpec), ca.Issue(t, serverSpec)} {
		before := checks.Load()
		certstest.WriteFiles(t, dir, next, clientCA.PEM)
		for deadline := time.Now().Add(15 * time.Second); served().Cmp(next.Serial) != 0; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("still serving %v 15s after rotating to %v", served(), next.Serial)
			}
		}
		for deadline := time.Now().Add(15 * time.Second); checks.Load() < before+50; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("Checks stalled after the rotation")
			}
		}
	}
	halt()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d of %d Checks failed across two rotations; the first: %v", n, checks.Load(), firstFailure.Load())
	}
	t.Logf("%d Checks across two rotations, none failed", checks.Load())
	if !strings.Contains(r.stderr.String(), "tls: certificate reloaded") {
		t.Error("no log line for the reload")
	}
}

// startClient returns a copy of r reached over its own TLS connection,
// trusting ca and presenting client. With tb nil the connection is the
// caller's to close.
func startClient(tb testing.TB, r *replica, ca *certstest.CA, client *tls.Certificate) *replica {
	c := *r
	conn, err := dialTLS(r.grpcAddr, &serveTLS{roots: ca.Pool(), client: client})
	if err != nil {
		panic(err)
	}
	if tb != nil {
		tb.Cleanup(func() { conn.Close() })
	}
	c.conn, c.auth = conn, authv3.NewAuthorizationClient(conn)
	return &c
}

// TestServeTLSFailsClosed: a certificate that cannot be loaded stops
// "tollgate serve" at start; it never serves plaintext instead.
func TestServeTLSFailsClosed(t *testing.T) {
	t.Parallel()
	_, dbURL := MustOpenDB(t)
	ca := certstest.NewCA(t, "ca")
	files := certstest.WriteFiles(t, t.TempDir(), ca.Issue(t, certstest.Spec{SANs: []string{"127.0.0.1"}}), ca.PEM)
	other := certstest.WriteFiles(t, t.TempDir(), ca.Issue(t, certstest.Spec{SANs: []string{"127.0.0.1"}}), ca.PEM)
	cmd := exec.Command(binary, "serve", "--grpc-addr", freeAddr(t), "--http-addr", freeAddr(t), "--metrics-addr", freeAddr(t),
		"--migrate", "--tls-cert", files.Cert, "--tls-key", other.Key)
	cmd.Env = append(withoutTollgateEnv(cmd.Environ()), "TOLLGATE_DATABASE_URL="+dbURL)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("serve with a key of another certificate exited 0:\n%s", out)
	}
	if !strings.Contains(string(out), "tls") {
		t.Fatalf("the error does not say what is wrong:\n%s", out)
	}
}
