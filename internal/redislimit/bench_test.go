package redislimit_test

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/credits"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/redislimit/redistest"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// BenchmarkSettle is the meter's part of one Check, for a token without a
// rate limit, with one checked by this replica's share (no Redis), with
// one checked in Redis (one round trip each), and with one Redis has
// refused (answered from the local over-the-limit memory).
func BenchmarkSettle(b *testing.B) {
	db, _ := storetest.MustOpen(b, store.SQLite)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		name       string
		rps, burst int64 // 0: no limit
		redis      bool
		allow      bool // every Check passes (else: most are refused)
	}{
		{"no-limit", 0, 0, false, true},
		{"share-limit", 1_000_000, 10_000_000, false, true},
		{"redis-limit", 1_000_000, 10_000_000, true, true},
		{"redis-limit-spent", 1, 1, true, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := credits.DefaultConfig()
			if tc.redis {
				cfg.Limiter, cfg.LimiterTimeout = redistest.MustOpen(b, redistest.Prefix(b)), time.Second
			}
			m, err := credits.New(db, cfg, time.Now, quiet)
			if err != nil {
				b.Fatal(err)
			}
			acc := &policy.Account{ID: policy.NewID("acc")}
			tok := policy.NewToken(acc.ID, policy.Publishable)
			if tc.rps > 0 {
				tok.RateLimit = &policy.RateLimit{RPS: tc.rps, Burst: tc.burst}
			}
			if err := tok.Normalize(); err != nil {
				b.Fatal(err)
			}
			p, err := policy.Compile(tok, acc, nil)
			if err != nil {
				b.Fatal(err)
			}
			d := policy.Decision{Allow: true, Cost: 1, TokenID: p.TokenID, AccountID: p.AccountID, Kind: p.Kind()}
			ctx := context.Background()
			if !tc.allow {
				m.Settle(ctx, p, d) // spends the burst of 1
			}
			b.ReportAllocs()
			// Many Checks in flight, as under load: a round trip's wait is
			// then overlapped, and cpu-ns/op (this process's CPU time, user
			// and system, per Check) is the cost that matters for sizing.
			b.SetParallelism(16)
			// Dial the pool first: connections are made once, not per Check.
			var wg sync.WaitGroup
			for range 32 {
				wg.Go(func() { m.Settle(ctx, p, d) })
			}
			wg.Wait()
			before := cpuTime(b)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					got, err := m.Settle(ctx, p, d)
					// A spent token passes again once a second: Redis is asked then.
					if err != nil || (got.Allow != tc.allow && tc.allow) {
						b.Errorf("got allow=%t err=%v, want allow=%t", got.Allow, err, tc.allow)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(cpuTime(b)-before)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime returns the process's CPU time so far, user and system.
func cpuTime(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkReplayRemember is the replay memory's part of an allowed signed
// Check: this replica's ReplayCache alone, and with Redis behind it
// (policy.ReplayFallback: the local insert, then one SET NX round trip).
func BenchmarkReplayRemember(b *testing.B) {
	for _, fleet := range []bool{false, true} {
		name := "local"
		if fleet {
			name = "redis"
		}
		b.Run(name, func(b *testing.B) {
			local, err := policy.NewReplayCache(policy.ReplayConfig{Size: 10_000_000, PerToken: 10_000_000}, time.Now)
			if err != nil {
				b.Fatal(err)
			}
			var store policy.ReplayStore = local
			if fleet {
				if store, err = policy.NewReplayFallback(redistest.MustOpen(b, redistest.Prefix(b)), local,
					policy.ReplayFallbackConfig{Timeout: time.Second, Retry: time.Second}, time.Now, nil); err != nil {
					b.Fatal(err)
				}
			}
			var seq atomic.Uint64
			until := time.Now().Add(time.Minute)
			ctx := context.Background()
			b.ReportAllocs()
			b.SetParallelism(16)
			before := cpuTime(b)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var sig [32]byte
				for pb.Next() {
					binary.LittleEndian.PutUint64(sig[:], seq.Add(1))
					if fresh, err := store.Remember(ctx, "tok_bench", sig, until); err != nil || !fresh {
						b.Errorf("got fresh=%t err=%v, want fresh", fresh, err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(cpuTime(b)-before)/float64(b.N), "cpu-ns/op")
		})
	}
}
