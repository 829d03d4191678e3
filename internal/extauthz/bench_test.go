package extauthz_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tollgate/tollgate/internal/certs/certstest"
	"github.com/tollgate/tollgate/internal/credits"
	"github.com/tollgate/tollgate/internal/extauthz"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// benchStore holds one token, for benchmarks of the cache-hit path.
type benchStore struct {
	tok *policy.Token
	acc *policy.Account
	h   policy.Hash
}

func (s *benchStore) TokenByHash(_ context.Context, h policy.Hash) (*policy.Token, *policy.Account, error) {
	if h != s.h {
		return nil, nil, policy.ErrNotFound
	}
	return s.tok, s.acc, nil
}

// benchServer returns a Check server over a cache holding one restricted
// token, and a request for it shaped as Envoy sends it. With metered set,
// the token has a credit limit and a rate limit, and a credits.Meter over
// an embedded store counts every request.
func benchServer(b testing.TB, metered bool, configure ...func(*extauthz.Config)) (*extauthz.Server, *authv3.CheckRequest) {
	b.Helper()
	tok := policy.NewToken("acc_bench0000000000", policy.Publishable)
	var meter policy.Meter
	if metered {
		limit := int64(1 << 50)
		tok.CreditLimit = &limit
		tok.RateLimit = &policy.RateLimit{RPS: 1_000_000, Burst: 10_000_000}
		db, _ := storetest.MustOpen(b, store.SQLite)
		m, err := credits.New(db, credits.DefaultConfig(), time.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { m.Run(ctx); close(done) }()
		b.Cleanup(func() { cancel(); <-done })
		meter = m
	}
	tok.Domains = []string{"example.com", "*.example.org"}
	tok.IPs = []string{"10.0.0.0/8"}
	tok.Datasets = map[string]policy.Actions{"prices": policy.Actions(policy.Read)}
	if err := tok.Normalize(); err != nil {
		b.Fatal(err)
	}
	value := policy.NewValue(policy.Publishable)
	st := &benchStore{tok: tok, acc: &policy.Account{ID: tok.AccountID}, h: policy.HashValue(value)}
	cache, err := policy.NewCache(st, policy.CacheConfig{Size: 1000, TTL: time.Hour, NegativeSize: 100,
		NegativeTTL: time.Minute, MaxStaleness: time.Hour, StoreTimeout: time.Second}, time.Now, nil)
	if err != nil {
		b.Fatal(err)
	}
	d := policy.NewDecider(cache, meter, time.Now, policy.EvalOptions{})
	cfg := extauthz.Config{StripCredentials: true}
	for _, c := range configure {
		c(&cfg)
	}
	srv := extauthz.NewServer(d, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	return srv, envoyRequest(value)
}

// envoyRequest is a CheckRequest as Envoy's ext_authz filter sends it.
func envoyRequest(token string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "10.1.2.3", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 53122}}}}},
		Destination: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "10.0.0.9", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8080}}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "8b0b6b5e-3b7e-4c8e-9b1e-2f1f0c6d1a77", Method: "GET", Host: "api.example.com",
			Path: "/v1/prices/AAPL?token=" + token + "&range=1d", Scheme: "https", Protocol: "HTTP/1.1",
			Headers: map[string]string{
				":authority": "api.example.com", ":method": "GET", ":path": "/v1/prices/AAPL?token=" + token + "&range=1d",
				":scheme": "https", "user-agent": "Mozilla/5.0", "accept": "application/json",
				"referer": "https://www.example.org/dashboard", "x-forwarded-for": "10.1.2.3",
				"x-forwarded-proto": "https", "x-request-id": "8b0b6b5e-3b7e-4c8e-9b1e-2f1f0c6d1a77",
			},
		}},
		ContextExtensions: map[string]string{"api": "data", "dataset": "prices", "tier": "core", "cost": "1"},
	}}
}

// BenchmarkCheck is Check on a cache hit, in process: the work Tollgate
// adds on top of gRPC, without and with credit counting and rate limits.
func BenchmarkCheck(b *testing.B) {
	for _, metered := range []bool{false, true} {
		b.Run(map[bool]string{false: "plain", true: "credits"}[metered], func(b *testing.B) {
			srv, req := benchServer(b, metered)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := srv.Check(ctx, req)
					if err != nil || resp.GetOkResponse() == nil {
						b.Fatalf("not allowed: %v %v", resp, err)
					}
				}
			})
		})
	}
}

