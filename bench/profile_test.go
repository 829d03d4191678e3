package bench

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/credits"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/seal"
	"github.com/tollgate/tollgate/internal/server"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// These benchmarks run the benchmarked paths in one process so that they
// can be profiled ("go test -run '^$' -bench Miss -cpuprofile cpu.prof
// ./bench/"): tollgate serve has no pprof endpoint.

// seedForProfile returns the URL of a fresh Postgres database holding n
// benchmark tokens.
func seedForProfile(b *testing.B, n int) (string, []Token) {
	b.Helper()
	st, u := storetest.MustOpen(b, store.Postgres)
	st.Close()
	_, key := NewKey()
	box, err := seal.NewBox(key)
	if err != nil {
		b.Fatal(err)
	}
	toks, sealed := NewTokens(0, n, box)
	db, err := sql.Open("postgres", u)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := Seed(context.Background(), db, toks, sealed); err != nil {
		b.Fatal(err)
	}
	return u, toks
}

// BenchmarkMiss is the cold path below gRPC: a cache miss, the store
// query, and compiling the policy, for a token never seen before.
func BenchmarkMiss(b *testing.B) {
	n := max(b.N, 1000)
	u, toks := seedForProfile(b, min(n, 200_000))
	ctx := context.Background()
	st, err := store.Open(ctx, u+os.Getenv("BENCH_DSN_EXTRA"), store.Options{MaxConns: 10})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	cache, err := policy.NewCache(st, policy.CacheConfig{Size: 1_000_000, TTL: time.Hour, NegativeSize: 1000,
		NegativeTTL: time.Minute, MaxStaleness: time.Hour, StoreTimeout: 2 * time.Second}, time.Now, nil)
	if err != nil {
		b.Fatal(err)
	}
	var plain []Token
	for _, t := range toks {
		if t.Class == classWeb || t.Class == classWebIP {
			plain = append(plain, t)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := cache.Get(ctx, plain[i%len(plain)].Hash); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServerCheck is the whole server in process (server.New, as
// tollgate serve runs it, on Postgres) answering the benchmark's cache-hit
// mix over loopback gRPC. The profile holds the client too: look at
// extauthz, policy, credits, grpc's server side and the runtime.
func BenchmarkServerCheck(b *testing.B) {
	u, toks := seedForProfile(b, 1000)
	cfg := server.DefaultConfig()
	cfg.Listen.GRPC, cfg.Listen.HTTP, cfg.Listen.Metrics, cfg.Store.URL = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", u
	cfg.ExtAuthz.TrustedHops = 1
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := server.New(ctx, cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	t, err := Dial("tollgate", s.GRPCAddr().String(), 2)
	if err != nil {
		b.Fatal(err)
	}
	defer t.Close()
	var hot []string
	for _, tok := range toks[:hotEnd] {
		hot = append(hot, tok.Value)
	}
	mix := NewMix(hot, unknownValues(64), malformedValues(64))
	for i := range 2000 { // cache the pool
		t.Check(ctx, first(mix.Next(uint64(i))))
	}
	b.ReportAllocs()
	b.ResetTimer()
	r, err := ClosedLoop(ctx, t, mix, Workers(), 2*time.Hour, b.N, nil, true, 1<<40)
	if err != nil {
		b.Fatal(err)
	}
	if r.Errors+r.Wrong > 0 {
		b.Fatalf("%d errors, %d wrong answers: %v", r.Errors, r.Wrong, r.Codes)
	}
}

func first(b []byte, _ string) []byte { return b }

// BenchmarkColdDecide is a whole decision for a token never seen before,
// credits included, as tollgate serve makes it (the meter on Postgres):
// BenchmarkMiss plus what the meter does on a token's first request.
func BenchmarkColdDecide(b *testing.B) {
	n := max(b.N, 1000)
	u, toks := seedForProfile(b, min(n+n/2, 300_000))
	ctx := context.Background()
	d, _ := coldDecider(b, u, 1_000_000)
	var plain []Token
	for _, t := range toks {
		if t.Class == classWeb {
			plain = append(plain, t)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		req := &policy.Request{Token: plain[i%len(plain)].Value, Referer: goodReferer, API: "data", Dataset: "prices",
			Tier: policy.TierCore, Action: policy.Read, Cost: 1}
		dec, err := d.Decide(ctx, req)
		if err != nil || !dec.Allow {
			b.Fatalf("decide: %+v %v", dec, err)
		}
	}
}

// coldDecider is a Decider as tollgate serve makes one, over the Postgres
// at u, and its cache: size policies, and the meter running until b ends.
func coldDecider(b *testing.B, u string, size int) (*policy.Decider, *policy.Cache) {
	ctx := context.Background()
	st, err := store.Open(ctx, u, store.Options{MaxConns: 10})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	cache, err := policy.NewCache(st, policy.CacheConfig{Size: size, TTL: time.Hour, NegativeSize: 1000,
		NegativeTTL: time.Minute, MaxStaleness: time.Hour, StoreTimeout: 2 * time.Second}, time.Now, nil)
	if err != nil {
		b.Fatal(err)
	}
	meter, err := credits.New(st, credits.DefaultConfig(), time.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	mctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { meter.Run(mctx); close(done) }()
	b.Cleanup(func() { stop(); <-done })
	return policy.NewDecider(cache, meter, time.Now, policy.EvalOptions{}), cache
}
