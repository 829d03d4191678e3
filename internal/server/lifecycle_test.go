package server_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/server"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// TestServerLifecycle checks health, metrics and an orderly shutdown.
func TestServerLifecycle(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			db, u := storetest.MustOpen(t, d)
			acct := &policy.Account{Name: "Lifecycle"}
			secret, value, err := db.CreateAccount(context.Background(), acct)
			if err != nil {
				t.Fatal(err)
			}
			tok := fixtureToken{ID: secret.ID, AccountID: acct.ID, Value: value, Kind: policy.Secret}
			const drain = time.Second
			s := MustStartServer(t, u, func(c *server.Config) { c.Shutdown.DrainDelay = drain })
			ok := envoyRequest{Path: "/v1/prices", Headers: hdr("authorization", "Bearer "+value)}

			t.Run("health", func(t *testing.T) {
				for _, service := range []string{"", authv3.Authorization_ServiceDesc.ServiceName} {
					if got := healthStatus(t, s, service); got != healthpb.HealthCheckResponse_SERVING {
						t.Errorf("health %q: got %v, want %v", service, got, healthpb.HealthCheckResponse_SERVING)
					}
				}
				for _, path := range []string{"/healthz", "/readyz"} {
					if got, _ := s.Get(t, path); got != http.StatusOK {
						t.Errorf("%s: got %d, want %d", path, got, http.StatusOK)
					}
				}
			})

			// /metrics has a listener of its own: scraping it reaches
			// nothing else, and the Tokens API's port does not serve it.
			t.Run("metrics listener", func(t *testing.T) {
				for url, want := range map[string]int{
					s.MetricsURL + "/metrics":  http.StatusOK,
					s.BaseURL + "/metrics":     http.StatusNotFound,
					s.MetricsURL + "/v1/":      http.StatusNotFound,
					s.MetricsURL + "/console/": http.StatusNotFound,
				} {
					if got, _ := getURL(t, url); got != want {
						t.Errorf("GET %s: got %d, want %d", url, got, want)
					}
				}
			})

			t.Run("metrics", func(t *testing.T) {
				unknown := envoyRequest{Path: "/v1/prices?token=" + policy.NewValue(policy.Publishable)}
				expectDeny(t, s.MustCheck(t, unknown.proto()), policy.CodeTokenUnknown, "", nil)
				for range 3 {
					expectAllow(t, ok, s.MustCheck(t, ok.proto()), tok, 1, true)
				}
				for series, want := range map[string]float64{
					`tollgate_check_decisions_total{code="token_unknown",result="deny"}`: 1,
					`tollgate_check_decisions_total{code="ip_denied",result="deny"}`:     0,
					`tollgate_check_decisions_total{code="",result="allow"}`:             3,
					`tollgate_cache_entries`:                1,
					`tollgate_check_duration_seconds_count`: 4,
				} {
					got, found := s.Metric(t, series)
					if !found {
						t.Errorf("/metrics has no %s", series)
					} else if got != want {
						t.Errorf("%s: got %v, want %v", series, got, want)
					}
				}
				// The meter flushes on its own, with or without traffic.
				deadline := time.Now().Add(3 * server.DefaultConfig().Credits.FlushInterval)
				for {
					if got, _ := s.Metric(t, `tollgate_credits_flushes_total`); got >= 1 {
						break
					}
					if time.Now().After(deadline) {
						t.Errorf("tollgate_credits_flushes_total did not rise within 3 flush intervals")
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				// The first allow loads the token; the next two are hits.
				for series, least := range map[string]float64{`tollgate_cache_hits_total`: 2, `tollgate_cache_misses_total`: 1} {
					if got, found := s.Metric(t, series); !found || got < least {
						t.Errorf("%s: got %v (found %v), want at least %v", series, got, found, least)
					}
				}
			})

			t.Run("drain", func(t *testing.T) {
				// Checks under way when the shutdown begins get their answer.
				var wg sync.WaitGroup
				errs := make(chan string, 16)
				for range cap(errs) {
					wg.Go(func() {
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						defer cancel()
						resp, err := s.Auth.Check(ctx, ok.proto())
						switch {
						case err != nil:
							errs <- err.Error()
						case !allowed(resp):
							errs <- describe(resp)
						}
					})
				}
				stopped := make(chan error, 1)
				start := time.Now()
				go func() { stopped <- s.Stop() }()
				wg.Wait()
				close(errs)
				for e := range errs {
					t.Errorf("a Check in flight at shutdown: got %s, want allow", e)
				}

				for healthStatus(t, s, "") != healthpb.HealthCheckResponse_NOT_SERVING {
					if time.Since(start) > drain/2 {
						t.Fatalf("health: still SERVING %v after the shutdown began", time.Since(start))
					}
					time.Sleep(5 * time.Millisecond)
				}
				if got := healthStatus(t, s, authv3.Authorization_ServiceDesc.ServiceName); got != healthpb.HealthCheckResponse_NOT_SERVING {
					t.Errorf("health of the Authorization service while draining: got %v, want %v", got, healthpb.HealthCheckResponse_NOT_SERVING)
				}
				// The server keeps answering for the drain delay, so that
				// Envoy notices NOT_SERVING before connections close.
				if time.Since(start) < drain-200*time.Millisecond {
					if got, _ := s.Get(t, "/readyz"); got != http.StatusServiceUnavailable {
						t.Errorf("/readyz while draining: got %d, want %d", got, http.StatusServiceUnavailable)
					}
					if resp := s.MustCheck(t, ok.proto()); !allowed(resp) {
						t.Errorf("Check while draining: got %s, want allow", describe(resp))
					}
				} else {
					t.Logf("the machine is too slow to probe within the drain delay (%v gone)", time.Since(start))
				}

				select {
				case err := <-stopped:
					if err != nil {
						t.Errorf("Run: got %v, want nil after its context was cancelled", err)
					}
				case <-time.After(15 * time.Second):
					t.Fatal("Run did not return")
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				if _, err := s.Auth.Check(ctx, ok.proto()); status.Code(err) != codes.Unavailable {
					t.Errorf("Check after shutdown: got %v, want %v", err, codes.Unavailable)
				}
			})
		})
	}
}

func healthStatus(tb testing.TB, s *testServer, service string) healthpb.HealthCheckResponse_ServingStatus {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := s.Health.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		tb.Fatalf("health %q: %v", service, err)
	}
	return resp.GetStatus()
}
