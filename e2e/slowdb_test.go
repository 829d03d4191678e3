package e2e_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/tollgate/tollgate/internal/policy"
)

// TestSlowDatabase puts 300 ms of latency on every answer from Postgres.
// Cached tokens must not notice; a miss must fail at --store-timeout
// (200 ms) with a gRPC error instead of waiting for the database.
func TestSlowDatabase(t *testing.T) {
	t.Parallel()
	db, dbURL := MustOpenDB(t)
	acc := MustCreateAccount(t, db, "Slow Corp", false)
	_, cachedValue := MustCreateToken(t, db, acc.ID, nil)
	var missValues []string
	for range 5 {
		_, v := MustCreateToken(t, db, acc.ID, nil)
		missValues = append(missValues, v)
	}
	proxy := newPGProxy(t, postgresAddr(t, dbURL))
	r := startReplica(t, "slow", proxy.url(t, dbURL), "--store-timeout", "200ms")
	cached := call{Token: cachedValue}
	r.mustWarm(t, cached)

	proxy.setLatency(300 * time.Millisecond)

	// Misses on real (but uncached) tokens run alongside, so the cached
	// path is measured while look-ups are stuck on the database.
	var wg sync.WaitGroup
	misses := make([]outcome, len(missValues))
	for i, v := range missValues {
		wg.Go(func() { misses[i] = r.check(call{Token: v}, 5*time.Second) })
	}

	// 100 Checks, 25 ms apart: 2.5 s, so that background writes (the
	// credits flush, every 2 s) fall within the measurement.
	var took []time.Duration
	for range 100 {
		o := r.check(cached, 5*time.Second)
		if !isAllowed(o) {
			t.Fatalf("cached token with a slow database: got %v, want allow", o)
		}
		took = append(took, o.Took)
		time.Sleep(25 * time.Millisecond)
	}
	wg.Wait()

	sorted := slices.Sorted(slices.Values(took))
	p50, p99, worst := sorted[len(sorted)/2], sorted[len(sorted)*99/100], sorted[len(sorted)-1]
	t.Logf("cached Check with 300 ms database latency: p50 %v, p99 %v, max %v (%d Checks over 2.5 s)", p50, p99, worst, len(took))

	t.Run("cached Check p50 stays low", func(t *testing.T) {
		if p50 >= 50*time.Millisecond {
			t.Errorf("cached Check p50 got %v, want < 50ms", p50)
		}
	})

	t.Run("no cached Check waits on the database", func(t *testing.T) {
		// One database round trip is 300 ms: a Check slower than 250 ms
		// waited on the database although its policy was cached.
		for i, d := range took {
			if d >= 250*time.Millisecond {
				t.Errorf("cached Check #%d (%v into the run) took %v, want < 250ms (no store round trip on a cache hit)",
					i, sumDurations(took[:i])+time.Duration(i)*25*time.Millisecond, d)
			}
		}
	})

	t.Run("a miss fails at store-timeout with a gRPC error", func(t *testing.T) {
		var missTook []time.Duration
		for i, o := range misses {
			missTook = append(missTook, o.Took)
			switch {
			case o.Allowed || o.Bad != "":
				t.Errorf("miss #%d with store-timeout 200ms and 300ms latency: got %v, want a gRPC error", i, o)
			case o.GRPC == codes.OK:
				t.Errorf("miss #%d: got %v, want a gRPC error (Tollgate could not decide)", i, o)
			case o.GRPC != codes.Unavailable:
				t.Errorf("miss #%d: got %v, want gRPC Unavailable", i, o)
			}
			if o.Took > 1500*time.Millisecond {
				t.Errorf("miss #%d took %v, want about 1s at most (store-timeout 200ms)", i, o.Took)
			}
		}
		slices.Sort(missTook)
		t.Logf("%d concurrent misses with store-timeout 200ms: fastest %v, median %v, slowest %v; first: %v",
			len(misses), missTook[0], missTook[len(missTook)/2], missTook[len(missTook)-1], misses[0])
	})

	proxy.setLatency(0)
	r.waitOutcome(t, call{Token: missValues[0]}, 5*time.Second, "miss once the database is fast again", isAllowed)
}

