// Package e2e_test runs the real tollgate binary as separate processes
// against a real Postgres and talks to it as Envoy would: over gRPC with
// realistic CheckRequests. It covers what only whole processes show:
// revocation across replicas, database outages and slowness, and draining
// on SIGTERM.
package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// binary is the tollgate binary built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "tollgate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "tmp", "tollgate")
	build := exec.Command("go", "build", "-o", binary, "github.com/tollgate/tollgate/cmd/tollgate")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build tollgate:", err)
		return 1
	}
	return m.Run()
}

// handedOut holds every port freeAddr has returned in this process. The
// kernel may give the port just closed to the next listen on port 0, so
// without it one replica's gRPC and HTTP addresses can be the same port
// (CI saw "bind: address already in use" from exactly that).
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// freeAddr returns a loopback address with a port that was free a moment
// ago and that no earlier call in this process returned.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("pick a free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !handedOut.ports[port] {
			handedOut.ports[port] = true
			return l.Addr().String()
		}
	}
	tb.Fatal("pick a free port: the kernel kept offering ports already handed out")
	return ""
}

// syncBuffer collects a process's output; exec writes to it from its own
// goroutine while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// replica is one running "tollgate serve" process and clients for it.
type replica struct {
	name        string
	grpcAddr    string
	httpAddr    string
	metricsAddr string
	cmd         *exec.Cmd
	stderr      *syncBuffer
	exited      chan struct{} // closed when the process has exited
	waitErr     error         // valid once exited is closed

	conn   *grpc.ClientConn
	auth   authv3.AuthorizationClient
	health healthpb.HealthClient
	// web reaches /readyz and /metrics, at scheme (https with --tls-cert).
	web    *http.Client
	scheme string
}

// serveTLS is how a test reaches a replica serving TLS: the CAs it trusts
// and the client certificate it presents (nil: none).
type serveTLS struct {
	roots  *x509.CertPool
	client *tls.Certificate
}

func (t *serveTLS) config() *tls.Config {
	c := &tls.Config{RootCAs: t.roots}
	if t.client != nil {
		c.Certificates = []tls.Certificate{*t.client}
	}
	return c
}

// startReplica starts "tollgate serve" on free ports against databaseURL,
// with extra flags appended, and waits until /readyz answers 200. The
// process is stopped (SIGTERM, then SIGKILL) when tb ends, and its stderr
// is logged if tb failed (or always, with TOLLGATE_E2E_LOGS=1).
//
// The database URL goes in TOLLGATE_DATABASE_URL, the documented
// equivalent of --database-url, because "serve --database-url" is refused
// (see TestServeDatabaseURLFlag); the rest of the suite should not fail for
// that one bug.
func startReplica(tb testing.TB, name, databaseURL string, extra ...string) *replica {
	tb.Helper()
	return startServe(tb, name, []string{"TOLLGATE_DATABASE_URL=" + databaseURL}, extra...)
}

// startServe starts "tollgate serve" with env added to the environment.
func startServe(tb testing.TB, name string, env []string, extra ...string) *replica {
	tb.Helper()
	return startServeTLS(tb, name, env, nil, extra...)
}

