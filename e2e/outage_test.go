package e2e_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/tollgate/tollgate/internal/policy"
)

// TestDatabaseOutage cuts the database away from running replicas (every
// connection reset, new ones refused) and restores it.
//
// Replica "outage-ttl" runs with a 1 s TTL, so after the restore its stale
// entry is re-read anyway. Replica "outage-catchup" runs with a 5 minute
// TTL: for it, only the change log (read on reconnect and on every resync)
// can deliver the change made while it was cut off.
func TestDatabaseOutage(t *testing.T) {
	t.Parallel()
	db, dbURL := MustOpenDB(t)
	acc := MustCreateAccount(t, db, "Outage Inc", false)
	tok, value := MustCreateToken(t, db, acc.ID, nil)
	c := call{Token: value}

	proxy := newPGProxy(t, postgresAddr(t, dbURL))
	viaProxy := proxy.url(t, dbURL)
	common := []string{"--negative-cache-ttl", "1s", "--store-timeout", "500ms", "--resync-interval", "1s"}
	ttl := startReplica(t, "outage-ttl", viaProxy, append([]string{"--cache-ttl", "1s", "--max-staleness", "1m"}, common...)...)
	catchup := startReplica(t, "outage-catchup", viaProxy, append([]string{"--cache-ttl", "5m", "--max-staleness", "10m"}, common...)...)
	replicas := []*replica{ttl, catchup}
	ageChangeLog(t, dbURL, replicas...)
	for _, r := range replicas {
		r.mustAllow(t, c)
	}
	warmed := time.Now()

	proxy.cut()
	cutAt := time.Now()
	for _, r := range replicas {
		r.mustAllow(t, c)
	}
	for _, r := range replicas {
		r.waitMetric(t, "tollgate_listener_connected", 5*time.Second, func(v float64) bool { return v == 0 }, "LISTEN down after the cut")
		t.Logf("%s: tollgate_listener_connected was 0 within %v of the cut", r.name, time.Since(cutAt).Round(time.Millisecond))
	}

	// Past the 1 s TTL, the stale entry is still served (max-staleness 1m).
	time.Sleep(time.Until(warmed.Add(1300 * time.Millisecond)))
	o := ttl.check(c, 5*time.Second)
	t.Logf("%s: cached token %v past its TTL with the database cut: %v", ttl.name, time.Since(warmed).Round(time.Millisecond), o)
	if !isAllowed(o) {
		t.Errorf("%s: cached token past its TTL during the outage: got %v, want allow (max-staleness 1m)", ttl.name, o)
	}
	if v, _ := ttl.metric(t, "tollgate_cache_stale_served_total"); v < 1 {
		t.Errorf("%s: tollgate_cache_stale_served_total got %v, want >= 1", ttl.name, v)
	}

	// An unknown but well-formed token must never pass while the store
	// cannot say whether it exists. (Which gRPC status it gets is
	// TestDatabaseOutageUnknownTokenIsUnavailable's business.)
	unknown := call{Token: unknownToken()}
	for _, r := range replicas {
		o := r.check(unknown, 5*time.Second)
		t.Logf("%s: unknown token with the database cut: %v", r.name, o)
		if o.Allowed || o.Bad != "" {
			t.Fatalf("%s: unknown token during the outage: got %v, want a gRPC error or a deny", r.name, o)
		}
	}

	// Disable the token directly on Postgres while the replicas cannot
	// hear of it.
	MustUpdateToken(t, db, tok.ID, func(tok *policy.Token) { tok.Enabled = false })
	time.Sleep(300 * time.Millisecond)

	// Restore, and watch each replica's answer from that moment.
	restoredAt := time.Now()
	flips, _ := measureFlips(t, replicas, c, 10*time.Second, func(*testing.T) { proxy.restore() }, deniedWith("token_disabled"))
	for i, r := range replicas {
		t.Logf("%s: the change made during the outage took effect %v after the restore", r.name, flips[i])
	}
	for _, r := range replicas {
		r.waitMetric(t, "tollgate_listener_connected", 10*time.Second, func(v float64) bool { return v == 1 }, "LISTEN back after the restore")
		t.Logf("%s: LISTEN reconnected within %v of the restore", r.name, time.Since(restoredAt).Round(time.Millisecond))
		if v, _ := r.metric(t, "tollgate_listener_reconnects_total"); v < 1 {
			t.Errorf("%s: tollgate_listener_reconnects_total got %v, want >= 1", r.name, v)
		}
		if o := r.check(unknown, 5*time.Second); !o.denied("token_unknown") {
			t.Errorf("%s: unknown token after the restore: got %v, want deny token_unknown", r.name, o)
		}
	}
}

