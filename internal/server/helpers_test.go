package server_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/server"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// testServer is a Tollgate started with Run on loopback ports, and the
// clients a test talks to it with.
type testServer struct {
	*server.Server
	Auth   authv3.AuthorizationClient
	Health healthpb.HealthClient
	// BaseURL is where /healthz, /readyz, the Tokens API and the console
	// answer; MetricsURL is where /metrics does.
	BaseURL, MetricsURL string
	// Logs holds everything the server logged.
	Logs *syncBuffer

	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	runErr error
}

// MustStartServer starts a server on dbURL with the test defaults (loopback
// ports, migrations on, small pool), changed by configure if it is not nil.
// The server stops when tb ends.
func MustStartServer(tb testing.TB, dbURL string, configure func(*server.Config)) *testServer {
	tb.Helper()
	cfg := server.DefaultConfig()
	cfg.Listen.GRPC, cfg.Listen.HTTP, cfg.Listen.Metrics = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Store.URL = dbURL
	cfg.Store.Migrate = true
	cfg.Store.MaxConns = 4
	cfg.Shutdown.Timeout = 5 * time.Second
	// Most cases here are about tokens, addresses and answers, not about
	// routing, and send requests no route describes. The routing
	// catalogue (TestFailClosed) and the route-rule servers set it back.
	cfg.ExtAuthz.AllowUnmatchedRoutes = true
	if configure != nil {
		configure(&cfg)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, log)
	if err != nil {
		cancel()
		tb.Fatalf("server.New: %v", err)
	}
	s := &testServer{Server: srv, Logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- srv.Run(ctx) }()

	conn, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatalf("grpc.NewClient: %v", err)
	}
	s.Auth, s.Health = authv3.NewAuthorizationClient(conn), healthpb.NewHealthClient(conn)
	s.BaseURL = "http://" + srv.HTTPAddr().String()
	s.MetricsURL = "http://" + srv.MetricsAddr().String()
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Errorf("server Run: %v", err)
		}
		conn.Close()
	})
	return s
}

// Stop cancels Run's context and waits for Run to return its error. It may
// be called more than once.
func (s *testServer) Stop() error {
	s.once.Do(func() {
		s.cancel()
		select {
		case s.runErr = <-s.done:
		case <-time.After(20 * time.Second):
			s.runErr = fmt.Errorf("Run did not return 20s after its context was cancelled")
		}
	})
	return s.runErr
}

// MustCheck sends req and fails the test on a gRPC error.
func (s *testServer) MustCheck(tb testing.TB, req *authv3.CheckRequest) *authv3.CheckResponse {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := s.Auth.Check(ctx, req)
	if err != nil {
		tb.Fatalf("Check: %v", err)
	}
	return resp
}

// Get fetches an HTTP endpoint and returns its status and body.
func (s *testServer) Get(tb testing.TB, path string) (int, string) {
	tb.Helper()
	return getURL(tb, s.BaseURL+path)
}

func getURL(tb testing.TB, url string) (int, string) {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// Metric returns the value of one series of /metrics, written as Prometheus
// prints it (labels sorted by name), e.g.
// `tollgate_check_decisions_total{code="token_unknown",result="deny"}`.
func (s *testServer) Metric(tb testing.TB, series string) (float64, bool) {
	tb.Helper()
	status, body := getURL(tb, s.MetricsURL+"/metrics")
	if status != http.StatusOK {
		tb.Fatalf("GET /metrics: got status %d, want 200", status)
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), series+" ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			tb.Fatalf("metric %s: %v", series, err)
		}
		return f, true
	}
	return 0, false
}

// WaitListening waits until a Postgres-backed server receives change
// notifications, so that a test of freshness does not race the LISTEN.
func (s *testServer) WaitListening(tb testing.TB) {
	tb.Helper()
	s.waitGauge(tb, "tollgate_listener_connected", "the server's change listener did not connect")
}

// waitGauge waits up to 10 s for the gauge series to read 1.
func (s *testServer) waitGauge(tb testing.TB, series, failure string) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if v, _ := s.Metric(tb, series); v == 1 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatalf("%s within 10s", failure)
}

// syncBuffer is a bytes.Buffer safe for the server's concurrent logging.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// fixtureToken is a token the fixture made, with its value.
type fixtureToken struct {
	ID, AccountID, Value string
	Kind                 policy.Kind
}

// fixture is a store seeded with accounts and tokens covering every rule.
type fixture struct {
	DB  *store.DB
	URL string
	// Premium subscribes to premium data; Plain does not.
	Premium, Plain *policy.Account
	tokens         map[string]fixtureToken
}

