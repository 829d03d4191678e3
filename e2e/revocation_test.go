package e2e_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
)

// revocationBound is the promise: a change takes effect on every
// replica in under one second.
const revocationBound = time.Second

// TestRevocationAcrossReplicas runs two replicas on one Postgres database
// with the default (5 minute) cache TTL and 30 s resync, so that only the
// LISTEN/NOTIFY path can make a change show within the bound. For each kind
// of change it warms both caches, makes the change from outside the
// replicas, and measures how long each replica takes to flip its answer.
func TestRevocationAcrossReplicas(t *testing.T) {
	t.Parallel()
	db, dbURL := MustOpenDB(t)
	sqlDB := MustOpenSQL(t, dbURL)

	// The account and its first token come from the CLI, as an operator
	// would make them.
	var acc struct {
		ID string `json:"id"`
	}
	mustJSON(t, runCLI(t, dbURL, "accounts", "create", "--name", "Acme Data", "--premium"), &acc)
	var core struct {
		ID    string `json:"id"`
		Value string `json:"token"`
	}
	mustJSON(t, runCLI(t, dbURL, "tokens", "create", "--account", acc.ID,
		"--nickname", "acme-web", "--domain", "app.example.com"), &core)
	premium, premiumValue := MustCreateToken(t, db, acc.ID, func(tok *policy.Token) { tok.Premium = true })

	replicas := []*replica{
		startReplica(t, "replica-a", dbURL),
		startReplica(t, "replica-b", dbURL),
	}
	for _, r := range replicas {
		r.waitMetric(t, "tollgate_listener_connected", 5*time.Second, func(v float64) bool { return v == 1 }, "LISTEN up")
	}

	web := call{Token: core.Value, Referer: "https://app.example.com/dashboard"}
	premiumCall := call{Token: premiumValue, Referer: "https://app.example.com/",
		Ext: map[string]string{"api": "data", "tier": "premium", "dataset": "prices"}}
	// The premium token needs the dataset too.
	MustUpdateToken(t, db, premium.ID, func(tok *policy.Token) {
		tok.Datasets = map[string]policy.Actions{"prices": policy.Actions(policy.Read)}
	})

	cases := []struct {
		name    string
		call    call
		prepare func(t *testing.T) // brings the token to the state before
		before  func(outcome) bool
		change  func(t *testing.T)
		after   func(outcome) bool
	}{
		{
			name:   "disable via CLI",
			call:   web,
			before: isAllowed,
			change: func(t *testing.T) { runCLI(t, dbURL, "tokens", "disable", core.ID) },
			after:  deniedWith("token_disabled"),
		},
		{
			name:   "re-enable via store",
			call:   web,
			before: deniedWith("token_disabled"),
			change: func(t *testing.T) { MustUpdateToken(t, db, core.ID, func(tok *policy.Token) { tok.Enabled = true }) },
			after:  isAllowed,
		},
		{
			name:   "change allowed domains via store",
			call:   web,
			before: isAllowed,
			change: func(t *testing.T) {
				MustUpdateToken(t, db, core.ID, func(tok *policy.Token) { tok.Domains = []string{"other.example.org"} })
			},
			after: deniedWith("referer_denied"),
		},
		{
			name: "disable with plain SQL",
			call: web,
			prepare: func(t *testing.T) {
				MustUpdateToken(t, db, core.ID, func(tok *policy.Token) { tok.Domains = []string{"app.example.com"} })
			},
			before: isAllowed,
			change: func(t *testing.T) { mustExec(t, sqlDB, 1, `UPDATE tokens SET enabled = false WHERE id = $1`, core.ID) },
			after:  deniedWith("token_disabled"),
		},
		{
			name:    "delete via store",
			call:    web,
			prepare: func(t *testing.T) { mustExec(t, sqlDB, 1, `UPDATE tokens SET enabled = true WHERE id = $1`, core.ID) },
			before:  isAllowed,
			change: func(t *testing.T) {
				if err := db.DeleteToken(context.Background(), core.ID); err != nil {
					t.Fatalf("delete token: %v", err)
				}
			},
			after: deniedWith("token_unknown"),
		},
		{
			name:   "account premium off with plain SQL",
			call:   premiumCall,
			before: isAllowed,
			change: func(t *testing.T) { mustExec(t, sqlDB, 1, `UPDATE accounts SET premium = false WHERE id = $1`, acc.ID) },
			after:  deniedWith("tier_denied"),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.prepare != nil {
				tc.prepare(t)
			}
			// Warm: every replica answers the "before" way (and has the
			// policy cached).
			for _, r := range replicas {
				r.waitOutcome(t, tc.call, 3*time.Second, "state before the change", tc.before)
			}
			flips, changeTook := measureFlips(t, replicas, tc.call, 3*time.Second, tc.change, tc.after)
			for i, r := range replicas {
				t.Logf("%s: %s flipped %v after the change began (the change itself took %v)", tc.name, r.name, flips[i], changeTook)
				if flips[i] < 0 || flips[i] >= revocationBound {
					t.Errorf("%s: %s flipped after %v, want < %v", tc.name, r.name, flips[i], revocationBound)
				}
			}
		})
	}

	for _, r := range replicas {
		if v, _ := r.metric(t, "tollgate_invalidations_total"); v < float64(len(cases)) {
			t.Errorf("%s: tollgate_invalidations_total got %v, want >= %d", r.name, v, len(cases))
		}
	}
}

// measureFlips polls Check on every replica every 10 ms while change runs,
// and returns, per replica, the time from the start of the change until
// the answer first satisfied after (-1 if it did not within limit), and how
// long change itself took.
func measureFlips(t *testing.T, replicas []*replica, c call, limit time.Duration, change func(*testing.T), after func(outcome) bool) ([]time.Duration, time.Duration) {
	t.Helper()
	flips := make([]time.Duration, len(replicas))
	lasts := make([]outcome, len(replicas))
	start := time.Now()
	var wg sync.WaitGroup
	for i, r := range replicas {
		wg.Go(func() {
			flips[i] = -1
			for time.Since(start) < limit {
				o := r.check(c, 2*time.Second)
				lasts[i] = o
				if after(o) {
					flips[i] = time.Since(start)
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	change(t)
	changeTook := time.Since(start)
	wg.Wait()
	for i, r := range replicas {
		if flips[i] < 0 {
			t.Errorf("%s never flipped within %v; last Check got %v", r.name, limit, lasts[i])
		}
	}
	return flips, changeTook
}

func mustJSON(tb testing.TB, b []byte, v any) {
	tb.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		tb.Fatalf("decode %s: %v", b, err)
	}
}
