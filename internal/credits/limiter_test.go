package credits_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/credits"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/redislimit"
	"github.com/tollgate/tollgate/internal/redislimit/redistest"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// switchable is a fleet limiter that can be made to fail, as Redis does
// when it stops; it counts the calls that reach Redis.
type switchable struct {
	*redislimit.Client
	down  atomic.Bool
	calls atomic.Int64
}

func (s *switchable) Allow(ctx context.Context, key string, rps, burst int64) (bool, int64, time.Duration, error) {
	if s.down.Load() {
		return false, 0, 0, errors.New("dial tcp 127.0.0.1:6379: connect: connection refused")
	}
	s.calls.Add(1)
	return s.Client.Allow(ctx, key, rps, burst)
}

// logCount counts log records by level.
type logCount struct {
	mu sync.Mutex
	n  map[slog.Level]int
}

func (l *logCount) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCount) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n[r.Level]++
	return nil
}
func (l *logCount) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCount) WithGroup(string) slog.Handler      { return l }
func (l *logCount) count(lv slog.Level) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n[lv]
}

func rateLimited(t *testing.T, rps, burst int64) *policy.Policy {
	t.Helper()
	acc := &policy.Account{ID: policy.NewID("acc")}
	tok := policy.NewToken(acc.ID, policy.Publishable)
	tok.RateLimit = &policy.RateLimit{RPS: rps, Burst: burst}
	return compile(t, tok, acc)
}

// fleetMeters returns n meters (replicas) on one store sharing one fleet
// limiter, each having counted n live replicas.
func fleetMeters(t *testing.T, n int, lim credits.Limiter, c *clock, log *slog.Logger) []*credits.Meter {
	t.Helper()
	db, _ := storetest.MustOpen(t, store.SQLite)
	cfg := credits.DefaultConfig()
	cfg.Limiter, cfg.LimiterTimeout = lim, time.Second // a loaded test machine must not trip the fallback
	cfg.ReplicaTTL = 300 * time.Millisecond            // heartbeats every 100ms
	ms := make([]*credits.Meter, n)
	for i := range ms {
		m, err := credits.New(db, cfg, c.now, log)
		if err != nil {
			t.Fatal(err)
		}
		ms[i] = m
	}
	for _, m := range ms {
		t.Cleanup(runMeter(m))
	}
	for i, m := range ms {
		for deadline := time.Now().Add(10 * time.Second); m.Replicas() != n; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("replica %d counts %d replicas after 10s, want %d", i, m.Replicas(), n)
			}
		}
	}
	return ms
}

// TestFleetLimitNotSplit: with a fleet limiter, one replica of four that
// gets all of a token's traffic gets its whole burst, not a quarter of
// it; the next request, through any replica, is refused with the
// limiter's wait and the IETF fields' inputs.
func TestFleetLimitNotSplit(t *testing.T) {
	c := newClock()
	lim := &switchable{Client: redistest.MustOpen(t, redistest.Prefix(t))}
	ms := fleetMeters(t, 4, lim, c, quiet)
	const rps, burst = 1, 8
	p := rateLimited(t, rps, burst)
	for i := range burst {
		d := settle(t, ms[0], p, 1)
		if !d.Allow || d.Usage.RateRPS != rps || d.Usage.RateBurst != burst {
			t.Fatalf("request %d of the burst through one replica of 4: got %+v, want allowed with the limit in Usage", i+1, d)
		}
	}
	for i, m := range ms {
		d := settle(t, m, p, 1)
		if d.Allow || d.Code != policy.CodeRateLimited || d.Usage.RetryAfter <= 0 || d.Usage.RetryAfter > time.Second/rps ||
			d.Usage.RateRemaining != 0 || d.Usage.RateRPS != rps {
			t.Errorf("replica %d after the burst: got %+v, want rate_limited with a wait in (0, 1s] and 0 remaining", i, d)
		}
	}
	for i, m := range ms {
		if !m.LimiterUp() || m.RateFallbacks() != 0 {
			t.Errorf("replica %d: got limiter up %t, %d fallbacks, want up and none", i, m.LimiterUp(), m.RateFallbacks())
		}
	}
}

