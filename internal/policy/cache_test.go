package policy_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
)

// fakeStore is a policy.Store in memory, with a switch to fail and a hook
// that runs inside a look-up.
type fakeStore struct {
	mu      sync.Mutex
	tokens  map[policy.Hash]*policy.Token
	account *policy.Account
	err     error
	calls   atomic.Int64
	during  func() // runs inside TokenByHash, after it has read, before it answers
}

var _ policy.Store = (*fakeStore)(nil)

func newFakeStore() *fakeStore {
	return &fakeStore{tokens: map[policy.Hash]*policy.Token{}, account: &policy.Account{ID: "acc_1", Name: "a"}}
}

func (s *fakeStore) add(t *policy.Token) string {
	v := policy.NewValue(t.Kind)
	s.mu.Lock()
	s.tokens[policy.HashValue(v)] = t
	s.mu.Unlock()
	return v
}

func (s *fakeStore) TokenByHash(ctx context.Context, h policy.Hash) (*policy.Token, *policy.Account, error) {
	s.calls.Add(1)
	s.mu.Lock()
	err, t, ok := s.err, s.tokens[h], false
	var tc policy.Token
	if t != nil {
		tc, ok = *t, true
	}
	ac := *s.account
	s.mu.Unlock()
	if s.during != nil {
		s.during() // what this call answers was read before
	}
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return nil, nil, fmt.Errorf("token: %w", policy.ErrNotFound)
	}
	return &tc, &ac, nil
}

