package credits

import (
	"math"
	"sync"
	"time"
)

// bucket is one token's rate limit on this replica: a token bucket holding
// up to burst requests, refilled at rps a second. With n replicas each
// holds 1/n of the rate and burst, so the token's total stays near its
// limit however Envoy spreads its traffic.
type bucket struct {
	mu     sync.Mutex
	rps    float64
	burst  float64
	level  float64
	last   int64 // unix nanoseconds of the last refill
	shares int64 // the replica count the rate was split for
}

// bucket returns the token's bucket, made or re-split as needed.
func (m *Meter) bucket(tokenID string, rps, burst, replicas int64) *bucket {
	b, ok := m.buckets.Get(tokenID)
	if !ok {
		b = &bucket{level: -1}
		if prev, found, _ := m.buckets.PeekOrAdd(tokenID, b); found {
			b = prev
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	r, bu := float64(rps)/float64(replicas), math.Max(1, math.Ceil(float64(burst)/float64(replicas)))
	if b.rps != r || b.burst != bu {
		b.rps, b.burst, b.shares = r, bu, replicas
		if b.level < 0 || b.level > bu {
			b.level = bu
		}
	}
	return b
}

// take spends one request. It returns what is left, and when refused, how
// long until one request is allowed again.
func (b *bucket) take(now time.Time) (left int64, wait time.Duration, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := now.UnixNano()
	if b.last != 0 && t > b.last {
		b.level = math.Min(b.burst, b.level+float64(t-b.last)/1e9*b.rps)
	}
	b.last = t
	if b.level >= 1 {
		b.level--
		return int64(b.level), 0, true
	}
	return 0, time.Duration((1 - b.level) / b.rps * 1e9), false
}