// TestSpentTokenDoesNotHammerRedis: after the limiter refuses a token, the
// replica refuses it on its own until the limiter's wait is over, then
// asks once.
func TestSpentTokenDoesNotHammerRedis(t *testing.T) {
	c := newClock()
	lim := &switchable{Client: redistest.MustOpen(t, redistest.Prefix(t))}
	m := fleetMeters(t, 1, lim, c, quiet)[0]
	p := rateLimited(t, 1, 2)
	for settle(t, m, p, 1).Allow {
	}
	before := lim.calls.Load()
	var wait time.Duration
	for range 100 {
		d := settle(t, m, p, 1)
		if d.Allow || d.Code != policy.CodeRateLimited || d.Usage.RetryAfter <= 0 {
			t.Fatalf("a spent token: got %+v, want rate_limited with a wait", d)
		}
		wait = d.Usage.RetryAfter
	}
	if n := lim.calls.Load() - before; n != 0 {
		t.Errorf("100 requests to a spent token made %d calls to Redis, want none before its retry-after", n)
	}
	c.advance(wait)
	time.Sleep(wait) // Redis keeps its own time
	if d := settle(t, m, p, 1); !d.Allow {
		t.Errorf("after the wait %v: got %+v, want allowed", wait, d)
	}
	if n := lim.calls.Load() - before; n != 1 {
		t.Errorf("calls to Redis after the wait: got %d, want 1", n)
	}
}

// TestLimiterFallback: when Redis fails, each replica enforces its share
// (the rate split between live replicas: never an unbounded allow), says
// so once in the log and in its counter, leaves Redis alone for the retry
// interval, and goes back to the fleet-wide limit when Redis answers.
func TestLimiterFallback(t *testing.T) {
	c := newClock()
	logs := &logCount{n: map[slog.Level]int{}}
	lim := &switchable{Client: redistest.MustOpen(t, redistest.Prefix(t))}
	ms := fleetMeters(t, 2, lim, c, slog.New(logs))
	m := ms[0]
	const rps, burst = 1, 8
	p := rateLimited(t, rps, burst)
	lim.down.Store(true)

	allowed := 0
	for range 20 {
		d := settle(t, m, p, 1)
		if d.Allow {
			allowed++
			continue
		}
		if d.Code != policy.CodeRateLimited || d.Usage.RetryAfter <= 0 || d.Usage.RateBurst != burst {
			t.Fatalf("refused in fallback: got %+v, want rate_limited with a wait and the token's own limit", d)
		}
	}
	if allowed != burst/2 {
		t.Errorf("allowed by one of 2 replicas with Redis down: got %d, want its share of the burst, %d", allowed, burst/2)
	}
	if m.LimiterUp() || m.RateFallbacks() != 20 {
		t.Errorf("with Redis down: got up %t, %d fallbacks, want down and 20", m.LimiterUp(), m.RateFallbacks())
	}
	if n := logs.count(slog.LevelWarn); n != 1 {
		t.Errorf("warnings for 20 Checks with Redis down: got %d, want 1", n)
	}

	// Redis is back: nothing asks it until the retry interval has passed.
	lim.down.Store(false)
	settle(t, m, p, 1)
	if n := lim.calls.Load(); n != 0 {
		t.Errorf("calls to Redis within the retry interval: got %d, want 0", n)
	}
	c.advance(credits.DefaultConfig().LimiterRetry)
	d := settle(t, m, p, 1)
	if !d.Allow || !m.LimiterUp() || lim.calls.Load() != 1 {
		t.Errorf("after the retry interval: got %+v, up %t, %d calls, want allowed by Redis (a fresh fleet-wide burst), up, 1 call",
			d, m.LimiterUp(), lim.calls.Load())
	}
	if n := logs.count(slog.LevelInfo); n != 1 {
		t.Errorf("info lines on recovery: got %d, want 1", n)
	}
}