// clock is a settable time source.
type clock struct{ t atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.t.Store(time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) now() time.Time          { return time.Unix(0, c.t.Load()).UTC() }
func (c *clock) advance(d time.Duration) { c.t.Add(int64(d)) }

func testCacheConfig() policy.CacheConfig {
	return policy.CacheConfig{Size: 100, TTL: time.Minute, NegativeSize: 100, NegativeTTL: 10 * time.Second,
		MaxStaleness: 10 * time.Minute, StoreTimeout: time.Second}
}

func mustCache(t *testing.T, s policy.Store, c *clock) *policy.Cache {
	t.Helper()
	cache, err := policy.NewCache(s, testCacheConfig(), c.now, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cache
}

func TestCacheHitsAndTTL(t *testing.T) {
	s, c := newFakeStore(), newClock()
	cache := mustCache(t, s, c)
	v := s.add(policy.NewToken("acc_1", policy.Publishable))
	h := policy.HashValue(v)
	for range 3 {
		if _, err := cache.Get(context.Background(), h); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.calls.Load(); got != 1 {
		t.Errorf("%d store calls for 3 gets, want 1", got)
	}
	c.advance(time.Minute)
	if _, err := cache.Get(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	if got := s.calls.Load(); got != 2 {
		t.Errorf("%d store calls after the TTL, want 2", got)
	}
	st := cache.Stats()
	if st.Hits != 2 || st.Misses != 2 || st.Entries != 1 {
		t.Errorf("stats %+v, want 2 hits, 2 misses, 1 entry", st)
	}
}

func TestCacheNegative(t *testing.T) {
	s, c := newFakeStore(), newClock()
	cache := mustCache(t, s, c)
	h := policy.HashValue(policy.NewValue(policy.Publishable))
	for range 5 {
		if _, err := cache.Get(context.Background(), h); !errors.Is(err, policy.ErrNotFound) {
			t.Fatalf("got %v, want not found", err)
		}
	}
	if got := s.calls.Load(); got != 1 {
		t.Errorf("%d store calls for an unknown token asked 5 times, want 1", got)
	}
	c.advance(10 * time.Second)
	cache.Get(context.Background(), h)
	if got := s.calls.Load(); got != 2 {
		t.Errorf("%d store calls after the negative TTL, want 2", got)
	}
	// A token created later is seen as soon as its key is announced.
	v := policy.NewValue(policy.Publishable)
	h2 := policy.HashValue(v)
	cache.Get(context.Background(), h2)
	s.mu.Lock()
	s.tokens[h2] = policy.NewToken("acc_1", policy.Publishable)
	s.mu.Unlock()
	cache.Invalidate(h2)
	if _, err := cache.Get(context.Background(), h2); err != nil {
		t.Errorf("new token after invalidation: %v", err)
	}
}

func TestCacheSingleflight(t *testing.T) {
	s, c := newFakeStore(), newClock()
	release := make(chan struct{})
	s.during = func() { <-release }
	cache := mustCache(t, s, c)
	v := s.add(policy.NewToken("acc_1", policy.Publishable))
	h := policy.HashValue(v)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, err := cache.Get(context.Background(), h); err != nil {
				t.Error(err)
			}
		})
	}
	// Let the waiters pile up on the one load, then release it.
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	if got := s.calls.Load(); got != 1 {
		t.Errorf("%d store calls for 50 concurrent misses, want 1", got)
	}
}

func TestCacheServesStaleWhileStoreIsDown(t *testing.T) {
	s, c := newFakeStore(), newClock()
	cache := mustCache(t, s, c)
	v := s.add(policy.NewToken("acc_1", policy.Publishable))
	h := policy.HashValue(v)
	if _, err := cache.Get(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	s.err = errors.New("connection refused")
	c.advance(2 * time.Minute) // past the TTL, inside the staleness bound
	if _, err := cache.Get(context.Background(), h); err != nil {
		t.Errorf("cached token with the store down: %v, want it served stale", err)
	}
	unknown := policy.HashValue(policy.NewValue(policy.Publishable))
	if _, err := cache.Get(context.Background(), unknown); err == nil || errors.Is(err, policy.ErrNotFound) {
		t.Errorf("uncached token with the store down: got %v, want a store error", err)
	}
	c.advance(10 * time.Minute) // past the staleness bound
	if _, err := cache.Get(context.Background(), h); err == nil {
		t.Error("token served past the staleness bound")
	}
	// A token known to have changed is not served stale.
	s.err = nil
	cache.Get(context.Background(), h)
	s.err = errors.New("down")
	cache.Invalidate(h)
	if _, err := cache.Get(context.Background(), h); err == nil {
		t.Error("invalidated token served while the store is down")
	}
	if st := cache.Stats(); st.StaleServed != 1 {
		t.Errorf("stale served %d, want 1", st.StaleServed)
	}
}

func TestCacheAccountInvalidation(t *testing.T) {
	s, c := newFakeStore(), newClock()
	cache := mustCache(t, s, c)
	h1 := policy.HashValue(s.add(policy.NewToken("acc_1", policy.Publishable)))
	h2 := policy.HashValue(s.add(policy.NewToken("acc_1", policy.Publishable)))
	cache.Get(context.Background(), h1)
	cache.Get(context.Background(), h2)
	before := s.calls.Load()
	cache.InvalidateAccount("acc_2") // another account: nothing happens
	cache.Get(context.Background(), h1)
	if s.calls.Load() != before {
		t.Error("invalidating another account reloaded a token")
	}
	cache.InvalidateAccount("acc_1")
	cache.Get(context.Background(), h1)
	cache.Get(context.Background(), h2)
	if got := s.calls.Load() - before; got != 2 {
		t.Errorf("%d reloads after the account changed, want 2", got)
	}
	// And the reloaded entries are fresh again.
	cache.Get(context.Background(), h1)
	if got := s.calls.Load() - before; got != 2 {
		t.Errorf("%d reloads, want the reloaded entries cached", got)
	}
}

// TestCacheInvalidationDuringLoad covers the race a notification can lose:
// the load read the row before the change, the notification arrived while
// the load was in flight. The loaded policy must not stay cached.
func TestCacheInvalidationDuringLoad(t *testing.T) {
	s, c := newFakeStore(), newClock()
	cache := mustCache(t, s, c)
	tok := policy.NewToken("acc_1", policy.Publishable)
	h := policy.HashValue(s.add(tok))
	s.during = func() {
		s.during = nil
		cache.Invalidate(h) // the change lands mid-load
	}
	cache.Get(context.Background(), h)
	cache.Get(context.Background(), h)
	if got := s.calls.Load(); got != 2 {
		t.Errorf("%d store calls, want the load that raced a change not cached (2)", got)
	}
}

// A request that arrives after a change must not join a query that began
// before it: it would be answered with what the change replaced.
func TestCacheRequestAfterChangeStartsItsOwnLoad(t *testing.T) {
	s, c := newFakeStore(), newClock()
	cache := mustCache(t, s, c)
	tok := policy.NewToken("acc_1", policy.Publishable)
	h := policy.HashValue(s.add(tok))
	reading, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	s.during = func() { s.during = nil; close(reading); <-release }
	go cache.Get(context.Background(), h) // reads the token enabled, then stalls
	<-reading
	s.mu.Lock()
	tok.Enabled = false // the change commits and is announced meanwhile
	s.mu.Unlock()
	cache.Invalidate(h)
	type answer struct {
		d   policy.Decision
		err error
	}
	got := make(chan answer, 1)
	go func() {
		p, err := cache.Get(context.Background(), h)
		got <- answer{p.Evaluate(&policy.Request{}, c.now(), policy.EvalOptions{}), err}
	}()
	select {
	case a := <-got:
		if a.err != nil || a.d.Code != policy.CodeTokenDisabled {
			t.Errorf("after the change: %+v (%v), want token_disabled", a.d, a.err)
		}
	case <-time.After(time.Second):
		t.Fatal("a request after the change waited on the query that began before it")
	}
}

func TestCacheConfigure(t *testing.T) {
	s, c := newFakeStore(), newClock()
	cache := mustCache(t, s, c)
	for range 10 {
		cache.Get(context.Background(), policy.HashValue(s.add(policy.NewToken("acc_1", policy.Publishable))))
	}
	cfg := testCacheConfig()
	cfg.Size = 4
	if err := cache.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	if got := cache.Stats().Entries; got != 4 {
		t.Errorf("%d entries after shrinking to 4", got)
	}
	cfg.TTL = 0
	if err := cache.Configure(cfg); err == nil {
		t.Error("a zero TTL was accepted")
	}
	if got := cache.Config().Size; got != 4 {
		t.Errorf("config size %d after a refused change, want 4", got)
	}
}

func TestCacheCallerGivesUp(t *testing.T) {
	s, c := newFakeStore(), newClock()
	release := make(chan struct{})
	s.during = func() { <-release }
	defer close(release)
	cache := mustCache(t, s, c)
	h := policy.HashValue(s.add(policy.NewToken("acc_1", policy.Publishable)))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := cache.Get(ctx, h); policy.ErrorCode(err) != policy.EUnavailable {
		t.Errorf("got %v, want unavailable when the caller's deadline passes", err)
	}
}