// startServeTLS is startServe for a replica started with --tls-cert, which
// the test reaches as t says; t nil is plaintext.
func startServeTLS(tb testing.TB, name string, env []string, t *serveTLS, extra ...string) *replica {
	tb.Helper()
	creds := insecure.NewCredentials()
	web, scheme := httpClient, "http"
	if t != nil {
		creds = credentials.NewTLS(t.config())
		web, scheme = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: t.config()}}, "https"
	}
	r := &replica{
		web:         web,
		scheme:      scheme,
		name:        name,
		grpcAddr:    freeAddr(tb),
		httpAddr:    freeAddr(tb),
		metricsAddr: freeAddr(tb),
		stderr:      &syncBuffer{},
		exited:      make(chan struct{}),
	}
	args := append([]string{"serve",
		"--grpc-addr", r.grpcAddr, "--http-addr", r.httpAddr, "--metrics-addr", r.metricsAddr,
		"--migrate", "--log-format", "text",
	}, extra...)
	r.cmd = exec.Command(binary, args...)
	r.cmd.Stdout, r.cmd.Stderr = r.stderr, r.stderr
	// Keep the environment from changing the flags under test.
	r.cmd.Env = append(withoutTollgateEnv(os.Environ()), env...)
	if err := r.cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", name, err)
	}
	go func() {
		r.waitErr = r.cmd.Wait()
		close(r.exited)
	}()
	tb.Cleanup(func() {
		r.stop(tb)
		if tb.Failed() || os.Getenv("TOLLGATE_E2E_LOGS") != "" {
			tb.Logf("--- %s stderr (%s) ---\n%s", r.name, strings.Join(args, " "), r.stderr.String())
		}
	})

	conn, err := grpc.NewClient(r.grpcAddr, grpc.WithTransportCredentials(creds))
	if err != nil {
		tb.Fatalf("grpc client for %s: %v", name, err)
	}
	tb.Cleanup(func() { conn.Close() })
	r.conn = conn
	r.auth = authv3.NewAuthorizationClient(conn)
	r.health = healthpb.NewHealthClient(conn)

	r.waitReady(tb, 20*time.Second)
	return r
}

func withoutTollgateEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "TOLLGATE_") {
			out = append(out, kv)
		}
	}
	return out
}

// waitReady polls /readyz until it answers 200.
func (r *replica) waitReady(tb testing.TB, within time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for {
		code, err := r.readyz()
		if err == nil && code == http.StatusOK {
			return
		}
		select {
		case <-r.exited:
			tb.Fatalf("%s exited before it was ready (%v):\n%s", r.name, r.waitErr, r.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s not ready after %v (last: %d, %v):\n%s", r.name, within, code, err, r.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var httpClient = &http.Client{Timeout: 2 * time.Second}

// readyz returns the status code of GET /readyz.
func (r *replica) readyz() (int, error) {
	resp, err := r.web.Get(r.scheme + "://" + r.httpAddr + "/readyz")
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// metric returns the value of an unlabelled series on /metrics, and
// whether it was there.
func (r *replica) metric(tb testing.TB, name string) (float64, bool) {
	tb.Helper()
	resp, err := r.web.Get(r.scheme + "://" + r.metricsAddr + "/metrics")
	if err != nil {
		tb.Fatalf("GET %s/metrics: %v", r.name, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				tb.Fatalf("%s metric %s: %q: %v", r.name, name, line, err)
			}
			return f, true
		}
	}
	return 0, false
}

// waitMetric polls /metrics until cond holds for the named series, and
// returns how long that took.
func (r *replica) waitMetric(tb testing.TB, name string, within time.Duration, cond func(float64) bool, what string) time.Duration {
	tb.Helper()
	start := time.Now()
	var last float64
	var seen bool
	for time.Since(start) < within {
		if last, seen = r.metric(tb, name); seen && cond(last) {
			return time.Since(start)
		}
		time.Sleep(25 * time.Millisecond)
	}
	tb.Fatalf("%s: %s: %s not reached within %v (last %v, present %t)", r.name, what, name, within, last, seen)
	return 0
}

// signal sends sig to the process.
func (r *replica) signal(tb testing.TB, sig os.Signal) {
	tb.Helper()
	if err := r.cmd.Process.Signal(sig); err != nil {
		tb.Fatalf("signal %s: %v", r.name, err)
	}
}

// stop sends SIGTERM and waits for the process to exit, then SIGKILL.
func (r *replica) stop(tb testing.TB) {
	select {
	case <-r.exited:
		return
	default:
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
		return
	case <-time.After(5 * time.Second):
	}
	tb.Logf("%s did not stop within 5s of SIGTERM; killing it", r.name)
	r.cmd.Process.Kill()
	<-r.exited
}

// runCLI runs a tollgate command against databaseURL with -o json and
// returns its standard output.
func runCLI(tb testing.TB, databaseURL string, args ...string) []byte {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, append(args, "--database-url", databaseURL, "-o", "json")...)
	cmd.Env = withoutTollgateEnv(os.Environ())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			tb.Fatalf("tollgate %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		tb.Fatalf("tollgate %s: %v", strings.Join(args, " "), err)
	}
	return stdout.Bytes()
}