// TestLimiterTimeoutFallsBack: a Redis that does not answer within the
// limiter timeout is a failure like any other.
func TestLimiterTimeoutFallsBack(t *testing.T) {
	c := newClock()
	db, _ := storetest.MustOpen(t, store.SQLite)
	cfg := credits.DefaultConfig()
	cfg.Limiter = slowLimiter{}
	cfg.LimiterTimeout = 20 * time.Millisecond
	m, err := credits.New(db, cfg, c.now, quiet)
	if err != nil {
		t.Fatal(err)
	}
	p := rateLimited(t, 1, 3)
	got := 0
	for range 5 {
		if settle(t, m, p, 1).Allow {
			got++
		}
	}
	if got != 3 || m.RateFallbacks() != 5 || m.LimiterUp() {
		t.Errorf("with a Redis that hangs: got %d allowed, %d fallbacks, up %t, want 3 (the share of 1 replica), 5, down", got, m.RateFallbacks(), m.LimiterUp())
	}
}

// slowLimiter answers only when its context ends, as a Redis that hangs.
type slowLimiter struct{}

func (slowLimiter) Allow(ctx context.Context, _ string, _, _ int64) (bool, int64, time.Duration, error) {
	<-ctx.Done()
	return false, 0, 0, ctx.Err()
}

// TestLimiterSettingsChecked: a limiter needs a positive timeout and
// retry interval.
func TestLimiterSettingsChecked(t *testing.T) {
	db, _ := storetest.MustOpen(t, store.SQLite)
	for name, f := range map[string]func(*credits.Config){
		"zero timeout": func(c *credits.Config) { c.LimiterTimeout = 0 },
		"zero retry":   func(c *credits.Config) { c.LimiterRetry = 0 },
	} {
		cfg := credits.DefaultConfig()
		cfg.Limiter = slowLimiter{}
		f(&cfg)
		if _, err := credits.New(db, cfg, time.Now, quiet); err == nil {
			t.Errorf("%s: got no error, want one", name)
		}
	}
}

// TestAccountRateLimit: an account's rate limit is shared by all its
// tokens, beside each token's own, with and without a fleet limiter.
func TestAccountRateLimit(t *testing.T) {
	for name, lim := range map[string]func(t *testing.T) credits.Limiter{
		"redis":  func(t *testing.T) credits.Limiter { return redistest.MustOpen(t, redistest.Prefix(t)) },
		"shares": func(*testing.T) credits.Limiter { return nil },
	} {
		t.Run(name, func(t *testing.T) {
			m := fleetMeters(t, 1, lim(t), newClock(), quiet)[0]
			acc := &policy.Account{ID: policy.NewID("acc"), RateLimit: &policy.RateLimit{RPS: 1, Burst: 4}}
			free, own := policy.NewToken(acc.ID, policy.Publishable), policy.NewToken(acc.ID, policy.Publishable)
			own.RateLimit = &policy.RateLimit{RPS: 1, Burst: 1}
			pf, po := compile(t, free, acc), compile(t, own, acc)
			steps := []struct {
				p     *policy.Policy
				allow bool
				rps   int64 // the limit the headers describe
				msg   string
			}{
				{po, true, 1, ""},
				{po, false, 1, "this token is over"}, // its own limit, before the account's
				{pf, true, 1, ""},                    // a token without one: the account's
				{pf, true, 1, ""},
				{pf, true, 1, ""},                      // the account's burst of 4 is spent
				{pf, false, 1, "this account is over"}, // for every token
			}
			for i, st := range steps {
				d := settle(t, m, st.p, 1)
				if d.Allow != st.allow || d.Usage.RateRPS != st.rps || (!st.allow && (d.Code != policy.CodeRateLimited ||
					!strings.HasPrefix(d.Message, st.msg) || d.Usage.RetryAfter <= 0)) {
					t.Errorf("step %d: got %+v, want allow=%t and, when refused, rate_limited %q… with a wait", i+1, d, st.allow, st.msg)
				}
			}
		})
	}
}