// BenchmarkCheckTraced is BenchmarkCheck/plain with tracing on and every
// Check sampled (its traceparent says so): the cost of a span per Check,
// recorded by the SDK and dropped by an exporter that sends nothing.
// Compare it with BenchmarkCheck/plain, which has tracing off.
func BenchmarkCheckTraced(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardExporter{}))
	b.Cleanup(func() { tp.Shutdown(context.Background()) })
	srv, req := benchServer(b, false, func(c *extauthz.Config) {
		c.Tracing = extauthz.Tracing{Tracer: tp.Tracer("bench"), Propagator: propagation.TraceContext{}}
	})
	req.Attributes.Request.Http.Headers["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := srv.Check(ctx, req)
			if err != nil || resp.GetOkResponse() == nil {
				b.Fatalf("not allowed: %v %v", resp, err)
			}
		}
	})
}

// discardExporter exports spans nowhere.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// noop is the baseline: an ext_authz server that allows at once.
type noop struct {
	authv3.UnimplementedAuthorizationServer
}

func (noop) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{Status: &rpcstatus.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}}, nil
}

// BenchmarkCheckGRPC compares Check over a real loopback gRPC connection
// with the no-op baseline, in the same run: Tollgate with the options its
// server runs with, the no-op with gRPC's defaults (as cmd/noopauthz) and
// with Tollgate's stream workers (what the no-op would cost given them).
//
// tollgate-tls is the same over TLS (ECDSA P-256, TLS 1.3, the
// connection kept): what the shared service's TLS adds to each Check.
func BenchmarkCheckGRPC(b *testing.B) {
	srv, req := benchServer(b, false)
	served := extauthz.Config{StreamWorkers: extauthz.DefaultStreamWorkers()}
	ca := certstest.NewCA(b, "bench CA")
	leaf := ca.Issue(b, certstest.Spec{SANs: []string{"tollgate.test"}})
	for _, c := range []struct {
		name string
		impl authv3.AuthorizationServer
		opts []grpc.ServerOption
		tls  bool
	}{{"noop", noop{}, nil, false},
		{"noop-workers", noop{}, []grpc.ServerOption{grpc.NumStreamWorkers(uint32(served.StreamWorkers))}, false},
		{"tollgate", srv, extauthz.ServerOptions(served), false}, {"tollgate-tls", srv, extauthz.ServerOptions(served), true}} {
		b.Run(c.name, func(b *testing.B) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			serverCreds, clientCreds := insecure.NewCredentials(), insecure.NewCredentials()
			if c.tls {
				serverCreds = credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{leaf.TLS}})
				clientCreds = credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), ServerName: "tollgate.test"})
			}
			gs := grpc.NewServer(append(c.opts, grpc.Creds(serverCreds))...)
			authv3.RegisterAuthorizationServer(gs, c.impl)
			go gs.Serve(lis)
			defer gs.Stop()
			conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(clientCreds))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			client := authv3.NewAuthorizationClient(conn)
			b.ReportAllocs()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Check(context.Background(), req)
					if err != nil || resp.GetOkResponse() == nil {
						panic(fmt.Sprintf("not allowed: %v %v", resp, err))
					}
				}
			})
		})
	}
}

// BenchmarkHTTPAuthz is the HTTP endpoint on a cache hit, in process,
// for the same request as BenchmarkCheck: Envoy's http_service dialect
// and nginx's. Compare it with BenchmarkCheck/plain in the same run.
func BenchmarkHTTPAuthz(b *testing.B) {
	srv, cr := benchServer(b, false)
	h, err := srv.HTTPHandler(extauthz.DefaultHTTPPrefix)
	if err != nil {
		b.Fatal(err)
	}
	hr := cr.GetAttributes().GetRequest().GetHttp()
	header := http.Header{"X-Real-Ip": {"10.1.2.3"}, "X-Tollgate-Api": {"data"}, "X-Tollgate-Dataset": {"prices"},
		"X-Tollgate-Tier": {"core"}, "X-Tollgate-Cost": {"1"}}
	for k, v := range hr.GetHeaders() {
		if !strings.HasPrefix(k, ":") {
			header.Set(k, v)
		}
	}
	for _, dia := range []struct {
		name, method, uri string
		extra             http.Header
	}{
		{"envoy", "GET", extauthz.DefaultHTTPPrefix + hr.GetPath(), nil},
		{"nginx", "GET", extauthz.NginxPath, http.Header{"X-Original-Method": {"GET"}, "X-Original-Uri": {hr.GetPath()}}},
	} {
		b.Run(dia.name, func(b *testing.B) {
			hdr := header.Clone()
			maps.Copy(hdr, dia.extra)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				r := &http.Request{Method: dia.method, RequestURI: dia.uri, Header: hdr, Host: "api.example.com"}
				r = r.WithContext(context.Background())
				for pb.Next() {
					w := httptest.NewRecorder()
					h.ServeHTTP(w, r)
					if w.Code != http.StatusOK {
						b.Fatalf("not allowed: %d %s", w.Code, w.Body)
					}
				}
			})
		})
	}
}
