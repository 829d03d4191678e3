package anomaly_test

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/anomaly"
	"github.com/tollgate/tollgate/internal/policy"
)

// BenchmarkRecorderDecide measures what counting adds to a decision: the
// wrapped decider answers at once, so the time and allocations are the
// recorder's, over 10,000 tokens from browsers with a Referer.
func BenchmarkRecorderDecide(b *testing.B) {
	allow := decider{func(req *policy.Request) policy.Decision {
		return policy.Decision{Allow: true, TokenID: req.Token, AccountID: "acc_bench", Kind: policy.Publishable}
	}}
	now := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	r, err := anomaly.NewRecorder(allow, nil, anomaly.DefaultRecorderConfig(), func() time.Time { return now }, quiet)
	if err != nil {
		b.Fatal(err)
	}
	reqs := make([]policy.Request, 10_000)
	for i := range reqs {
		reqs[i] = policy.Request{Token: fmt.Sprintf("tok_%012d", i), IP: netip.AddrFrom4([4]byte{203, 0, byte(i % 7), 9}),
			Referer: fmt.Sprintf("https://site%d.example.com/page?q=1", i%5), FromBrowser: true}
	}
	// Warm the window, as a replica that has seen these tokens this minute.
	for i := range reqs {
		r.Decide(context.Background(), &reqs[i])
	}
	var next atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			i := next.Add(1) % uint64(len(reqs))
			r.Decide(ctx, &reqs[i])
		}
	})
}
