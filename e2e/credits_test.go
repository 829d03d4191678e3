package e2e_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate/policy"
)

// flushInterval is the replicas' --usage-flush-interval in these tests:
// short, so that the usage history a killed replica loses is small.
const flushInterval = 200 * time.Millisecond

// meteredExt is a core data route that costs one credit, as Envoy's
// per-route check_settings send it.
func meteredExt() map[string]string {
	return map[string]string{"api": "data", "tier": "core", "cost": "1"}
}

// TestCreditsExactAcrossThreeReplicas hammers one token with a credit
// limit through three replicas on one database until every replica has
// refused it. Exactly the limit is allowed, every allow says where the
// caller stands, and after a graceful stop the books and the usage history
// add up to what was allowed.
func TestCreditsExactAcrossThreeReplicas(t *testing.T) {
	t.Parallel()
	const limit, block = 300, 20
	db, dbURL := MustOpenDB(t)
	acc := MustCreateAccount(t, db, "Metered Ltd", false)
	tok, value := MustCreateToken(t, db, acc.ID, func(tok *policy.Token) { tok.CreditLimit = ptrTo[int64](limit) })
	reps := startMeteredReplicas(t, dbURL, 3, "--credit-block", strconv.Itoa(block))

	tl := newCreditTally(len(reps), 1, limit, string(policy.CodeCreditsExhausted))
	took := hammerCredits(t, reps, []call{{Token: value, Ext: meteredExt()}}, 8, 20*time.Second, nil,
		func(int) bool { return tl.allRefused() }, tl.add)
	t.Logf("limit %d, block %d: %d allowed, %d refused in %v; allowed per replica %v",
		limit, block, tl.allowed, tl.refusals, took.Round(time.Millisecond), tl.allowedBy)
	tl.report(t)
	if tl.allowed != limit {
		t.Errorf("allowed across 3 replicas: got %d, want exactly the limit %d", tl.allowed, limit)
	}
	tl.checkUsedSlots(t, limit, true)

	stopGracefully(t, reps...)
	sqlDB := MustOpenSQL(t, dbURL)
	if got := reservedCredits(t, sqlDB, tok.ID); got != limit {
		t.Errorf("credit_usage.reserved of the token after a graceful stop: got %d, want %d", got, limit)
	}
	u := usageFromCLI(t, dbURL, tok.ID)
	t.Logf("tollgate usage: %d requests, %d credits, denials %v", u.Requests, u.Credits, u.Denials)
	if u.Requests != limit || u.Credits != limit {
		t.Errorf("tollgate usage: got %d requests and %d credits, want %d of each", u.Requests, u.Credits, limit)
	}
	if got, want := u.Denials[string(policy.CodeCreditsExhausted)], int64(tl.refusals); got != want {
		t.Errorf("tollgate usage credits_exhausted denials: got %d, want the %d refusals seen", got, want)
	}
}

