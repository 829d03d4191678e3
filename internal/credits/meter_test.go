package credits_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/credits"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// clock is a settable time source shared by the meters of a test.
type clock struct{ t atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.t.Store(time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) now() time.Time          { return time.Unix(0, c.t.Load()).UTC() }
func (c *clock) advance(d time.Duration) { c.t.Add(int64(d)) }

func mustMeter(t *testing.T, db *store.DB, c *clock, cfg credits.Config) *credits.Meter {
	t.Helper()
	m, err := credits.New(db, cfg, c.now, quiet)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// runMeter runs m's books until the returned stop is called, which waits
// for the final flush.
func runMeter(m *credits.Meter) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	return func() { cancel(); <-done }
}

func compile(t *testing.T, tok *policy.Token, acc *policy.Account) *policy.Policy {
	t.Helper()
	if err := tok.Normalize(); err != nil {
		t.Fatal(err)
	}
	p, err := policy.Compile(tok, acc, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &p
}

func settle(t testing.TB, m *credits.Meter, p *policy.Policy, cost int64) policy.Decision {
	d := policy.Decision{Allow: true, Cost: cost, TokenID: p.TokenID, AccountID: p.AccountID, Kind: p.Kind()}
	d, err := m.Settle(context.Background(), *p, d)
	if err != nil {
		t.Errorf("settle: %v", err)
	}
	return d
}

func limited(limit int64) (*policy.Token, *policy.Account) {
	acc := &policy.Account{ID: policy.NewID("acc")}
	tok := policy.NewToken(acc.ID, policy.Publishable)
	tok.CreditLimit = &limit
	return tok, acc
}

func reserved(t *testing.T, db *store.DB, subject string, period time.Time) int64 {
	t.Helper()
	total, err := db.AddCredits(context.Background(), subject, period, 0)
	if err != nil {
		t.Fatal(err)
	}
	return total
}

// TestExactLimitAcrossReplicas hammers one token from three replicas at
// once: exactly the limit is allowed, and the books add up.
func TestExactLimitAcrossReplicas(t *testing.T) {
	for _, dialect := range storetest.Dialects() {
		t.Run(string(dialect), func(t *testing.T) {
			t.Parallel()
			db, _ := storetest.MustOpen(t, dialect)
			c := newClock()
			const limit = 600
			tok, acc := limited(limit)
			p := compile(t, tok, acc)
			cfg := credits.DefaultConfig()
			cfg.MaxBlock = 50
			var meters []*credits.Meter
			var stops []func()
			for range 3 {
				m := mustMeter(t, db, c, cfg)
				meters = append(meters, m)
				stops = append(stops, runMeter(m))
			}
			// Each replica is hammered until it refuses: a replica that
			// refuses holds no credits and can get none, so when all three
			// have refused every reserved credit was spent.
			var allowed, refused atomic.Int64
			var wg sync.WaitGroup
			for i := range 12 {
				m := meters[i%3]
				wg.Go(func() {
					for {
						d := settle(t, m, p, 1)
						switch {
						case d.Allow:
							allowed.Add(1)
						case d.Code == policy.CodeCreditsExhausted:
							refused.Add(1)
							return
						default:
							t.Errorf("unexpected decision %+v", d)
							return
						}
					}
				})
			}
			wg.Wait()
			if got := allowed.Load(); got != limit {
				t.Errorf("allowed %d across 3 replicas, want exactly %d (refused %d)", got, limit, refused.Load())
			}
			for _, stop := range stops {
				stop()
			}
			period := policy.PeriodMonth.Start(c.now())
			if got := reserved(t, db, tok.ID, period); got != limit {
				t.Errorf("reserved %d after a graceful stop, want %d", got, limit)
			}
			day := c.now().Format(time.DateOnly)
			rows, err := db.Usage(context.Background(), tok.ID, day, day)
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != 1 || rows[0].Credits != limit || rows[0].Requests != limit || rows[0].Denials[string(policy.CodeCreditsExhausted)] != refused.Load() {
				t.Errorf("usage %+v, want %d requests and credits, %d denials", rows, limit, refused.Load())
			}
		})
	}
}

// TestKilledReplicaNeverOverspends stops one replica without returning its
// lease: the token still cannot spend past its limit, and what it lost is
// at most that one block.
func TestKilledReplicaNeverOverspends(t *testing.T) {
	db, _ := storetest.MustOpen(t, store.Postgres)
	c := newClock()
	const limit, block = 300, 40
	tok, acc := limited(limit)
	p := compile(t, tok, acc)
	cfg := credits.DefaultConfig()
	cfg.MaxBlock = block
	killed := mustMeter(t, db, c, cfg) // never Run: its lease is never returned
	for range 5 {
		if d := settle(t, killed, p, 1); !d.Allow {
			t.Fatalf("first requests refused: %+v", d)
		}
	}
	survivor := mustMeter(t, db, c, cfg)
	stop := runMeter(survivor)
	allowed := int64(5)
	for range 2 * limit {
		if settle(t, survivor, p, 1).Allow {
			allowed++
		}
	}
	stop()
	if allowed > limit {
		t.Errorf("allowed %d, over the limit %d", allowed, limit)
	}
	if lost := limit - allowed; lost > block {
		t.Errorf("lost %d credits to the killed replica, want at most one block (%d)", lost, block)
	}
	if got := reserved(t, db, tok.ID, policy.PeriodMonth.Start(c.now())); got > limit {
		t.Errorf("reserved %d, over the limit %d", got, limit)
	}
}

func TestCostNeverCrossesTheLimit(t *testing.T) {
	db, _ := storetest.MustOpen(t, store.SQLite)
	c := newClock()
	tok, acc := limited(10)
	p := compile(t, tok, acc)
	m := mustMeter(t, db, c, credits.DefaultConfig())
	var got []bool
	for range 4 {
		got = append(got, settle(t, m, p, 3).Allow)
	}
	if !got[0] || !got[1] || !got[2] || got[3] {
		t.Errorf("cost 3 against a limit of 10: allowed %v, want three then a refusal", got)
	}
	d := settle(t, m, p, 1)
	if !d.Allow || d.Usage.Used != 10 {
		t.Errorf("a cost-1 request after: %+v, want allowed with 10 used", d)
	}
	d = settle(t, m, p, 1)
	if d.Allow || d.Code != policy.CodeCreditsExhausted || d.Usage.Used != 10 || d.Usage.Limit != 10 {
		t.Errorf("past the limit: %+v, want credits_exhausted with used=limit=10", d)
	}
	if rem, ok := d.Usage.Remaining(); !ok || rem != 0 {
		t.Errorf("remaining %d %v, want 0", rem, ok)
	}
}

func TestAccountQuota(t *testing.T) {
	db, _ := storetest.MustOpen(t, store.SQLite)
	c := newClock()
	quota := int64(5)
	acc := &policy.Account{ID: policy.NewID("acc"), CreditQuota: &quota}
	m := mustMeter(t, db, c, credits.DefaultConfig())
	a := compile(t, policy.NewToken(acc.ID, policy.Publishable), acc)
	b := compile(t, policy.NewToken(acc.ID, policy.Publishable), acc)
	allowed := 0
	for i := range 10 {
		p := a
		if i%2 == 1 {
			p = b
		}
		d := settle(t, m, p, 1)
		if d.Allow {
			allowed++
		} else if d.Code != policy.CodeQuotaExhausted {
			t.Errorf("got %s, want quota_exhausted", d.Code)
		}
	}
	if allowed != 5 {
		t.Errorf("allowed %d across two tokens, want the account's quota of 5", allowed)
	}
}

func TestPeriodRollsOver(t *testing.T) {
	db, _ := storetest.MustOpen(t, store.SQLite)
	c := newClock()
	tok, acc := limited(3)
	p := compile(t, tok, acc)
	m := mustMeter(t, db, c, credits.DefaultConfig())
	for range 3 {
		settle(t, m, p, 1)
	}
	if settle(t, m, p, 1).Allow {
		t.Fatal("allowed past the limit")
	}
	c.advance(31 * 24 * time.Hour) // into April
	d := settle(t, m, p, 1)
	if !d.Allow || d.Usage.Used != 1 {
		t.Errorf("first request of a new period: %+v, want allowed with 1 used", d)
	}
}

func TestLimitRaisedWhileExhausted(t *testing.T) {
	db, _ := storetest.MustOpen(t, store.SQLite)
	c := newClock()
	tok, acc := limited(2)
	m := mustMeter(t, db, c, credits.DefaultConfig())
	p := compile(t, tok, acc)
	settle(t, m, p, 1)
	settle(t, m, p, 1)
	if settle(t, m, p, 1).Allow {
		t.Fatal("allowed past the limit")
	}
	higher := int64(4)
	tok.CreditLimit = &higher
	p = compile(t, tok, acc)
	allowed := 0
	for range 5 {
		if settle(t, m, p, 1).Allow {
			allowed++
		}
	}
	if allowed != 2 {
		t.Errorf("allowed %d after raising the limit from 2 to 4, want 2", allowed)
	}
	// Lowering it below what was spent refuses at once.
	lower := int64(1)
	tok.CreditLimit = &lower
	if d := settle(t, m, compile(t, tok, acc), 1); d.Allow {
		t.Errorf("allowed after lowering the limit below what was spent: %+v", d)
	}
}

func TestRateLimit(t *testing.T) {
	db, _ := storetest.MustOpen(t, store.SQLite)
	c := newClock()
	acc := &policy.Account{ID: policy.NewID("acc")}
	tok := policy.NewToken(acc.ID, policy.Publishable)
	tok.RateLimit = &policy.RateLimit{RPS: 2, Burst: 4}
	p := compile(t, tok, acc)
	m := mustMeter(t, db, c, credits.DefaultConfig())
	for i := range 4 {
		if d := settle(t, m, p, 1); !d.Allow || d.Usage.RateRemaining != int64(3-i) {
			t.Fatalf("burst request %d: %+v", i, d)
		}
	}
	d := settle(t, m, p, 1)
	if d.Allow || d.Code != policy.CodeRateLimited || d.Usage.RetryAfter != 500*time.Millisecond {
		t.Errorf("over the burst: %+v, want rate_limited, retry after 500ms", d)
	}
	c.advance(500 * time.Millisecond)
	if !settle(t, m, p, 1).Allow {
		t.Error("refused after the bucket refilled one request")
	}
	if settle(t, m, p, 1).Allow {
		t.Error("allowed a second request after refilling one")
	}
	c.advance(10 * time.Second)
	allowed := 0
	for range 10 {
		if settle(t, m, p, 1).Allow {
			allowed++
		}
	}
	if allowed != 4 {
		t.Errorf("allowed %d after a long pause, want the burst of 4", allowed)
	}
	// A rate-limited request spends no credits.
	stop := runMeter(m)
	stop()
	if got := reserved(t, db, tok.ID, policy.PeriodMonth.Start(c.now())); got != 9 {
		t.Errorf("credits spent %d, want 9 (only allowed requests)", got)
	}
}

func TestDenialsAreCountedNotCharged(t *testing.T) {
	db, _ := storetest.MustOpen(t, store.SQLite)
	c := newClock()
	tok, acc := limited(100)
	p := compile(t, tok, acc)
	m := mustMeter(t, db, c, credits.DefaultConfig())
	d, err := m.Settle(context.Background(), *p, policy.Decision{Code: policy.CodeRefererDenied, Cost: 5, TokenID: p.TokenID, AccountID: p.AccountID})
	if err != nil {
		t.Fatal(err)
	}
	if d.Allow || d.Usage.Metered {
		t.Errorf("a denied request was metered: %+v", d)
	}
	stop := runMeter(m)
	stop()
	if got := reserved(t, db, tok.ID, policy.PeriodMonth.Start(c.now())); got != 0 {
		t.Errorf("a denied request spent %d credits", got)
	}
	day := c.now().Format(time.DateOnly)
	rows, _ := db.Usage(context.Background(), tok.ID, day, day)
	if len(rows) != 1 || rows[0].Denials[string(policy.CodeRefererDenied)] != 1 || rows[0].Requests != 0 {
		t.Errorf("usage %+v, want one referer_denied denial and no requests", rows)
	}
}

func TestPeriodStart(t *testing.T) {
	at := time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC) // a Saturday
	for p, want := range map[policy.Period]time.Time{
		policy.PeriodMonth: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
		policy.PeriodWeek:  time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC),
		policy.PeriodDay:   time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC),
		policy.PeriodHour:  time.Date(2026, 3, 14, 15, 0, 0, 0, time.UTC),
	} {
		if got := p.Start(at); !got.Equal(want) {
			t.Errorf("%s start of %v = %v, want %v", p, at, got, want)
		}
	}
	if _, err := policy.ParsePeriod("fortnight"); err == nil {
		t.Error("ParsePeriod accepted fortnight")
	}
}

