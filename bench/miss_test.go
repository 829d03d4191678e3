package bench

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/server"
)

// BenchmarkServerMisses is the cold path through the whole server in
// process (server.New on Postgres, as tollgate serve runs it, with the
// membership filter loaded and the meter writing usage): b.N plain tokens
// never seen before, each sent once over loopback gRPC by Workers()
// closed-loop clients, so every Check is a cache miss and a token the
// meter has not met. Seeding and start-up are outside the timer.
//
// It reports misses/s and the p99 latency of the timed part, and the CPU
// per miss of the process (server and client: the CPU profile separates
// them) and of Postgres (the miss queries, and the usage, minutes and
// sightings written for the new tokens) until what the misses left to
// write is written, waited for after the timer stops. Use a fixed count
// (-benchtime 20000x) so that runs compare:
//
//	go test -run '^$' -bench ServerMisses -benchtime 20000x -count 5 -cpuprofile cpu.prof ./bench/
//
// The database holds the same number of tokens for every b.N up to
// missSeed, so that two runs under callgrind (N and 2N misses) differ by
// the misses alone. BENCH_ANOMALY=off runs the server without anomaly
// flags (and does not wait for their minutes), to show what the anomaly
// recorder's writes add per miss.
func BenchmarkServerMisses(b *testing.B) {
	u, toks := seedForProfile(b, max(b.N, missSeed)+signedEnd)
	pool := plainValues(toks, b.N)
	cfg := server.DefaultConfig()
	cfg.Listen.GRPC, cfg.Listen.HTTP, cfg.Listen.Metrics, cfg.Store.URL = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", u
	cfg.ExtAuthz.TrustedHops = 1
	cfg.Cache.Size = max(cfg.Cache.Size, b.N)
	// The usage minutes and sightings of the misses are written within
	// the wait below (the default writes every 10 s).
	cfg.Anomaly.Recorder.FlushInterval = time.Second
	cfg.Anomaly.On = os.Getenv("BENCH_ANOMALY") != "off"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := server.New(ctx, cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	p := &Proc{Name: "tollgate", MetricsAddr: s.MetricsAddr().String(), web: httpClient, webScheme: "http"}
	for _, series := range []string{"tollgate_listener_connected", "tollgate_filter_loaded"} {
		if err := p.WaitMetric(ctx, series, 30*time.Second, func(v float64) bool { return v == 1 }); err != nil {
			b.Fatal(err)
		}
	}
	t, err := Dial("tollgate", s.GRPCAddr().String(), 2)
	if err != nil {
		b.Fatal(err)
	}
	defer t.Close()
	pg, pgName := openPostgres(b, u)
	m0, err := p.Metrics(ctx)
	if err != nil {
		b.Fatal(err)
	}
	pg0, err := snapshotPostgres(ctx, pg, pgName)
	if err != nil {
		b.Fatal(err)
	}
	cpu0 := selfCPU()
	b.ReportAllocs()
	b.ResetTimer()
	r, err := ClosedLoop(ctx, t, NewSweep(pool), Workers(), 2*time.Hour, b.N, nil, true, 0)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if r.Errors+r.Wrong > 0 {
		b.Fatalf("%d errors, %d wrong answers: %v", r.Errors, r.Wrong, r.Codes)
	}
	// What Postgres does for these misses includes writing their usage:
	// wait for the meter to write it all (two flushes after the backlog
	// is empty).
	waitMetric(b, p, "tollgate_usage_backlog_rows", func(v float64) bool { return v == 0 })
	m1, err := p.Metrics(ctx)
	if err != nil {
		b.Fatal(err)
	}
	flushes := m1["tollgate_credits_flushes_total"]
	waitMetric(b, p, "tollgate_credits_flushes_total", func(v float64) bool { return v >= flushes+2 })
	// And for the anomaly recorder to write every token's minute (and its
	// sightings, in the same transaction).
	for deadline := time.Now().Add(10 * time.Minute); os.Getenv("BENCH_ANOMALY") != "off"; time.Sleep(250 * time.Millisecond) {
		var n int
		if err := pg.QueryRowContext(ctx, `SELECT COUNT(DISTINCT token_id) FROM usage_minutes`).Scan(&n); err != nil {
			b.Fatal(err)
		}
		if n >= b.N {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("the usage minutes of %d tokens of %d written 10 minutes after the run", n, b.N)
		}
	}
	cpu := selfCPU() - cpu0
	pg1, err := snapshotPostgres(ctx, pg, pgName)
	if err != nil {
		b.Fatal(err)
	}
	if misses := int(m1["tollgate_cache_misses_total"] - m0["tollgate_cache_misses_total"]); misses != b.N {
		b.Fatalf("got %d cache misses, want %d", misses, b.N)
	}
	b.ReportMetric(float64(b.N)/r.Elapsed.Seconds(), "misses/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "proc-cpu-µs/miss")
	b.ReportMetric(float64(pg1.since(pg0).Microseconds())/float64(b.N), "pg-cpu-µs/miss")
	b.ReportMetric(float64(r.Pct(99).Microseconds())/1000, "p99-ms")
}

// BenchmarkColdDecides is BenchmarkColdDecide with Workers() concurrent
// callers, as a warming replica sees them: concurrent misses for
// different tokens, batched into shared queries, each also the meter's
// first sight of its token. No gRPC and no client, so the process's CPU
// per miss is Tollgate's decision path alone.
func BenchmarkColdDecides(b *testing.B) {
	u, toks := seedForProfile(b, b.N+signedEnd)
	pool := plainValues(toks, b.N)
	ctx := context.Background()
	d, cache := coldDecider(b, u, max(b.N, 1000))
	clientIP := netip.MustParseAddr("203.0.113.7") // within the IP-restricted tokens' range
	reqs := make([]policy.Request, len(pool))
	for i, v := range pool {
		reqs[i] = policy.Request{Token: v, Referer: goodReferer, IP: clientIP, API: "data", Dataset: "prices",
			Tier: policy.TierCore, Action: policy.Read, Cost: 1}
	}
	var (
		mu   sync.Mutex
		next int
	)
	take := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		next++
		return next - 1, next <= len(reqs)
	}
	cpu0 := selfCPU()
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for range Workers() {
		wg.Go(func() {
			for i, ok := take(); ok; i, ok = take() {
				dec, err := d.Decide(ctx, &reqs[i])
				if err != nil || !dec.Allow {
					b.Errorf("decide: %+v %v", dec, err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	cpu := selfCPU() - cpu0
	if got := cache.Stats().Misses; got != uint64(b.N) {
		b.Fatalf("got %d cache misses, want %d", got, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "misses/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/miss")
}

// waitMetric polls p's /metrics every 250 ms, for up to a minute, until
// series satisfies cond: rarely, since each read costs the process (and
// callgrind's count) a /metrics scrape.
func waitMetric(b *testing.B, p *Proc, series string, cond func(float64) bool) {
	b.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(250 * time.Millisecond) {
		m, err := p.Metrics(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if cond(m[series]) {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: %v a minute later", series, m[series])
		}
	}
}

// missSeed is the fewest tokens BenchmarkServerMisses seeds.
const missSeed = 10_000

// plainValues returns the values of the first n tokens of toks without
// credits or signatures: a miss is then the token's query, its policy and
// the meter's first count of it.
func plainValues(toks []Token, n int) []string {
	var out []string
	for _, t := range toks {
		if len(out) < n && (t.Class == classWeb || t.Class == classWebIP) {
			out = append(out, t.Value)
		}
	}
	return out
}

// openPostgres opens the database at u for reading pg_stat_activity, and
// returns its name.
func openPostgres(b *testing.B, u string) (*sql.DB, string) {
	b.Helper()
	parsed, err := url.Parse(u)
	if err != nil {
		b.Fatal(err)
	}
	db, err := sql.Open("postgres", u)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db, strings.TrimPrefix(parsed.Path, "/")
}
