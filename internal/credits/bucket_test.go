package credits

import (
	"testing"
	"time"
)

// TestBucketTimesOutOfOrder: a Check reads the clock before it takes the
// bucket's lock, so under load the bucket sees times out of order. A late
// time must not move the last refill back, which would credit the same
// interval twice: over any stretch the bucket passes at most its burst
// plus its rate times the stretch.
func TestBucketTimesOutOfOrder(t *testing.T) {
	base := time.Unix(1_000, 0)
	at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	b := &bucket{rps: 10, burst: 1, level: 1}
	// A request every 10 ms for a second, each pair arriving swapped:
	// 10, 0, 30, 20, … — an order a loaded machine gives.
	allowed := 0
	for ms := 0; ms < 1000; ms += 20 {
		for _, t := range []int{ms + 10, ms} {
			if _, _, ok := b.take(at(t)); ok {
				allowed++
			}
		}
	}
	// 1 of burst + 10 a second for the 1 s the times span.
	if max := 1 + 10; allowed > max {
		t.Errorf("allowed %d requests in a second at 10 rps with a burst of 1, want at most %d", allowed, max)
	}
	if allowed < 10 {
		t.Errorf("allowed %d, want about the rate (10): a late time must not starve the bucket either", allowed)
	}
}
