package policy_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
)

// TestCacheMemoryPerToken fills a cache and measures the live heap each
// cached token costs, for tokens with no list restrictions, with the same
// restrictions (shared), and each with their own. The target for a cached
// token is at most 1 KiB.
func TestCacheMemoryPerToken(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a cache of 20,000 tokens")
	}
	const n = 20_000
	for _, c := range []struct {
		name  string
		lists func(i int, tok *policy.Token)
		limit float64 // bytes per token this kind must stay under
	}{
		{"no lists", func(int, *policy.Token) {}, 1024},
		{"shared lists", func(_ int, tok *policy.Token) {
			tok.Domains = []string{"app.example.com", "*.example.org"}
			tok.IPs = []string{"203.0.113.0/24", "2001:db8::/32"}
			tok.Datasets = map[string]policy.Actions{"prices": policy.Actions(policy.Read), "sales.*": policy.Actions(policy.Read)}
		}, 1024},
		{"own lists", func(i int, tok *policy.Token) {
			tok.Domains = []string{fmt.Sprintf("app%d.example.com", i), "*.example.org"}
			tok.IPs = []string{"203.0.113.0/24", "2001:db8::/32"}
			tok.Datasets = map[string]policy.Actions{fmt.Sprintf("prices%d", i): policy.Actions(policy.Read), "sales.*": policy.Actions(policy.Read)}
		}, 2048},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newFakeStore()
			hashes := make([]policy.Hash, n)
			for i := range n {
				tok := policy.NewToken(fmt.Sprintf("acc_%015d", i/1000), policy.Publishable)
				c.lists(i, tok)
				if err := tok.Normalize(); err != nil {
					t.Fatal(err)
				}
				hashes[i] = policy.HashValue(s.add(tok))
			}
			cfg := testCacheConfig()
			cfg.Size, cfg.TTL, cfg.MaxStaleness = n, time.Hour, time.Hour
			before := liveHeap()
			cache, err := policy.NewCache(s, cfg, time.Now, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range hashes {
				if _, err := cache.Get(context.Background(), h); err != nil {
					t.Fatal(err)
				}
			}
			per := float64(liveHeap()-before) / n
			runtime.KeepAlive(cache)
			t.Logf("%s: %.0f bytes of live heap per cached token", c.name, per)
			if per > c.limit {
				t.Errorf("%s: %.0f bytes per cached token, want at most %.0f", c.name, per, c.limit)
			}
		})
	}
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
