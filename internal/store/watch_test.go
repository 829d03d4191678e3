package store_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// invalidations records what a Watcher tells the cache.
type invalidations struct {
	mu       sync.Mutex
	tokens   []policy.Hash
	accounts []string
	all      int
}

func (r *invalidations) Invalidate(h policy.Hash) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tokens = append(r.tokens, h)
}

func (r *invalidations) InvalidateAccount(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.accounts = append(r.accounts, id)
}

func (r *invalidations) InvalidateAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all++
}

func (r *invalidations) counts() (tokens, accounts, all int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.tokens), len(r.accounts), r.all
}

// A replica started just after a burst of token writes must not leave
// those changes to its first poll, which re-reads the log's recent window
// and would then evict the tokens loaded since (the soak's dip at 30 s):
// it applies them at start, once, and relays new changes as usual.
func TestWatcherAppliesTheRecentPastAtStart(t *testing.T) {
	db, url := storetest.MustOpen(t, store.Postgres)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, _, _ := mustAccount(t, db)
	var last *policy.Token
	for range 20 {
		last, _ = mustToken(t, db, a.ID, nil)
	}
	logged, _, err := db.ChangesSince(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	before := len(logged)
	rec := &invalidations{}
	w := db.NewWatcher(rec, store.WatchConfig{ListenURL: url, PollInterval: time.Second},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	waitFor := func(what string, within time.Duration, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(within)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %v", what, within)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	applied := func() int { tokens, accounts, _ := rec.counts(); return tokens + accounts }
	waitFor("the changes before start applied at start, before the first poll", 500*time.Millisecond, func() bool { return applied() >= before })
	time.Sleep(2500 * time.Millisecond) // two polls, each re-reading the window
	if n := applied(); n != before {
		t.Fatalf("%d changes applied after two polls, want each of the %d once", n, before)
	}
	if _, err := db.UpdateToken(ctx, last.ID, func(tok *policy.Token) error { tok.Enabled = false; return nil }); err != nil {
		t.Fatal(err)
	}
	waitFor("a change made after start relayed", 2*time.Second, func() bool { return applied() == before+1 })
	if _, _, all := rec.counts(); all != 0 {
		t.Errorf("the cache was dropped %d times", all)
	}
}

// Pruning keeps the newest old change, so that a hole in the sequence
// (a rolled-back write) right after what a replica last saw is not taken
// for changes pruned unseen; changes that were pruned unseen still are.
func TestPruneKeepsAGapFromLookingLikeLoss(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		first, err := db.LastChange(ctx)
		if err != nil {
			t.Fatal(err)
		}
		a, _, _ := mustAccount(t, db)
		mustToken(t, db, a.ID, nil)
		mustToken(t, db, a.ID, nil)
		seen, err := db.LastChange(ctx)
		if err != nil || seen <= first+2 {
			t.Fatalf("last change %d after %d (%v): want several changes logged", seen, first, err)
		}
		age := `UPDATE policy_changes SET at = at - interval '2 hours'`
		if db.Dialect() == store.SQLite {
			age = `UPDATE policy_changes SET at = strftime('%Y-%m-%d %H:%M:%f', at, '-2 hours')`
		}
		if err := db.Exec(ctx, age); err != nil {
			t.Fatal(err)
		}
		// A hole: a sequence number taken and never kept.
		if err := db.Exec(ctx, `INSERT INTO policy_changes (change) VALUES ('hole')`); err != nil {
			t.Fatal(err)
		}
		if err := db.Exec(ctx, `DELETE FROM policy_changes WHERE change = 'hole'`); err != nil {
			t.Fatal(err)
		}
		if err := db.PruneChanges(ctx, time.Hour); err != nil {
			t.Fatal(err)
		}
		mustToken(t, db, a.ID, nil)

		changes, gap, err := db.ChangesSince(ctx, seen)
		if err != nil {
			t.Fatal(err)
		}
		if gap {
			t.Error("a replica that saw every change was told some were pruned")
		}
		if len(changes) == 0 {
			t.Error("the change after the hole was not returned")
		}
		if _, gap, err := db.ChangesSince(ctx, first+1); err != nil || !gap {
			t.Errorf("a replica that missed pruned changes: gap %v (%v), want true", gap, err)
		}
	})
}