func sumDurations(ds []time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum
}

// TestStalledDatabase stalls the connection to Postgres: nothing is
// reset, nothing comes back (a network partition, a frozen primary). Every
// wait on the database must still end at its deadline.
func TestStalledDatabase(t *testing.T) {
	t.Parallel()
	db, dbURL := MustOpenDB(t)
	acc := MustCreateAccount(t, db, "Stall GmbH", false)
	_, cachedValue := MustCreateToken(t, db, acc.ID, nil)
	_, missValue := MustCreateToken(t, db, acc.ID, nil)
	tok, revokedValue := MustCreateToken(t, db, acc.ID, nil)

	proxy := newPGProxy(t, postgresAddr(t, dbURL))
	// The pool goes through the proxy; LISTEN goes straight to Postgres,
	// as with a transaction pooler in front of the pool. The credits flush
	// is pushed out of the way: TestSlowDatabase covers its effect on
	// cached Checks, and here it would hide what is measured.
	r := startReplica(t, "stalled", proxy.url(t, dbURL),
		"--listen-database-url", dbURL, "--store-timeout", "200ms", "--resync-interval", "300ms",
		"--usage-flush-interval", "1h")
	cached, revoked := call{Token: cachedValue}, call{Token: revokedValue}
	r.mustWarm(t, cached)
	r.mustWarm(t, revoked)
	r.waitMetric(t, "tollgate_listener_connected", 5*time.Second, func(v float64) bool { return v == 1 }, "LISTEN up")

	proxy.stall()
	t.Cleanup(proxy.restore)

	t.Run("cached token stays fast", func(t *testing.T) {
		// 1 s of Checks, over several resyncs that cannot finish.
		var slow int
		var first outcome
		for start := time.Now(); time.Since(start) < time.Second; time.Sleep(50 * time.Millisecond) {
			o := r.check(cached, time.Second)
			if !isAllowed(o) || o.Took > 100*time.Millisecond {
				if slow == 0 {
					first = o
					t.Logf("first slow or failed cached Check %v into the stall: %v (took %v)", time.Since(start).Round(time.Millisecond), o, o.Took)
				}
				slow++
			}
		}
		if slow > 0 {
			t.Errorf("%d cached Checks with the database stalled were slow or failed, first: %v; want allow in < 100ms (cached, max-staleness 15m)", slow, first)
		}
	})

	t.Run("miss fails at store-timeout", func(t *testing.T) {
		o := r.check(call{Token: missValue}, 3*time.Second)
		t.Logf("miss with the database stalled (store-timeout 200ms, client deadline 3s): %v", o)
		if o.Allowed {
			t.Fatalf("miss with the database stalled: got %v, want a gRPC error", o)
		}
		if o.GRPC != codes.Unavailable || o.Took > time.Second {
			t.Errorf("miss with the database stalled: got %v, want gRPC Unavailable from Tollgate within 1s (store-timeout 200ms), not the caller's deadline", o)
		}
	})

	t.Run("revocation still applies", func(t *testing.T) {
		// A resync is due every 300 ms and cannot finish while the pool is
		// stalled. The notification of this change still arrives, on the
		// direct LISTEN connection, and needs no query to evict.
		time.Sleep(500 * time.Millisecond)
		flips, _ := measureFlips(t, []*replica{r}, revoked, 2*time.Second, func(t *testing.T) {
			MustUpdateToken(t, db, tok.ID, func(tok *policy.Token) { tok.Enabled = false })
		}, func(o outcome) bool { return !o.Allowed })
		t.Logf("revocation with the pool stalled and LISTEN up: the token stopped passing after %v", flips[0])
		if flips[0] < 0 || flips[0] >= revocationBound {
			t.Errorf("revocation with the pool stalled: took %v, want < %v", flips[0], revocationBound)
		}
	})

	t.Run("recovers when the stall ends", func(t *testing.T) {
		proxy.restore()
		r.waitOutcome(t, call{Token: missValue}, 5*time.Second, "miss after the stall", isAllowed)
		r.waitOutcome(t, revoked, 5*time.Second, "revocation after the stall", deniedWith("token_disabled"))
	})
}