// Token returns the fixture token called name.
func (f *fixture) Token(tb testing.TB, name string) fixtureToken {
	tb.Helper()
	t, ok := f.tokens[name]
	if !ok {
		tb.Fatalf("no fixture token %q", name)
	}
	return t
}

// V returns the value of the fixture token called name.
func (f *fixture) V(name string) string {
	t, ok := f.tokens[name]
	if !ok {
		panic("no fixture token " + name)
	}
	return t.Value
}

// Values returns every fixture token value: none may ever appear in a
// response body or a log.
func (f *fixture) Values() []string {
	out := make([]string, 0, len(f.tokens))
	for _, t := range f.tokens {
		out = append(out, t.Value)
	}
	return out
}

const (
	rd  = policy.Actions(policy.Read)
	rw  = policy.Actions(policy.Read | policy.Write)
	del = policy.Actions(policy.Delete)
)

// MustSeed opens a fresh store of dialect d and fills it with the fixture's
// accounts and tokens.
func MustSeed(tb testing.TB, d store.Dialect) *fixture {
	tb.Helper()
	db, u := storetest.MustOpen(tb, d)
	ctx := context.Background()
	f := &fixture{DB: db, URL: u, tokens: map[string]fixtureToken{}}

	f.Premium = &policy.Account{Name: "Acme Analytics", Premium: true}
	secret, value, err := db.CreateAccount(ctx, f.Premium)
	if err != nil {
		tb.Fatalf("create account: %v", err)
	}
	f.tokens["secret"] = fixtureToken{ID: secret.ID, AccountID: f.Premium.ID, Value: value, Kind: policy.Secret}
	f.Plain = &policy.Account{Name: "Plain Co"}
	secret, value, err = db.CreateAccount(ctx, f.Plain)
	if err != nil {
		tb.Fatalf("create account: %v", err)
	}
	f.tokens["secret_plain"] = fixtureToken{ID: secret.ID, AccountID: f.Plain.ID, Value: value, Kind: policy.Secret}

	past := time.Now().Add(-time.Hour)
	specs := []struct {
		name    string
		account *policy.Account
		change  func(*policy.Token)
	}{
		{"basic", f.Premium, nil},
		{"datasets", f.Premium, func(t *policy.Token) {
			t.Datasets = map[string]policy.Actions{"prices": rd, "sales.*": rw, "trash.*": del}
		}},
		{"ipv4", f.Premium, func(t *policy.Token) { t.IPs = []string{"203.0.113.0/24"} }},
		{"ipv6", f.Premium, func(t *policy.Token) { t.IPs = []string{"2001:db8:abcd::/48"} }},
		{"domains", f.Premium, func(t *policy.Token) {
			t.Domains = []string{
				"example.com",                // http and https, any port, any path
				"https://secure.example.org", // https only
				"*.wild.example.net",         // subdomains, not the apex
				"localhost:3000",             // one port
				"app.example.io/app",         // a path prefix, whole segments
				"docs.example.io/v1/",        // a path prefix ending in "/"
				"[2001:db8::1]:8443",         // an IPv6 literal and a port
				"192.168.1.10",               // an IPv4 literal
			}
		}},
		{"apis", f.Premium, func(t *policy.Token) { t.APIs = []string{"data", "maps"} }},
		{"import", f.Premium, func(t *policy.Token) { t.APIs = []string{"import"} }},
		{"premium", f.Premium, func(t *policy.Token) { t.Premium = true }},
		{"premium_on_plain", f.Plain, func(t *policy.Token) { t.Premium = true }},
		{"nocore", f.Premium, func(t *policy.Token) { t.Core = false }},
		{"grants", f.Premium, func(t *policy.Token) {
			t.Grants = []policy.Grant{
				{Connection: "warehouse", Type: policy.GrantTable, Source: "public.sales_*"},
				{Connection: "warehouse", Type: policy.GrantQuery, Source: "SELECT id, total\n  FROM public.orders\n WHERE total > 100"},
				{Connection: "lake", Type: policy.GrantAll},
			}
		}},
		{"disabled", f.Premium, func(t *policy.Token) { t.Enabled = false }},
		{"expired", f.Premium, func(t *policy.Token) { t.ExpiresAt = &past }},
	}
	for _, s := range specs {
		t := policy.NewToken(s.account.ID, policy.Publishable)
		t.Nickname = s.name
		if s.change != nil {
			s.change(t)
		}
		value, err := db.CreateToken(ctx, t)
		if err != nil {
			tb.Fatalf("create token %s: %v", s.name, err)
		}
		f.tokens[s.name] = fixtureToken{ID: t.ID, AccountID: t.AccountID, Value: value, Kind: t.Kind}
	}
	return f
}
