package store_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

var _ policy.KeySource = (*store.DB)(nil)

// mustInsertKeys adds n keys with random hashes to token tokenID, as plain
// SQL would, and returns their hashes.
func mustInsertKeys(t *testing.T, db *store.DB, tokenID string, n int) []policy.Hash {
	t.Helper()
	var out []policy.Hash
	for n > 0 {
		rows := min(n, 500)
		n -= rows
		args := make([]any, 0, 3*rows)
		now := time.Now().UTC()
		for range rows {
			var h policy.Hash
			_, _ = rand.Read(h[:])
			out = append(out, h)
			args = append(args, h[:], tokenID, now)
		}
		q := `INSERT INTO token_keys (hash, token_id, created_at) VALUES ` + strings.TrimSuffix(strings.Repeat("(?, ?, ?), ", rows), ", ")
		if err := db.Exec(context.Background(), q, args...); err != nil {
			t.Fatalf("insert keys: %v", err)
		}
	}
	return out
}

// EachTokenKey walks every live key, page after page, each once: current
// keys and those still in a roll's grace period, not expired or deleted
// ones.
func TestEachTokenKey(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a, _, secret := mustAccount(t, db)
		live := map[policy.Hash]string{policy.HashValue(secret): "the account's secret token"}
		kept, keptOld := mustToken(t, db, a.ID, nil)
		live[policy.HashValue(keptOld)] = "a rolled token's value in its grace period"
		_, keptNew, err := db.RollToken(ctx, kept.ID, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		live[policy.HashValue(keptNew)] = "a rolled token's new value"
		cut, _ := mustToken(t, db, a.ID, nil)
		_, cutNew, err := db.RollToken(ctx, cut.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		live[policy.HashValue(cutNew)] = "a token rolled without grace"
		expired, expiredOld := mustToken(t, db, a.ID, nil)
		_, expiredNew, err := db.RollToken(ctx, expired.ID, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		live[policy.HashValue(expiredNew)] = "the new value of a token whose old one expired"
		gone := policy.HashValue(expiredOld)
		if err := db.Exec(ctx, `UPDATE token_keys SET expires_at = ? WHERE hash = ?`, time.Now().Add(-time.Minute), gone[:]); err != nil {
			t.Fatal(err)
		}
		deleted, _ := mustToken(t, db, a.ID, nil)
		if err := db.DeleteToken(ctx, deleted.ID); err != nil {
			t.Fatal(err)
		}
		// Enough keys for more than two pages.
		for _, h := range mustInsertKeys(t, db, kept.ID, 25_000) {
			live[h] = "a key written with plain SQL"
		}

		var prev []byte
		seen := map[policy.Hash]bool{}
		err = db.EachTokenKey(ctx, func(h policy.Hash) {
			if prev != nil && bytes.Compare(prev, h[:]) >= 0 {
				t.Fatalf("%s after %x: want each key once, in hash order", h, prev)
			}
			prev = bytes.Clone(h[:])
			seen[h] = true
		})
		if err != nil {
			t.Fatal(err)
		}
		for h, what := range live {
			if !seen[h] {
				t.Errorf("%s missing", what)
			}
		}
		if len(seen) != len(live) {
			t.Errorf("got %d keys, want the %d live ones", len(seen), len(live))
		}
		n, err := db.CountTokenKeys(ctx)
		if err != nil || n < len(live) {
			t.Errorf("CountTokenKeys: got %d (%v), want at least %d", n, err, len(live))
		}
	})
}

// A token created on one replica and used at once on another, before the
// other has heard of it, is never refused while the look-ups allowed for
// filter misses last; past them (a flood of made-up tokens) it is refused
// until its creation is announced there, and passes at once after that,
// not a negative-cache TTL later. This is the bound docs/sre.md states.
// Replicas share Postgres; the embedded store has one (its watcher relays
// only what is logged after it starts, so it cannot play the replica that
// heard late here; the policy tests cover its refusal and announcement).
func TestFilterNewTokenOnAnotherReplica(t *testing.T) {
	for _, d := range []store.Dialect{store.Postgres} {
		for _, tc := range []struct {
			name    string
			lookups int
			allowed bool
		}{
			{"within the allowance it is looked up", 20, true},
			{"past the allowance it is refused until announced", 0, false},
		} {
			t.Run(string(d)+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				db, url := storetest.MustOpen(t, d)
				a, _, _ := mustAccount(t, db)
				_, before := mustToken(t, db, a.ID, nil)

				cfg := policy.CacheConfig{Size: 100, TTL: time.Hour, NegativeSize: 100, NegativeTTL: time.Hour,
					MaxStaleness: time.Hour, StoreTimeout: 5 * time.Second, FilterMissLookups: tc.lookups}
				cache, err := policy.NewCache(db, cfg, time.Now, nil)
				if err != nil {
					t.Fatal(err)
				}
				decider := policy.NewDecider(cache, nil, time.Now, policy.EvalOptions{})
				decide := func(value string) policy.Decision {
					t.Helper()
					dec, err := decider.Decide(ctx, &policy.Request{Token: value})
					if err != nil {
						t.Fatalf("Decide: %v", err)
					}
					return dec
				}
				if err := cache.LoadFilter(ctx, db); err != nil {
					t.Fatal(err)
				}
				// Created after the load, on "another replica": this one
				// runs no watcher yet.
				_, created := mustToken(t, db, a.ID, nil)

				if dec := decide(before); !dec.Allow {
					t.Fatalf("a token that existed at the load: got %s, want allow", dec.Code)
				}
				misses := cache.Stats().Misses
				if dec := decide(policy.NewValue(policy.Publishable)); dec.Code != policy.CodeTokenUnknown {
					t.Fatalf("a made-up token: got %q, want %s", dec.Code, policy.CodeTokenUnknown)
				}
				if tc.lookups == 0 && cache.Stats().Misses != misses {
					t.Error("a made-up token reached the store past the allowance")
				}
				if dec := decide(created); dec.Allow != tc.allowed {
					t.Fatalf("a token created after the load, not yet announced: got allow %v (%s), want %v", dec.Allow, dec.Code, tc.allowed)
				}

				w := db.NewWatcher(cache, store.WatchConfig{ListenURL: url, PollInterval: 100 * time.Millisecond},
					slog.New(slog.NewTextHandler(io.Discard, nil)))
				done := make(chan struct{})
				go func() { w.Run(ctx); close(done) }()
				defer func() { cancel(); <-done }()
				<-w.Started()
				deadline := time.Now().Add(5 * time.Second)
				for dec := decide(created); !dec.Allow; dec = decide(created) {
					if time.Now().After(deadline) {
						t.Fatalf("a token created after the load, announced: got %s, want allow", dec.Code)
					}
					time.Sleep(5 * time.Millisecond)
				}
				// Announced while the watcher runs: at once on Postgres.
				_, later := mustToken(t, db, a.ID, nil)
				deadline = time.Now().Add(5 * time.Second)
				for dec := decide(later); !dec.Allow; dec = decide(later) {
					if time.Now().After(deadline) {
						t.Fatalf("a token created while the watcher runs: got %s, want allow", dec.Code)
					}
					time.Sleep(5 * time.Millisecond)
				}
			})
		}
	}
}

