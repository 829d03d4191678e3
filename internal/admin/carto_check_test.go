package admin_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/server"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// TestCartoTokenEnforcedByCheck runs a whole server (Check and the Tokens
// API on one store) and checks that a token made through /v3 is allowed by
// Check at once, and that a /v3 change and delete decide Check within a
// second, on both stores.
func TestCartoTokenEnforcedByCheck(t *testing.T) {
	const within = time.Second
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			db, u := storetest.MustOpen(t, d)
			_, secret, err := db.CreateAccount(context.Background(), &policy.Account{Name: "Acme"})
			if err != nil {
				t.Fatal(err)
			}
			s := startServer(t, u)
			if d == store.Postgres {
				s.waitListening(t)
			}
			// The server's own HTTP listener serves the Tokens API.
			api := &client{f: &fixture{t: t, srv: &httptest.Server{URL: s.baseURL}}, bearer: secret}

			const granted = "SELECT name FROM `carto-demo-data`.demo_tables.airports WHERE iata = 'BOS'"
			made := api.do("POST", "/v3/tokens", `{"grants":[{"connection_name":"carto_dw","source":"`+granted+`"}],"allowed_apis":["sql"]}`).want(t, "create", 201)
			value := made.str("token")
			sql := func(q string) *authv3.CheckRequest {
				return checkRequest("/v3/sql/carto_dw/query?q="+url.QueryEscape(q), value, map[string]string{"api": "sql", "connection": "carto_dw"})
			}
			if code := s.check(t, sql(granted)); code != "" {
				t.Fatalf("the granted query right after create: denied %s", code)
			}
			if code := s.check(t, sql("SELECT * FROM users")); code != string(policy.CodeSourceDenied) {
				t.Fatalf("another query: %q, want %s", code, policy.CodeSourceDenied)
			}

			api.do("PATCH", "/v3/tokens/"+value, `{"grants":[{"connection_name":"carto_dw","source":"SELECT 1"}]}`).want(t, "patch", 200)
			took := s.until(t, within, sql(granted), string(policy.CodeSourceDenied))
			t.Logf("the /v3 change decided Check after %v", took)
			if took > within {
				t.Errorf("the /v3 change decided Check after %v, want within %v", took, within)
			}
			api.do("DELETE", "/v3/tokens/"+value, nil).want(t, "delete", 204)
			took = s.until(t, within, sql("SELECT 1"), string(policy.CodeTokenUnknown))
			t.Logf("the /v3 delete decided Check after %v", took)
			if took > within {
				t.Errorf("the /v3 delete decided Check after %v, want within %v", took, within)
			}
		})
	}
}

// checkServer is a running server and a Check client.
type checkServer struct {
	auth             authv3.AuthorizationClient
	baseURL, metrics string
}

func startServer(t *testing.T, dbURL string) *checkServer {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.Listen.GRPC, cfg.Listen.HTTP, cfg.Listen.Metrics = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Store.URL, cfg.Store.Migrate, cfg.Store.MaxConns = dbURL, true, 4
	cfg.Shutdown.Timeout = 5 * time.Second
	cfg.ExtAuthz.AllowUnmatchedRoutes = true
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		cancel()
		t.Fatalf("server.New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	conn, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server Run: %v", err)
		}
		conn.Close()
	})
	return &checkServer{auth: authv3.NewAuthorizationClient(conn),
		baseURL: "http://" + srv.HTTPAddr().String(), metrics: "http://" + srv.MetricsAddr().String()}
}

// waitListening waits for the Postgres change listener, as a change made
// before it listens is seen only by the cache's expiry.
func (s *checkServer) waitListening(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		res, err := http.Get(s.metrics + "/metrics")
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if strings.Contains(string(body), "\ntollgate_listener_connected 1\n") {
			return
		}
	}
	t.Fatal("the change listener did not connect within 10s")
}

// check sends a Check and returns "" for an allow, else the deny's code.
func (s *checkServer) check(t *testing.T, req *authv3.CheckRequest) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := s.auth.Check(ctx, req)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if res.GetStatus().GetCode() == 0 {
		return ""
	}
	body := res.GetDeniedResponse().GetBody()
	for _, c := range []policy.DenyCode{policy.CodeSourceDenied, policy.CodeTokenUnknown} {
		if strings.Contains(body, `"`+string(c)+`"`) {
			return string(c)
		}
	}
	return body
}

// until sends req until Check denies it with code and returns how long
// that took; it gives up after three times within.
func (s *checkServer) until(t *testing.T, within time.Duration, req *authv3.CheckRequest, code string) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < 3*within {
		if s.check(t, req) == code {
			return time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("Check did not answer %s within %v", code, 3*within)
	return 0
}

// checkRequest is a Check as Envoy sends it for a route with the given
// context extensions, the token in X-API-Key.
func checkRequest(path, value string, ext map[string]string) *authv3.CheckRequest {
	addr := func(ip string, port uint32) *corev3.Address {
		return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Protocol: corev3.SocketAddress_TCP, Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
	}
	h := map[string]string{":authority": "api.tollgate.test", "host": "api.tollgate.test", ":method": "GET", ":path": path,
		":scheme": "https", "x-api-key": value, "user-agent": "carto-etl/1.0", "x-forwarded-for": "198.51.100.7"}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: addr("198.51.100.7", 50123)},
		Destination: &authv3.AttributeContext_Peer{Address: addr("10.0.4.17", 10000)},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: path, Host: "api.tollgate.test", Scheme: "https", Protocol: "HTTP/1.1", Headers: h}},
		ContextExtensions: ext,
	}}
}
