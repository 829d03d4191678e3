package store_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// BenchmarkCacheMisses warms a cache from Postgres, 64 misses at a time
// for different tokens (a replica warming up): each a query of its own
// (single), or gathered into batches (batched). It reports misses/s.
func BenchmarkCacheMisses(b *testing.B) {
	db, _ := storetest.MustOpen(b, store.Postgres)
	ctx := context.Background()
	a := &policy.Account{Name: "Acme"}
	if _, _, err := db.CreateAccount(ctx, a); err != nil {
		b.Fatal(err)
	}
	const tokens = 2000
	hs := make([]policy.Hash, tokens)
	for i := range hs {
		v, err := db.CreateToken(ctx, policy.NewToken(a.ID, policy.Publishable))
		if err != nil {
			b.Fatal(err)
		}
		hs[i] = policy.HashValue(v)
	}
	for _, c := range []struct {
		name  string
		store policy.Store
	}{{"single", struct{ policy.Store }{db}}, {"batched", db}} {
		b.Run(c.name, func(b *testing.B) {
			var next atomic.Int64
			var cache *policy.Cache
			fresh := func() {
				var err error
				cache, err = policy.NewCache(c.store, policy.CacheConfig{Size: tokens, TTL: time.Hour, NegativeSize: 10,
					NegativeTTL: time.Minute, MaxStaleness: time.Hour, StoreTimeout: 5 * time.Second}, time.Now, nil)
				if err != nil {
					b.Fatal(err)
				}
			}
			fresh()
			b.SetParallelism(32) // 64 on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := next.Add(1) % tokens
					if _, err := cache.Get(ctx, hs[i]); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(cache.Stats().Misses)/b.Elapsed().Seconds(), "misses/s")
		})
	}
}
