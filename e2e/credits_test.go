package e2e_test

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/tollgate/tollgate/internal/policy"
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