// TestCreditsReplicaKilledMidRun kills one of three replicas (SIGKILL)
// once about a third of the limit is spent, and hammers the other two
// until both refuse. The token never spends more than its limit, and it
// loses at most the killed replica's unspent block.
func TestCreditsReplicaKilledMidRun(t *testing.T) {
	t.Parallel()
	const limit, block, victim = 600, 20, 0
	db, dbURL := MustOpenDB(t)
	acc := MustCreateAccount(t, db, "Crashy Ltd", false)
	tok, value := MustCreateToken(t, db, acc.ID, func(tok *policy.Token) { tok.CreditLimit = ptrTo[int64](limit) })
	reps := startMeteredReplicas(t, dbURL, 3, "--credit-block", strconv.Itoa(block))

	tl := newCreditTally(len(reps), 1, limit, string(policy.CodeCreditsExhausted))
	var (
		killed       atomic.Bool
		killAt       time.Time
		victimErrors atomic.Int64
		mu           sync.Mutex
		victimAllows []time.Time // when the victim's allows came back
	)
	// Paced until the kill, so that the victim has run for a while (and
	// flushed usage several times); then as fast as the survivors go.
	pace := func() time.Duration {
		if killed.Load() {
			return 0
		}
		return 60 * time.Millisecond
	}
	done := func(ri int) bool {
		if ri == victim {
			return killed.Load()
		}
		return tl.refused(1) && tl.refused(2)
	}
	see := func(ri, ci int, a answer) {
		if ri == victim && killed.Load() && a.GRPC != codes.OK {
			victimErrors.Add(1) // may have been allowed and counted there, unseen here
			return
		}
		if ri == victim && isAllowed(a.outcome) {
			mu.Lock()
			victimAllows = append(victimAllows, time.Now())
			mu.Unlock()
		}
		tl.add(ri, ci, a)
	}
	var killErr error
	killer := make(chan struct{})
	go func() {
		defer close(killer)
		for tl.allowedCount() < limit/3 {
			time.Sleep(5 * time.Millisecond)
		}
		killed.Store(true)
		mu.Lock()
		killAt = time.Now()
		mu.Unlock()
		killErr = reps[victim].cmd.Process.Signal(syscall.SIGKILL)
	}()
	took := hammerCredits(t, reps, []call{{Token: value, Ext: meteredExt()}}, 4, 30*time.Second, pace, done, see)
	<-killer
	if killErr != nil {
		t.Fatalf("SIGKILL %s: %v", reps[victim].name, killErr)
	}
	<-reps[victim].exited

	mu.Lock()
	victimRecent := 0 // allows the victim may have counted and not yet written
	for _, at := range victimAllows {
		if at.After(killAt.Add(-3 * flushInterval)) {
			victimRecent++
		}
	}
	victimSeen := len(victimAllows)
	mu.Unlock()
	lost := limit - tl.allowed
	t.Logf("limit %d, block %d: %d allowed (victim %d before the kill, per replica %v), %d refused, %d victim Checks failed at the kill; %d credits lost; %v",
		limit, block, tl.allowed, victimSeen, tl.allowedBy, tl.refusals, victimErrors.Load(), lost, took.Round(time.Millisecond))
	tl.report(t)
	if tl.allowed > limit {
		t.Errorf("allowed: got %d, want at most the limit %d", tl.allowed, limit)
	}
	// The victim's unspent block is lost; so are allows whose answers the
	// kill swallowed (each is one of the failed Checks).
	if maxLost := int(block + victimErrors.Load()); lost > maxLost {
		t.Errorf("credits lost to the kill: got %d, want at most one block (%d) plus the %d Checks cut off (%d)",
			lost, block, victimErrors.Load(), maxLost)
	}
	tl.checkUsedSlots(t, limit, false)

	stopGracefully(t, reps[1:]...)
	sqlDB := MustOpenSQL(t, dbURL)
	if got := reservedCredits(t, sqlDB, tok.ID); got != limit {
		t.Errorf("credit_usage.reserved after the survivors ran out and stopped: got %d, want %d (never more; the victim's block counts as used)", got, limit)
	}
	u := usageFromSQL(t, sqlDB, tok.ID)
	// The history lags by one flush: what the victim counted in its last
	// flush intervals before the kill is gone; allows the kill hid from us
	// may be there.
	lo, hi := int64(tl.allowed-victimRecent), int64(tl.allowed)+victimErrors.Load()
	t.Logf("usage_daily: %d requests, %d credits (seen allowed %d; bounds [%d, %d]: victim allowed %d in the last %v before the kill)",
		u.Requests, u.Credits, tl.allowed, lo, hi, victimRecent, 3*flushInterval)
	if u.Credits < lo || u.Credits > hi || u.Requests != u.Credits {
		t.Errorf("usage_daily after the kill: got %d requests, %d credits, want credits in [%d, %d] and requests equal to credits",
			u.Requests, u.Credits, lo, hi)
	}
}

// TestAccountQuotaAcrossReplicas spends an account's quota through two
// tokens without limits of their own on two replicas.
func TestAccountQuotaAcrossReplicas(t *testing.T) {
	t.Parallel()
	const quota, block = 200, 20
	db, dbURL := MustOpenDB(t)
	acc := &policy.Account{Name: "Quota Ltd", CreditQuota: ptrTo[int64](quota)}
	if _, _, err := db.CreateAccount(context.Background(), acc); err != nil {
		t.Fatalf("create account: %v", err)
	}
	tokA, valueA := MustCreateToken(t, db, acc.ID, nil)
	tokB, valueB := MustCreateToken(t, db, acc.ID, nil)
	reps := startMeteredReplicas(t, dbURL, 2, "--credit-block", strconv.Itoa(block))

	calls := []call{{Token: valueA, Ext: meteredExt()}, {Token: valueB, Ext: meteredExt()}}
	tl := newCreditTally(len(reps), len(calls), quota, string(policy.CodeQuotaExhausted))
	took := hammerCredits(t, reps, calls, 6, 20*time.Second, nil, func(int) bool { return tl.allRefused() }, tl.add)
	t.Logf("quota %d: %d allowed (per token %v, per replica %v), %d refused in %v",
		quota, tl.allowed, tl.allowedFor, tl.allowedBy, tl.refusals, took.Round(time.Millisecond))
	tl.report(t)
	if tl.allowed != quota {
		t.Errorf("allowed across 2 replicas and 2 tokens: got %d, want exactly the quota %d", tl.allowed, quota)
	}
	tl.checkUsedSlots(t, quota, true)

	stopGracefully(t, reps...)
	sqlDB := MustOpenSQL(t, dbURL)
	if got := reservedCredits(t, sqlDB, acc.ID); got != quota {
		t.Errorf("credit_usage.reserved of the account: got %d, want %d", got, quota)
	}
	for i, tok := range []*policy.Token{tokA, tokB} {
		if got, want := reservedCredits(t, sqlDB, tok.ID), int64(tl.allowedFor[i]); got != want {
			t.Errorf("credit_usage.reserved of token %d: got %d, want the %d it was allowed", i, got, want)
		}
	}
}

