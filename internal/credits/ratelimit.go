package credits

import (
	"context"
	"math"
	"sync"
	"time"
)

// floorDemand is the demand (requests a second) every live replica is
// credited with on top of its own, so that one that has seen no traffic
// for a token yet still lets a request through, and reports demand the
// next interval rather than starving.
const floorDemand = 1.0

// bucket is one token's rate limit on this replica: a token bucket holding
// up to its share of the burst, refilled at its share of the rate. The
// share follows this replica's part of the fleet's demand for the token
// (reported through the store every ShareInterval); until that is known it
// is 1/n of n live replicas.
type bucket struct {
	mu    sync.Mutex
	rps   float64
	burst float64
	level float64
	last  int64 // unix nanoseconds of the last refill
	// frac is this replica's share of the limit; 0 until demand is known.
	frac float64
	// seen counts Checks since the last demand report; reported is set
	// when the last report included the token, so that one report of no
	// demand follows the end of traffic.
	seen     int64
	reported bool
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
	frac := b.frac
	if frac == 0 {
		frac = 1 / float64(replicas)
	}
	r, bu := float64(rps)*frac, math.Max(1, math.Ceil(float64(burst)*frac))
	if b.rps != r || b.burst != bu {
		b.rps, b.burst = r, bu
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
	b.seen++
	// A Check reads the clock before it takes the lock, so times arrive
	// out of order under load; the last refill only moves forward, or a
	// late time would credit the same interval twice.
	if t := now.UnixNano(); t > b.last {
		if b.last != 0 {
			b.level = math.Min(b.burst, b.level+float64(t-b.last)/1e9*b.rps)
		}
		b.last = t
	}
	if b.level >= 1 {
		b.level--
		return int64(b.level), 0, true
	}
	return 0, time.Duration((1 - b.level) / b.rps * 1e9), false
}

// shareDemand reports this replica's demand for each token it has rate
// limited since the last report, learns the fleet's, and sets each
// token's share to this replica's part of it:
//
//	share = (demand + floor) / (fleet demand + replicas × floor)
//
// Every replica computes the same denominator from the same reports, so
// the shares add up to the whole limit, and a replica that alone receives
// a token's traffic gets nearly all of it.
func (m *Meter) shareDemand(ctx context.Context, now time.Time) {
	elapsed := now.Sub(m.lastShare).Seconds()
	m.lastShare = now
	if elapsed <= 0 {
		return
	}
	demand := map[string]float64{}
	held := map[string]*bucket{}
	for _, id := range m.buckets.Keys() {
		b, ok := m.buckets.Peek(id)
		if !ok {
			continue
		}
		b.mu.Lock()
		if b.seen > 0 || b.reported {
			demand[id], held[id] = float64(b.seen)/elapsed, b
			b.reported, b.seen = b.seen > 0, 0
		}
		b.mu.Unlock()
	}
	if len(demand) == 0 && !m.sharing {
		return
	}
	m.sharing = len(demand) > 0
	sctx, cancel := context.WithTimeout(ctx, m.cfg.StoreTimeout)
	defer cancel()
	totals, err := m.store.ReportDemand(sctx, m.id, m.cfg.ReplicaTTL, demand)
	if err != nil {
		m.log.Warn("rate limits: reporting demand failed; keeping the last shares", "err", err)
		return
	}
	n := float64(max(m.replicas.Load(), 1))
	for id, b := range held {
		fleet := max(totals[id], demand[id])
		b.mu.Lock()
		b.frac = (demand[id] + floorDemand) / (fleet + n*floorDemand)
		b.mu.Unlock()
	}
}
