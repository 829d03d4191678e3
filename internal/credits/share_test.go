package credits_test

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/credits"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// TestShareFollowsDemand: without a fleet limiter, two replicas start
// with half a limit each; once the one that gets all of a token's traffic
// has reported its demand, it passes nearly the whole limit.
func TestShareFollowsDemand(t *testing.T) {
	db, _ := storetest.MustOpen(t, store.SQLite)
	cfg := credits.DefaultConfig()
	cfg.ReplicaTTL, cfg.ShareInterval = 300*time.Millisecond, 50*time.Millisecond
	var ms [2]*credits.Meter
	for i := range ms {
		m, err := credits.New(db, cfg, time.Now, quiet)
		if err != nil {
			t.Fatal(err)
		}
		ms[i] = m
		t.Cleanup(runMeter(m))
	}
	for i, m := range ms {
		for deadline := time.Now().Add(10 * time.Second); m.Replicas() != 2; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("replica %d counts %d replicas, want 2", i, m.Replicas())
			}
		}
	}
	const rps = 100
	p := rateLimited(t, rps, rps)
	// rate counts what passes through m in one second of steady demand
	// (a request a millisecond, ten times the limit).
	rate := func(m *credits.Meter) int {
		n := 0
		for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
			if settle(t, m, p, 1).Allow {
				n++
			}
		}
		return n
	}
	// A first second: the burst plus the rate, both split until the
	// demand is known, then the whole.
	rate(ms[0])
	if got := rate(ms[0]); got < rps*9/10 || got > rps*11/10 {
		t.Errorf("a second through the replica with all the demand: got %d, want 90%%-110%% of %d", got, rps)
	}
}
