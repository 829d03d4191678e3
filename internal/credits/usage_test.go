package credits_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/credits"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// failingStore is the real store with writes that fail on a schedule:
// every failEvery-th usage write fails before it reaches the database, and
// every failEvery-th spending write writes only half of its subjects
// before failing, as a statement that dies part way through a batch does.
type failingStore struct {
	*store.DB
	failEvery int

	mu                   sync.Mutex
	usageCalls, addCalls int
	largestUsage         int
	largestAdd           int
}

var errInjected = errors.New("injected failure")

func (s *failingStore) RecordUsage(ctx context.Context, batch []policy.DailyUsage) error {
	s.mu.Lock()
	s.usageCalls++
	s.largestUsage = max(s.largestUsage, len(batch))
	fail := s.failEvery > 0 && s.usageCalls%s.failEvery == 0
	s.mu.Unlock()
	if fail {
		return errInjected
	}
	return s.DB.RecordUsage(ctx, batch)
}

func (s *failingStore) AddCreditsBatch(ctx context.Context, period time.Time, deltas map[string]int64) (map[string]int64, error) {
	s.mu.Lock()
	s.addCalls++
	s.largestAdd = max(s.largestAdd, len(deltas))
	fail := s.failEvery > 0 && s.addCalls%s.failEvery == 0
	s.mu.Unlock()
	if !fail {
		return s.DB.AddCreditsBatch(ctx, period, deltas)
	}
	half := map[string]int64{}
	for id, n := range deltas {
		if len(half) == len(deltas)/2 {
			break
		}
		half[id] = n
	}
	totals, err := s.DB.AddCreditsBatch(ctx, period, half)
	return totals, errors.Join(errInjected, err)
}

// usageTokens is how many distinct tokens the usage writer test drives:
// TOLLGATE_USAGE_TEST_TOKENS, else 50,000 (10,000 with -short); the
// figures in docs/benchmarks.md are from a run with 1,000,000.
func usageTokens(t *testing.T) int {
	if v := os.Getenv("TOLLGATE_USAGE_TEST_TOKENS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("TOLLGATE_USAGE_TEST_TOKENS=%q: want a positive number", v)
		}
		return n
	}
	if testing.Short() {
		return 10_000
	}
	return 50_000
}

// TestUsageWriterDrainsManyTokens drives one request for each of many
// distinct tokens through one replica on one core, with writes failing on
// a schedule, and checks that the backlog drains in bounded writes and
// that the history and the credit books are complete: nothing lost,
// nothing counted twice.
func TestUsageWriterDrainsManyTokens(t *testing.T) {
	n := usageTokens(t)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for _, failEvery := range []int{0, 3} {
		t.Run(fmt.Sprintf("fail-every-%d", failEvery), func(t *testing.T) {
			db, url := storetest.MustOpen(t, store.Postgres)
			fs := &failingStore{DB: db, failEvery: failEvery}
			c := newClock()
			cfg := credits.DefaultConfig()
			cfg.FlushInterval = 250 * time.Millisecond
			m, err := credits.New(fs, cfg, c.now, quiet)
			if err != nil {
				t.Fatal(err)
			}
			tok, acc := limited(1)
			tok.CreditLimit = nil // counted, never limited
			p := compile(t, tok, acc)

			start := time.Now()
			for i := range n {
				q := *p
				q.TokenID = fmt.Sprintf("tok_usage%011d", i)
				if d := settle(t, m, &q, 1); !d.Allow {
					t.Fatalf("request %d denied: %+v", i, d)
				}
			}
			if got := m.Backlog(); got != n {
				t.Fatalf("backlog %d after %d requests, want %d", got, n, n)
			}
			counted := time.Since(start)
			// The burst is over: its tokens go idle, so the books of those
			// written retire, as they do after a real warm-up.
			c.advance(time.Minute)

			stop := runMeter(m)
			deadline := time.Now().Add(2*time.Minute + time.Duration(n)*time.Millisecond)
			for m.Backlog() > 0 && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			drained := time.Since(start) - counted
			if got := m.Backlog(); got != 0 {
				t.Errorf("backlog %d rows after %v, want it drained", got, drained)
			}
			stop()
			t.Logf("%d tokens: counted in %v, usage drained in %v; %d usage writes (largest %d rows), %d spending writes (largest %d subjects)",
				n, counted.Round(time.Millisecond), drained.Round(time.Millisecond), fs.usageCalls, fs.largestUsage, fs.addCalls, fs.largestAdd)

			if failEvery > 0 && m.FlushErrors() == 0 {
				t.Errorf("FlushErrors() = 0 with every %dth write failing", failEvery)
			}
			if fs.largestUsage > credits.UsageBatchRows {
				t.Errorf("largest usage write %d rows, want at most %d", fs.largestUsage, credits.UsageBatchRows)
			}
			if fs.largestAdd > credits.UsageBatchRows {
				t.Errorf("largest spending write %d subjects, want at most %d", fs.largestAdd, credits.UsageBatchRows)
			}
			sqlDB, err := sql.Open("postgres", url)
			if err != nil {
				t.Fatal(err)
			}
			defer sqlDB.Close()
			var rows, requests, creditsUsed int64
			if err := sqlDB.QueryRow(`SELECT count(*), coalesce(sum(requests), 0), coalesce(sum(credits), 0) FROM usage_daily`).Scan(&rows, &requests, &creditsUsed); err != nil {
				t.Fatal(err)
			}
			if rows != int64(n) || requests != int64(n) || creditsUsed != int64(n) {
				t.Errorf("usage_daily: %d rows, %d requests, %d credits; want %d of each", rows, requests, creditsUsed, n)
			}
			var tokens, tokenCredits int64
			if err := sqlDB.QueryRow(`SELECT count(*), coalesce(sum(reserved), 0) FROM credit_usage WHERE subject LIKE 'tok_%'`).Scan(&tokens, &tokenCredits); err != nil {
				t.Fatal(err)
			}
			if tokens != int64(n) || tokenCredits != int64(n) {
				t.Errorf("credit_usage: %d tokens holding %d credits, want %d and %d", tokens, tokenCredits, n, n)
			}
			if got := reserved(t, db, acc.ID, policy.PeriodMonth.Start(c.now())); got != int64(n) {
				t.Errorf("account spent %d, want %d", got, n)
			}
		})
	}
}

var _ credits.Store = (*failingStore)(nil)
