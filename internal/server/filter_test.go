package server_test

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/server"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// waitFilter waits until the server's membership filter is in force.
func (s *testServer) waitFilter(tb testing.TB) {
	tb.Helper()
	s.waitGauge(tb, "tollgate_filter_loaded", "the membership filter was not in force")
}

// storeQueries returns how many token look-ups the server has made.
func (s *testServer) storeQueries(tb testing.TB) float64 {
	tb.Helper()
	v, ok := s.Metric(tb, `tollgate_store_duration_seconds_count{op="token_by_hash"}`)
	if !ok {
		tb.Fatal("no tollgate_store_duration_seconds_count in /metrics")
	}
	return v
}

// With the membership filter, made-up tokens are refused without a query
// and counted; known tokens and tokens created while the server runs
// pass; with --membership-filter=false every made-up token is a query.
func TestMembershipFilter(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Dialects() {
		for _, on := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/filter %v", d, on), func(t *testing.T) {
				t.Parallel()
				db, u := storetest.MustOpen(t, d)
				ctx := context.Background()
				a := &policy.Account{Name: "Acme"}
				if _, _, err := db.CreateAccount(ctx, a); err != nil {
					t.Fatal(err)
				}
				known, err := db.CreateToken(ctx, policy.NewToken(a.ID, policy.Publishable))
				if err != nil {
					t.Fatal(err)
				}
				s := MustStartServer(t, u, func(c *server.Config) {
					c.MembershipFilter = on
					c.Cache.FilterMissLookups = 0 // so that no made-up token reaches the store
				})
				check := func(value string) *authv3.CheckResponse {
					return s.MustCheck(t, envoyRequest{Path: "/v1/prices", Headers: hdr("x-api-key", value)}.proto())
				}
				if on {
					s.waitFilter(t)
				} else if d == store.Postgres {
					s.WaitListening(t)
				}
				if resp := check(known); !allowed(resp) {
					t.Fatalf("a token created before the start: got %s, want allow", describe(resp))
				}
				const madeUp = 50
				before := s.storeQueries(t)
				for range madeUp {
					expectDeny(t, check(policy.NewValue(policy.Publishable)), policy.CodeTokenUnknown, "", nil)
				}
				queries := s.storeQueries(t) - before
				refusals, _ := s.Metric(t, "tollgate_filter_refusals_total")
				wantQueries, wantRefusals := float64(0), float64(madeUp)
				if !on {
					wantQueries, wantRefusals = madeUp, 0
				}
				if queries != wantQueries || refusals != wantRefusals {
					t.Errorf("%d made-up tokens: got %v store queries and %v refusals, want %v and %v", madeUp, queries, refusals, wantQueries, wantRefusals)
				}

				// Created while the server runs: it passes as soon as the
				// replica hears of it.
				created, err := db.CreateToken(ctx, policy.NewToken(a.ID, policy.Publishable))
				if err != nil {
					t.Fatal(err)
				}
				took := pollUntil(t, s, envoyRequest{Path: "/v1/prices", Headers: hdr("x-api-key", created)}, time.Second, allowed)
				t.Logf("a token created while serving passed after %v", took.Round(time.Millisecond))

				entries, _ := s.Metric(t, "tollgate_filter_entries")
				size, _ := s.Metric(t, "tollgate_filter_bytes")
				if on && (entries < 3 || size <= 0) || !on && (entries != 0 || size != 0) {
					t.Errorf("filter of %v keys in %v bytes, want the account's secret and two tokens in it when on, nothing when off", entries, size)
				}
			})
		}
	}
}