// reservations counts a store's credit reservations.
type reservations struct {
	*store.DB
	n atomic.Int64
}

func (r *reservations) Reserve(ctx context.Context, subject string, period time.Time, grant func(int64) int64) (int64, int64, error) {
	r.n.Add(1)
	return r.DB.Reserve(ctx, subject, period, grant)
}

// A client hammering a spent token costs the store one refused
// reservation per flush interval, not one per request; credits another
// replica gives back are usable after that interval.
func TestSpentTokenDoesNotHammerTheStore(t *testing.T) {
	db, _ := storetest.MustOpen(t, store.SQLite)
	c := newClock()
	tok, acc := limited(8)
	p := compile(t, tok, acc)
	cfg := credits.DefaultConfig()
	counted := &reservations{DB: db}
	m, err := credits.New(counted, cfg, c.now, quiet)
	if err != nil {
		t.Fatal(err)
	}
	other := mustMeter(t, db, c, cfg)
	stopOther := runMeter(other)
	if !settle(t, other, p, 1).Allow { // reserves a block of 2: one spent, one held
		t.Fatal("the other replica's first request was refused")
	}
	allowed := 0
	for settle(t, m, p, 1).Allow {
		allowed++
	}
	if allowed != 6 {
		t.Fatalf("allowed %d beside a replica holding 2 of 8, want 6", allowed)
	}
	before := counted.n.Load()
	for range 100 {
		if d := settle(t, m, p, 1); d.Allow || d.Code != policy.CodeCreditsExhausted {
			t.Fatalf("a spent token: %+v, want credits_exhausted", d)
		}
	}
	if n := counted.n.Load() - before; n != 0 {
		t.Errorf("100 requests to a spent token made %d reservations, want none within the flush interval", n)
	}
	stopOther() // gives back its unspent credit
	if settle(t, m, p, 1).Allow {
		t.Error("a credit given back was used before the refusal's interval ended")
	}
	c.advance(cfg.FlushInterval)
	if d := settle(t, m, p, 1); !d.Allow || d.Usage.Used != 8 {
		t.Errorf("after the interval: %+v, want the given-back credit allowed, 8 used", d)
	}
	if n := counted.n.Load() - before; n != 1 {
		t.Errorf("%d reservations after the interval, want 1", n)
	}
}