// BenchmarkDecideUnknown is the cost of a made-up, well-formed token on a
// replica over Postgres: a store query each without the membership
// filter, none with it.
func BenchmarkDecideUnknown(b *testing.B) {
	db, _ := storetest.MustOpen(b, store.Postgres)
	ctx := context.Background()
	a := &policy.Account{Name: "Acme"}
	if _, _, err := db.CreateAccount(ctx, a); err != nil {
		b.Fatal(err)
	}
	// Distinct values, more than the negative cache holds, so that no
	// look-up is saved by it.
	values := make([]string, 20_000)
	for i := range values {
		values[i] = policy.NewValue(policy.Publishable)
	}
	for _, filter := range []bool{false, true} {
		name := "store"
		if filter {
			name = "filter"
		}
		b.Run(name, func(b *testing.B) {
			cfg := policy.CacheConfig{Size: 1000, TTL: time.Hour, NegativeSize: 100, NegativeTTL: time.Hour,
				MaxStaleness: time.Hour, StoreTimeout: 5 * time.Second}
			cache, err := policy.NewCache(db, cfg, time.Now, nil)
			if err != nil {
				b.Fatal(err)
			}
			if filter {
				if err := cache.LoadFilter(ctx, db); err != nil {
					b.Fatal(err)
				}
			}
			d := policy.NewDecider(cache, nil, time.Now, policy.EvalOptions{})
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				dec, err := d.Decide(ctx, &policy.Request{Token: values[i%len(values)]})
				if err != nil || dec.Code != policy.CodeTokenUnknown {
					b.Fatalf("got %s (%v), want %s", dec.Code, err, policy.CodeTokenUnknown)
				}
				i++
			}
		})
	}
}