// BenchmarkUnknownFlood measures legitimate cold misses (tokens the
// replica has not cached yet) while other clients send made-up tokens at
// 2,000 a second, with and without the membership filter, through the
// real gRPC server on Postgres. It reports the store queries per second
// the whole load causes, the flood's rate, and the cold misses' latency.
// Run it with a fixed count: -bench UnknownFlood -benchtime 400x.
func BenchmarkUnknownFlood(b *testing.B) {
	db, u := storetest.MustOpen(b, store.Postgres)
	ctx := context.Background()
	a := &policy.Account{Name: "Acme"}
	if _, _, err := db.CreateAccount(ctx, a); err != nil {
		b.Fatal(err)
	}
	tok := policy.NewToken(a.ID, policy.Publishable)
	if _, err := db.CreateToken(ctx, tok); err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		on, flood bool
	}{
		{"no flood", false, false},
		{"flood/no filter", false, true},
		{"flood/filter", true, true},
	} {
		on := tc.on
		b.Run(tc.name, func(b *testing.B) {
			// A cold miss needs a value never asked for: many keys of one
			// token.
			legit := mustKeys(b, u, tok.ID, b.N)
			s := MustStartServer(b, u, func(c *server.Config) {
				c.MembershipFilter = on
				c.Store.MaxConns = 10
			})
			if on {
				s.waitFilter(b)
			} else {
				s.WaitListening(b)
			}

			fctx, stop := context.WithCancel(ctx)
			var flooded atomic.Int64
			var wg sync.WaitGroup
			// The flood comes at a fixed rate, so that it takes the same
			// CPU from the server either way on a machine it shares with
			// Postgres and the clients; what differs is the store's work.
			const floodRate, flooders = 2000, 8
			for range map[bool]int{true: flooders}[tc.flood] {
				wg.Go(func() {
					tick := time.NewTicker(time.Second * flooders / floodRate)
					defer tick.Stop()
					for fctx.Err() == nil {
						select {
						case <-tick.C:
						case <-fctx.Done():
							return
						}
						req := envoyRequest{Path: "/v1/prices", Headers: hdr("x-api-key", policy.NewValue(policy.Publishable))}.proto()
						if _, err := s.Auth.Check(fctx, req); err == nil {
							flooded.Add(1)
						}
					}
				})
			}
			time.Sleep(500 * time.Millisecond) // let the flood build up
			queries0, flood0, start := s.storeQueries(b), flooded.Load(), time.Now()
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				resp := s.MustCheck(b, envoyRequest{Path: "/v1/prices", Headers: hdr("x-api-key", legit[i])}.proto())
				lat = append(lat, time.Since(t0))
				if !allowed(resp) {
					b.Fatalf("a legitimate token: got %s", describe(resp))
				}
			}
			b.StopTimer()
			elapsed := time.Since(start).Seconds()
			queries, flood := s.storeQueries(b)-queries0, flooded.Load()-flood0
			stop()
			wg.Wait()
			slices.Sort(lat)
			b.ReportMetric((queries-float64(b.N))/elapsed, "flood-queries/s")
			b.ReportMetric(float64(flood)/elapsed, "flood-checks/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "cold-p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "cold-p99-ms")
		})
	}
}

// mustKeys gives token tokenID n more values in the Postgres database at
// dbURL, as plain SQL would, and returns them.
func mustKeys(tb testing.TB, dbURL, tokenID string, n int) []string {
	tb.Helper()
	db, err := sql.Open("postgres", dbURL)
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	var out []string
	for n > 0 {
		rows := min(n, 500)
		n -= rows
		args := make([]any, 0, 2*rows)
		marks := make([]string, 0, rows)
		for i := range rows {
			v := policy.NewValue(policy.Publishable)
			h := policy.HashValue(v)
			out = append(out, v)
			args = append(args, h[:], tokenID)
			marks = append(marks, fmt.Sprintf("($%d, $%d)", 2*i+1, 2*i+2))
		}
		if _, err := db.Exec(`INSERT INTO token_keys (hash, token_id) VALUES `+strings.Join(marks, ", "), args...); err != nil {
			tb.Fatalf("insert keys: %v", err)
		}
	}
	return out
}