// TestDatabaseOutageUnknownTokenIsUnavailable checks the gRPC status of a
// Check Tollgate cannot decide because the store is unreachable: it must be
// UNAVAILABLE (the store is down: retry elsewhere, or apply
// failure_mode_allow), not INTERNAL (a bug in Tollgate).
func TestDatabaseOutageUnknownTokenIsUnavailable(t *testing.T) {
	t.Parallel()
	db, dbURL := MustOpenDB(t)
	proxy := newPGProxy(t, postgresAddr(t, dbURL))
	// Without the membership filter: with it, a made-up token is denied
	// (token_unknown) on the filter's word even with the store cut, and
	// there is nothing left to report the status of.
	r := startReplica(t, "outage-status", proxy.url(t, dbURL), "--store-timeout", "500ms", "--membership-filter=false")
	acc := MustCreateAccount(t, db, "Status Co", false)
	_, value := MustCreateToken(t, db, acc.ID, nil)
	r.mustAllow(t, call{Token: value}) // the pool now holds a connection

	proxy.cut()
	for i := range 3 {
		o := r.check(call{Token: unknownToken()}, 5*time.Second)
		if o.Allowed || o.GRPC != codes.Unavailable {
			t.Errorf("unknown token #%d with the database cut: got %v, want gRPC error Unavailable", i, o)
		}
	}
}

// TestDatabaseOutageMadeUpTokenIsDenied: with the membership filter in
// force, a made-up token is denied (token_unknown) with the store cut,
// rather than answered with an error that failure_mode_allow would turn
// into an allow; within filter-miss-lookups its look-up is still tried.
func TestDatabaseOutageMadeUpTokenIsDenied(t *testing.T) {
	t.Parallel()
	db, dbURL := MustOpenDB(t)
	// The token exists before the replica starts, so its filter holds it:
	// one made after could race the filter's load and be looked up past
	// the filter, which a loaded machine can time out (a token_unknown
	// CI once saw for this real token).
	acc := MustCreateAccount(t, db, "Filter Co", false)
	_, value := MustCreateToken(t, db, acc.ID, nil)
	proxy := newPGProxy(t, postgresAddr(t, dbURL))
	r := startReplica(t, "outage-filter", proxy.url(t, dbURL), "--store-timeout", "500ms")
	r.waitMetric(t, "tollgate_filter_loaded", 10*time.Second, func(v float64) bool { return v == 1 }, "membership filter in force")
	r.mustAllow(t, call{Token: value})

	proxy.cut()
	for i := range 3 {
		if o := r.check(call{Token: unknownToken()}, 5*time.Second); !o.denied("token_unknown") {
			t.Errorf("made-up token #%d with the database cut: got %v, want deny token_unknown", i, o)
		}
	}
}