// TestUsageHistoryKeptWhenReplicasStopTogether uses several tokens on two
// replicas and stops both at once, as a scale-down or a rolling deploy
// does. Their last flushes of usage history run at the same time, and
// every allowed request and every denial must still be in the history:
// the README promises that a graceful stop loses nothing.
//
// To make the two flushes overlap every run rather than by chance, the
// test locks the tokens' rows (which each flush updates, for last_used_at)
// until both replicas' flushes wait on them, having written their first
// rows, then lets them go.
func TestUsageHistoryKeptWhenReplicasStopTogether(t *testing.T) {
	t.Parallel()
	const tokens, each = 64, 1 // allowed Checks per token per replica
	db, dbURL := MustOpenDB(t)
	acc := MustCreateAccount(t, db, "History Ltd", false)
	var ids []string
	var calls []call
	for range tokens {
		tok, value := MustCreateToken(t, db, acc.ID, func(tok *policy.Token) { tok.Domains = []string{"app.example.com"} })
		ids = append(ids, tok.ID)
		calls = append(calls, call{Token: value, Referer: "https://app.example.com/", Ext: meteredExt()})
	}
	// No periodic flush: everything is written by the last flush on SIGTERM.
	reps := []*replica{
		startReplica(t, "replica-a", dbURL, "--usage-flush-interval", "1h", "--deny-log-level", "debug"),
		startReplica(t, "replica-b", dbURL, "--usage-flush-interval", "1h", "--deny-log-level", "debug"),
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	for _, r := range reps {
		for _, c := range calls {
			wg.Go(func() {
				wrong := c
				wrong.Referer = "https://evil.example.net/"
				for i := range each + 1 {
					send, want := c, "allow"
					if i == each {
						send, want = wrong, string(policy.CodeRefererDenied)
					}
					if a := r.meteredCheck(send); (want == "allow") != isAllowed(a.outcome) || (want != "allow" && !a.denied(want)) {
						mu.Lock()
						bad = append(bad, fmt.Sprintf("%s: got %v, want %s", r.name, a.outcome, want))
						mu.Unlock()
					}
				}
			})
		}
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("Checks before the stop: %d wrong, first: %s", len(bad), bad[0])
	}

	sqlDB := MustOpenSQL(t, dbURL)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	hold, err := sqlDB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	if _, err := hold.ExecContext(ctx, `SELECT 1 FROM tokens WHERE account_id = $1 FOR UPDATE`, acc.ID); err != nil {
		t.Fatalf("lock the tokens' rows: %v", err)
	}
	for _, r := range reps {
		r.signal(t, syscall.SIGTERM)
	}
	waitUntil(t, 10*time.Second, "both replicas' last flushes waiting on the held rows", func() bool {
		var n int
		err := sqlDB.QueryRowContext(ctx, `SELECT COUNT(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
		return err == nil && n >= len(reps)
	})
	hold.Rollback()
	awaitExit(t, reps...)

	var lost, short int64
	for i, id := range ids {
		u := usageFromSQL(t, sqlDB, id)
		want := int64(len(reps) * each)
		if u.Requests != want || u.Credits != want || u.Denials[string(policy.CodeRefererDenied)] != int64(len(reps)) {
			if short++; short <= 3 {
				t.Errorf("usage of token %d: got %d requests, %d credits, denials %v, want %d, %d, referer_denied:%d",
					i, u.Requests, u.Credits, u.Denials, want, want, len(reps))
			}
			lost += want - u.Requests
		}
	}
	for _, r := range reps {
		for line := range strings.Lines(r.stderr.String()) {
			if strings.Contains(line, "writing usage failed") {
				t.Logf("%s: %s", r.name, strings.TrimSpace(line))
			}
		}
	}
	if short > 0 {
		t.Errorf("usage history of %d of %d tokens short after both replicas stopped gracefully: %d allowed requests missing",
			short, tokens, lost)
	}
}

// TestRateLimitHeaders checks a token's rate limit on one replica (with
// several, each enforces its share): the burst passes, the next request
// gets 429 with Retry-After and the IETF RateLimit fields, the bucket
// refills, and denied requests never count against it.
func TestRateLimitHeaders(t *testing.T) {
	t.Parallel()
	const rps, burst, denied = 5, 5, 30
	db, dbURL := MustOpenDB(t)
	acc := MustCreateAccount(t, db, "Busy Ltd", false)
	tok, value := MustCreateToken(t, db, acc.ID, func(tok *policy.Token) {
		tok.Domains = []string{"app.example.com"}
		tok.RateLimit = &policy.RateLimit{RPS: rps, Burst: burst}
	})
	r := startReplica(t, "rate", dbURL, "--usage-flush-interval", flushInterval.String())

	good := call{Token: value, Referer: "https://app.example.com/quotes", Ext: meteredExt()}
	wrongDomain := call{Token: value, Referer: "https://evil.example.net/", Ext: meteredExt()}
	premium := call{Token: value, Referer: good.Referer, Ext: map[string]string{"api": "data", "tier": "premium", "cost": "1"}}
	for range denied {
		if a := r.meteredCheck(wrongDomain); !a.denied(string(policy.CodeRefererDenied)) || a.HTTP != 403 {
			t.Fatalf("Check from a wrong domain: got %v, want 403 referer_denied", a.outcome)
		}
		if a := r.meteredCheck(premium); !a.denied(string(policy.CodeTierDenied)) || a.HTTP != 403 {
			t.Fatalf("Check of a premium route: got %v, want 403 tier_denied", a.outcome)
		}
	}

	// The bucket refills one request every 1/rps: on a slow machine more
	// than the burst may pass before the first 429, but never fewer.
	start := time.Now()
	var passed int
	var limited answer
	for range burst + 10 {
		a := r.meteredCheck(good)
		if !isAllowed(a.outcome) {
			limited = a
			break
		}
		passed++
	}
	elapsed := time.Since(start)
	t.Logf("after %d denied Checks: %d allowed, then %v, within %v", 2*denied, passed, limited.outcome, elapsed.Round(time.Microsecond))
	if refill := int(elapsed.Seconds() * rps); passed < burst || passed > burst+refill {
		t.Errorf("allowed before the first 429: got %d, want the burst %d (denied Checks must not use the rate) plus at most %d refilled in %v",
			passed, burst, refill, elapsed)
	}
	if !limited.denied(string(policy.CodeRateLimited)) || limited.HTTP != 429 {
		t.Fatalf("Check over the burst: got %v, want 429 rate_limited", limited.outcome)
	}
	retry, err := strconv.Atoi(limited.Headers["retry-after"])
	if err != nil || retry < 1 {
		t.Errorf("429 retry-after: got %q, want whole seconds >= 1", limited.Headers["retry-after"])
	}
	if rl := limited.Headers["ratelimit"]; !strings.Contains(rl, "r=0") || rateField(rl, "t") < 1 {
		t.Errorf("429 ratelimit: got %q, want r=0 and t>=1", rl)
	}
	if pol := limited.Headers["ratelimit-policy"]; !strings.Contains(pol, "q=5") || rateField(pol, "w") < 1 {
		t.Errorf("429 ratelimit-policy: got %q, want q=%d and w>=1", pol, burst)
	}
	if used, _ := limited.num("x-credits-used"); used != int64(passed) {
		t.Errorf("429 x-credits-used: got %q, want %d (a refused request spends nothing)", limited.Headers["x-credits-used"], passed)
	}
	t.Logf("429 headers: %v", limited.Headers)

	// After Retry-After the bucket has refilled.
	time.Sleep(time.Duration(max(retry, 1)) * time.Second)
	if a := r.meteredCheck(good); !isAllowed(a.outcome) {
		t.Errorf("Check after Retry-After (%ds): got %v, want allow", retry, a.outcome)
	}

	stopGracefully(t, r)
	u := usageFromSQL(t, MustOpenSQL(t, dbURL), tok.ID)
	t.Logf("usage: %d requests, %d credits, denials %v", u.Requests, u.Credits, u.Denials)
	want := map[string]int64{string(policy.CodeRefererDenied): denied, string(policy.CodeTierDenied): denied, string(policy.CodeRateLimited): 1}
	if n := int64(passed + 1); u.Requests != n || u.Credits != n || !maps.Equal(u.Denials, want) {
		t.Errorf("usage: got %d requests, %d credits, denials %v, want %d, %d, %v", u.Requests, u.Credits, u.Denials, n, n, want)
	}
}

// TestLimitChangeTakesEffect exhausts a token on two replicas, raises its
// limit (both allow again within a second, and only the difference is
// spent), then lowers it below what is spent while both replicas hold
// unspent blocks (both refuse within a second, and give the blocks back).
func TestLimitChangeTakesEffect(t *testing.T) {
	t.Parallel()
	db, dbURL := MustOpenDB(t)
	acc := MustCreateAccount(t, db, "Growing Ltd", false)
	tok, value := MustCreateToken(t, db, acc.ID, func(tok *policy.Token) { tok.CreditLimit = ptrTo[int64](5) })
	reps := startMeteredReplicas(t, dbURL, 2)
	for _, r := range reps {
		r.waitMetric(t, "tollgate_listener_connected", 5*time.Second, func(v float64) bool { return v == 1 }, "LISTEN up")
	}
	c := call{Token: value, Ext: meteredExt()}
	exhausted := string(policy.CodeCreditsExhausted)
	var total atomic.Int64 // every allow, all phases
	count := func(a answer) {
		if isAllowed(a.outcome) {
			total.Add(1)
		}
	}

	// Phase 1: limit 5.
	tl := newCreditTally(len(reps), 1, 5, exhausted)
	hammerCredits(t, reps, []call{c}, 2, 10*time.Second, nil, func(int) bool { return tl.allRefused() }, tl.add)
	tl.report(t)
	total.Add(int64(tl.allowed))
	if tl.allowed != 5 {
		t.Fatalf("allowed under limit 5: got %d, want 5", tl.allowed)
	}

	// Phase 2: raised to 10 while exhausted.
	MustUpdateToken(t, db, tok.ID, func(tok *policy.Token) { tok.CreditLimit = ptrTo[int64](10) })
	flips := untilEach(t, reps, c, time.Second, "allow after the limit was raised to 10", count, func(a answer) bool { return isAllowed(a.outcome) })
	tl = newCreditTally(len(reps), 1, 10, exhausted)
	hammerCredits(t, reps, []call{c}, 2, 10*time.Second, nil, func(int) bool { return tl.allRefused() }, tl.add)
	tl.report(t)
	total.Add(int64(tl.allowed))
	t.Logf("raised 5 -> 10: replicas allowed again after %v; %d more allowed in total", flips, 2+tl.allowed)
	if got := 2 + tl.allowed; got != 5 {
		t.Errorf("allowed after raising the limit from 5 to 10: got %d, want 5", got)
	}

	// Phase 3: raised to 100 from the CLI, as an operator would; each
	// replica takes a block.
	runCLI(t, dbURL, "tokens", "update", tok.ID, "--credit-limit", "100")
	flips = untilEach(t, reps, c, time.Second, "allow after the limit was raised to 100", count, func(a answer) bool { return isAllowed(a.outcome) })
	sqlDB := MustOpenSQL(t, dbURL)
	t.Logf("raised 10 -> 100 (CLI): replicas allowed after %v (timed from the CLI's exit); %d spent, %d reserved (the replicas hold blocks)",
		flips, total.Load(), reservedCredits(t, sqlDB, tok.ID))

	// Phase 4: lowered to 3, below what is spent.
	changed := time.Now()
	MustUpdateToken(t, db, tok.ID, func(tok *policy.Token) { tok.CreditLimit = ptrTo[int64](3) })
	lowered := func(a answer) bool { return a.denied(exhausted) && a.Headers["x-credits-limit"] == "3" }
	flips = untilEachSince(t, reps, c, changed, time.Second, "402 with x-credits-limit 3 after the limit was lowered", count, lowered)
	t.Logf("lowered 100 -> 3: replicas refused after %v; %d allowed in all", flips, total.Load())
	// A replica refused by the store refuses on its own for a flush
	// interval (200 ms here) before asking again, so its view of what was
	// used may still count blocks the others have since given back: within
	// the interval, each reports exactly what was spent.
	for _, r := range reps {
		deadline := time.Now().Add(time.Second)
		for {
			a := r.meteredCheck(c)
			count(a)
			used, _ := a.num("x-credits-used")
			if !lowered(a) || a.Headers["x-credits-remaining"] != "0" || used < total.Load() {
				t.Errorf("%s after the limit was lowered to 3: got %v with headers %v, want 402 credits_exhausted, limit 3, remaining 0, used at least %d",
					r.name, a.outcome, a.Headers, total.Load())
				break
			}
			if used == total.Load() {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: x-credits-used %d a second after the limit was lowered, want %d", r.name, used, total.Load())
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	stopGracefully(t, reps...)
	want := total.Load()
	if got := reservedCredits(t, sqlDB, tok.ID); got != want {
		t.Errorf("credit_usage.reserved after the blocks were given back: got %d, want the %d spent", got, want)
	}
	if u := usageFromSQL(t, sqlDB, tok.ID); u.Requests != want || u.Credits != want {
		t.Errorf("usage: got %d requests, %d credits, want %d of each", u.Requests, u.Credits, want)
	}
}

// startMeteredReplicas starts n replicas on databaseURL that flush usage
// every flushInterval.
func startMeteredReplicas(tb testing.TB, databaseURL string, n int, extra ...string) []*replica {
	tb.Helper()
	reps := make([]*replica, n)
	for i := range reps {
		reps[i] = startReplica(tb, fmt.Sprintf("replica-%c", 'a'+i), databaseURL,
			append([]string{"--usage-flush-interval", flushInterval.String()}, extra...)...)
	}
	return reps
}

// stopGracefully sends SIGTERM to each replica, waits for it, and fails
// unless it exited 0.
func stopGracefully(tb testing.TB, reps ...*replica) {
	tb.Helper()
	for _, r := range reps {
		r.signal(tb, syscall.SIGTERM)
	}
	awaitExit(tb, reps...)
}

// awaitExit waits for each replica to exit, and fails unless it exited 0.
func awaitExit(tb testing.TB, reps ...*replica) {
	tb.Helper()
	for _, r := range reps {
		select {
		case <-r.exited:
		case <-time.After(10 * time.Second):
			tb.Fatalf("%s did not exit within 10s of SIGTERM", r.name)
		}
		if r.waitErr != nil {
			tb.Errorf("%s exit after SIGTERM: got %v, want status 0", r.name, r.waitErr)
		}
	}
}

// answer is an outcome and the headers that came with it: an allow's
// response_headers_to_add, or a deny's headers, by lower-case name.
type answer struct {
	outcome
	Headers map[string]string
}

// num returns a header's value as an integer.
func (a answer) num(name string) (int64, bool) {
	n, err := strconv.ParseInt(a.Headers[name], 10, 64)
	return n, err == nil
}

// meteredCheck sends one Check as r.check does, and keeps the headers.
func (r *replica) meteredCheck(c call) answer {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	resp, err := r.auth.Check(ctx, envoyRequest(c))
	a := answer{outcome: outcome{Took: time.Since(start)}, Headers: map[string]string{}}
	if err != nil {
		st := status.Convert(err)
		a.GRPC, a.Err = st.Code(), st.Message()
		return a
	}
	switch hr := resp.GetHttpResponse().(type) {
	case *authv3.CheckResponse_OkResponse:
		a.Allowed = resp.GetStatus().GetCode() == int32(codes.OK)
		if !a.Allowed {
			a.Bad = fmt.Sprintf("OkResponse with status %v", resp.GetStatus())
		}
		for _, h := range hr.OkResponse.GetResponseHeadersToAdd() {
			a.Headers[strings.ToLower(h.GetHeader().GetKey())] = h.GetHeader().GetValue()
		}
	case *authv3.CheckResponse_DeniedResponse:
		if resp.GetStatus().GetCode() == int32(codes.OK) {
			a.Bad = "DeniedResponse with status OK"
		}
		a.HTTP = int(hr.DeniedResponse.GetStatus().GetCode())
		var body struct {
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		if err := json.Unmarshal([]byte(hr.DeniedResponse.GetBody()), &body); err != nil {
			a.Bad = fmt.Sprintf("deny body %q: %v", hr.DeniedResponse.GetBody(), err)
		}
		a.DenyCode = body.Error.Code
		for _, h := range hr.DeniedResponse.GetHeaders() {
			a.Headers[strings.ToLower(h.GetHeader().GetKey())] = h.GetHeader().GetValue()
		}
	default:
		a.Bad = fmt.Sprintf("CheckResponse without an http_response: %v", resp)
	}
	return a
}

// hammerCredits sends Checks from perReplica goroutines per replica, each
// goroutine with calls[g % len(calls)], until done(replica) holds,
// pausing pace() (if pace is set) between Checks; see gets every answer.
// It fails tb if that takes longer than within, and returns how long it
// took.
func hammerCredits(tb testing.TB, reps []*replica, calls []call, perReplica int, within time.Duration,
	pace func() time.Duration, done func(ri int) bool, see func(ri, ci int, a answer)) time.Duration {
	tb.Helper()
	start := time.Now()
	deadline := start.Add(within)
	var wg sync.WaitGroup
	for ri, r := range reps {
		for g := range perReplica {
			ci := g % len(calls)
			wg.Go(func() {
				for !done(ri) && time.Now().Before(deadline) {
					see(ri, ci, r.meteredCheck(calls[ci]))
					if pace != nil {
						time.Sleep(pace())
					}
				}
			})
		}
	}
	wg.Wait()
	for ri, r := range reps {
		if !done(ri) {
			tb.Fatalf("%s: hammering not done within %v", r.name, within)
		}
	}
	return time.Since(start)
}

// creditTally counts what a hammering run saw and checks each answer: an
// allow with consistent credit headers, or a 402 with code.
type creditTally struct {
	limit int64
	code  string

	mu         sync.Mutex
	allowed    int
	refusals   int
	allowedBy  []int   // per replica
	allowedFor []int   // per call
	refusedFor []int   // per call
	refusedBy  [][]int // per replica, per call
	used       []int64 // x-credits-used of every allow
	problems   []string
	nProblems  int
}

func newCreditTally(replicas, calls int, limit int64, code string) *creditTally {
	tl := &creditTally{limit: limit, code: code, allowedBy: make([]int, replicas),
		allowedFor: make([]int, calls), refusedFor: make([]int, calls), refusedBy: make([][]int, replicas)}
	for i := range tl.refusedBy {
		tl.refusedBy[i] = make([]int, calls)
	}
	return tl
}

func (tl *creditTally) add(ri, ci int, a answer) {
	problem := creditHeaderProblem(a, tl.limit)
	tl.mu.Lock()
	defer tl.mu.Unlock()
	switch {
	case isAllowed(a.outcome):
		tl.allowed++
		tl.allowedBy[ri]++
		tl.allowedFor[ci]++
		if used, ok := a.num("x-credits-used"); ok {
			tl.used = append(tl.used, used)
		}
	case a.denied(tl.code) && a.HTTP == 402:
		tl.refusals++
		tl.refusedFor[ci]++
		tl.refusedBy[ri][ci]++
	default:
		problem = fmt.Sprintf("got %v, want allow or 402 %s", a.outcome, tl.code)
	}
	if problem != "" {
		tl.nProblems++
		if len(tl.problems) < 10 {
			tl.problems = append(tl.problems, fmt.Sprintf("replica %d: %s", ri, problem))
		}
	}
}

func (tl *creditTally) allowedCount() int {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return tl.allowed
}

// refused reports whether replica ri has refused every call at least once.
func (tl *creditTally) refused(ri int) bool {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return !slices.Contains(tl.refusedBy[ri], 0)
}

// allRefused reports whether every replica has refused every call: a
// replica that refuses holds no credits, so none are left anywhere.
func (tl *creditTally) allRefused() bool {
	for ri := range tl.refusedBy {
		if !tl.refused(ri) {
			return false
		}
	}
	return true
}

func (tl *creditTally) report(tb testing.TB) {
	tb.Helper()
	for _, p := range tl.problems {
		tb.Errorf("%s", p)
	}
	if tl.nProblems > len(tl.problems) {
		tb.Errorf("… and %d more bad answers", tl.nProblems-len(tl.problems))
	}
}

// checkUsedSlots checks the x-credits-used of the allows. A replica
// reports the reserved total of its last reservation less its unspent
// block, so each allowed credit reports the slot it was reserved in:
// never twice, and with nothing lost, exactly 1 to n.
func (tl *creditTally) checkUsedSlots(tb testing.TB, n int, all bool) {
	tb.Helper()
	used := slices.Clone(tl.used)
	slices.Sort(used)
	for i := 1; i < len(used); i++ {
		if used[i] == used[i-1] {
			tb.Errorf("x-credits-used %d was reported on two allows; each allowed credit has its own slot", used[i])
			return
		}
	}
	if all && (len(used) != n || used[0] != 1 || used[len(used)-1] != int64(n)) {
		tb.Errorf("x-credits-used of the allows: got %d values from %d to %d, want 1 to %d", len(used), used[0], used[len(used)-1], n)
	}
}

// creditHeaderProblem says how a's credit headers are wrong, if they are.
func creditHeaderProblem(a answer, limit int64) string {
	if !a.Allowed && a.HTTP != 402 {
		return ""
	}
	used, okU := a.num("x-credits-used")
	lim, okL := a.num("x-credits-limit")
	rem, okR := a.num("x-credits-remaining")
	cost, okC := a.num("x-credits-cost")
	switch {
	case !okU || !okL || !okR || !okC:
		return fmt.Sprintf("%v: credit headers missing or not numbers: %v", a.outcome, a.Headers)
	case lim != limit:
		return fmt.Sprintf("%v: x-credits-limit got %d, want %d", a.outcome, lim, limit)
	case a.Allowed && (cost != 1 || used < 1 || used > limit || rem != limit-used):
		return fmt.Sprintf("allow: got used %d, cost %d, remaining %d, want cost 1, 1 <= used <= %d, remaining = limit - used", used, cost, rem, limit)
	case !a.Allowed && (rem != 0 || used < limit):
		return fmt.Sprintf("402: got used %d, remaining %d, want used >= %d and remaining 0", used, rem, limit)
	}
	return ""
}

// untilEach polls every replica at once, every 10 ms, until cond holds for
// one of its answers, and returns how long each took; it fails tb past
// within. see gets every answer.
func untilEach(tb testing.TB, reps []*replica, c call, within time.Duration, what string, see func(answer), cond func(answer) bool) []time.Duration {
	tb.Helper()
	return untilEachSince(tb, reps, c, time.Now(), within, what, see, cond)
}

// untilEachSince is untilEach timed from since.
func untilEachSince(tb testing.TB, reps []*replica, c call, since time.Time, within time.Duration, what string,
	see func(answer), cond func(answer) bool) []time.Duration {
	tb.Helper()
	took := make([]time.Duration, len(reps))
	last := make([]answer, len(reps))
	var wg sync.WaitGroup
	for i, r := range reps {
		wg.Go(func() {
			for time.Since(since) < within+time.Second {
				a := r.meteredCheck(c)
				see(a)
				last[i] = a
				if cond(a) {
					took[i] = time.Since(since)
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
			took[i] = -1
		})
	}
	wg.Wait()
	for i, r := range reps {
		if took[i] < 0 || took[i] > within {
			tb.Errorf("%s: %s: took %v, want within %v (last: %v %v)", r.name, what, took[i], within, last[i].outcome, last[i].Headers)
		}
		took[i] = took[i].Round(time.Millisecond)
	}
	return took
}

// reservedCredits returns credit_usage.reserved of a token or account,
// over all periods.
func reservedCredits(tb testing.TB, db *sql.DB, subject string) int64 {
	tb.Helper()
	var n int64
	if err := db.QueryRow(`SELECT COALESCE(SUM(reserved), 0) FROM credit_usage WHERE subject = $1`, subject).Scan(&n); err != nil {
		tb.Fatalf("read credit_usage of %s: %v", subject, err)
	}
	return n
}

// usageTotal is a token's usage history summed over days.
type usageTotal struct {
	Requests, Credits int64
	Denials           map[string]int64
}

// usageFromSQL sums usage_daily and usage_denials for a token.
func usageFromSQL(tb testing.TB, db *sql.DB, tokenID string) usageTotal {
	tb.Helper()
	u := usageTotal{Denials: map[string]int64{}}
	if err := db.QueryRow(`SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(credits), 0) FROM usage_daily WHERE token_id = $1`,
		tokenID).Scan(&u.Requests, &u.Credits); err != nil {
		tb.Fatalf("read usage_daily of %s: %v", tokenID, err)
	}
	rows, err := db.Query(`SELECT code, SUM(count) FROM usage_denials WHERE token_id = $1 GROUP BY code`, tokenID)
	if err != nil {
		tb.Fatalf("read usage_denials of %s: %v", tokenID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var code string
		var n int64
		if err := rows.Scan(&code, &n); err != nil {
			tb.Fatalf("read usage_denials of %s: %v", tokenID, err)
		}
		u.Denials[code] = n
	}
	if err := rows.Err(); err != nil {
		tb.Fatalf("read usage_denials of %s: %v", tokenID, err)
	}
	return u
}

// usageFromCLI sums "tollgate usage --token ID" over today and yesterday
// (a run may straddle midnight UTC).
func usageFromCLI(tb testing.TB, databaseURL, tokenID string) usageTotal {
	tb.Helper()
	var days []struct {
		Requests int64            `json:"requests"`
		Credits  int64            `json:"credits"`
		Denials  map[string]int64 `json:"denials"`
	}
	mustJSON(tb, runCLI(tb, databaseURL, "usage", "--token", tokenID, "--days", "2"), &days)
	u := usageTotal{Denials: map[string]int64{}}
	for _, d := range days {
		u.Requests += d.Requests
		u.Credits += d.Credits
		for code, n := range d.Denials {
			u.Denials[code] += n
		}
	}
	return u
}

// rateField returns the integer parameter key of an IETF RateLimit or
// RateLimit-Policy field ("token";q=5;w=1), or -1.
func rateField(field, key string) int {
	for p := range strings.SplitSeq(field, ";") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(p), key+"="); ok {
			if n, err := strconv.Atoi(v); err == nil {
				return n
			}
		}
	}
	return -1
}

func ptrTo[T any](v T) *T { return &v }