// TestMaxStaleness checks the bound on serving from the cache during an
// outage: with --max-staleness 2s, a policy cached more than 2 s ago is no
// longer used, and the Check fails rather than allows.
func TestMaxStaleness(t *testing.T) {
	t.Parallel()
	db, dbURL := MustOpenDB(t)
	acc := MustCreateAccount(t, db, "Stale Ltd", false)
	_, value := MustCreateToken(t, db, acc.ID, nil)
	c := call{Token: value}
	proxy := newPGProxy(t, postgresAddr(t, dbURL))
	r := startReplica(t, "staleness", proxy.url(t, dbURL),
		"--cache-ttl", "1s", "--max-staleness", "2s", "--store-timeout", "500ms", "--resync-interval", "1s")
	ageChangeLog(t, dbURL, r)

	r.mustAllow(t, c)
	warmed := time.Now()
	proxy.cut()

	time.Sleep(time.Until(warmed.Add(1300 * time.Millisecond)))
	if o := r.check(c, 5*time.Second); !isAllowed(o) {
		t.Errorf("1.3s after loading (TTL 1s, max-staleness 2s): got %v, want allow", o)
	}
	time.Sleep(time.Until(warmed.Add(2300 * time.Millisecond)))
	for range 5 {
		o := r.check(c, 5*time.Second)
		t.Logf("%v after loading, past max-staleness: %v", time.Since(warmed).Round(time.Millisecond), o)
		if o.Allowed || o.GRPC == codes.OK {
			t.Fatalf("%v after loading (max-staleness 2s): got %v, want a gRPC error", time.Since(warmed), o)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestResyncDoesNotEvictUnchangedTokens checks that the periodic change-log
// resync evicts only what changed since it last looked. A token created (or
// edited) shortly before must stay cached: re-evicting it on every resync
// costs a store query per resync per token and, if the database then goes
// away, leaves nothing to serve from the cache.
func TestResyncDoesNotEvictUnchangedTokens(t *testing.T) {
	t.Parallel()
	db, dbURL := MustOpenDB(t)
	proxy := newPGProxy(t, postgresAddr(t, dbURL))
	r := startReplica(t, "resync", proxy.url(t, dbURL), "--resync-interval", "200ms", "--store-timeout", "500ms")
	r.waitMetric(t, "tollgate_listener_connected", 5*time.Second, func(v float64) bool { return v == 1 }, "LISTEN up")
	created, _ := r.metric(t, "tollgate_invalidations_total")
	acc := MustCreateAccount(t, db, "Resync SA", false)
	_, value := MustCreateToken(t, db, acc.ID, nil)
	c := call{Token: value}
	// The new keys (the account's secret token's and this token's) are
	// announced too; let that land before the token is cached, or it
	// evicts the first load (a real change, not a resync).
	r.waitMetric(t, "tollgate_invalidations_total", 5*time.Second, func(v float64) bool { return v >= created+2 }, "creation announced")

	// The first load prepares the look-up on a fresh connection through the
	// proxy, on a loaded machine; what is measured starts once it is in.
	r.mustWarm(t, c)
	before, _ := r.metric(t, "tollgate_cache_misses_total")
	for range 20 { // 1 s: five resyncs
		r.mustAllow(t, c)
		time.Sleep(50 * time.Millisecond)
	}
	after, _ := r.metric(t, "tollgate_cache_misses_total")
	if after != before {
		t.Errorf("tollgate_cache_misses_total rose by %v over 1 s of Checks on an unchanged, cached token; want 0", after-before)
	}

	// Cut the database right after a resync: whatever it evicted is gone
	// when the outage starts. (With nothing re-evicted, no resync counts
	// an invalidation and the cut comes after 600 ms.)
	inv, _ := r.metric(t, "tollgate_invalidations_total")
	for start := time.Now(); time.Since(start) < 600*time.Millisecond; time.Sleep(5 * time.Millisecond) {
		if v, _ := r.metric(t, "tollgate_invalidations_total"); v != inv {
			break
		}
	}
	proxy.cut()
	if o := r.check(c, 5*time.Second); !isAllowed(o) {
		t.Errorf("cached, unchanged token right after a resync, with the database cut: got %v, want allow", o)
	}
}
