package policy_test

import (
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
)

// keySource streams the fake store's keys to LoadFilter, running during
// (if set) after the first key and failing with err (if set) at the end.
type keySource struct {
	s      *fakeStore
	during func()
	err    error
}

var _ policy.KeySource = (*keySource)(nil)

func (k *keySource) CountTokenKeys(context.Context) (int, error) {
	k.s.mu.Lock()
	defer k.s.mu.Unlock()
	return len(k.s.tokens), nil
}

func (k *keySource) EachTokenKey(_ context.Context, fn func(policy.Hash)) error {
	k.s.mu.Lock()
	keys := make([]policy.Hash, 0, len(k.s.tokens))
	for h := range k.s.tokens {
		keys = append(keys, h)
	}
	k.s.mu.Unlock()
	for i, h := range keys {
		fn(h)
		if i == 0 && k.during != nil {
			k.during()
		}
	}
	return k.err
}

func randomHash(tb testing.TB) policy.Hash {
	tb.Helper()
	var h policy.Hash
	_, _ = rand.Read(h[:])
	return h
}

// MustLoadFilter loads the cache's membership filter from the fake store.
func MustLoadFilter(tb testing.TB, cache *policy.Cache, s *fakeStore) {
	tb.Helper()
	if err := cache.LoadFilter(context.Background(), &keySource{s: s}); err != nil {
		tb.Fatalf("LoadFilter: %v", err)
	}
}

// mustFilteredCache returns a cache over s whose filter misses are looked
// up lookups times a second.
func mustFilteredCache(t *testing.T, s *fakeStore, c *clock, lookups int) *policy.Cache {
	t.Helper()
	cfg := testCacheConfig()
	cfg.FilterMissLookups = lookups
	cache, err := policy.NewCache(s, cfg, c.now, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cache
}

// addToken puts a new token in the fake store, as a creation that no
// replica has heard of yet, and returns its hash.
func addToken(s *fakeStore) policy.Hash {
	return policy.HashValue(s.add(policy.NewToken("acc_1", policy.Publishable)))
}

// The filter never forgets a key, whatever it was sized for and however
// many goroutines add and ask at once: a false negative would refuse a
// live token.
func TestMembershipHasNoFalseNegatives(t *testing.T) {
	for _, tc := range []struct {
		name           string
		capacity, keys int
	}{
		{"empty room", 1, 1},
		{"under capacity", 10_000, 5_000},
		{"at capacity", 10_000, 10_000},
		{"ten times over capacity", 1_000, 10_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := policy.NewMembership(tc.capacity)
			keys := make([]policy.Hash, tc.keys)
			for i := range keys {
				keys[i] = randomHash(t)
			}
			var wg sync.WaitGroup
			const workers = 4
			for w := range workers {
				wg.Go(func() {
					for i := w; i < len(keys); i += workers {
						f.Add(keys[i])
						if !f.MayContain(keys[i]) {
							t.Errorf("key %d missing right after its add", i)
						}
						// A key added by another worker earlier.
						if j := i - workers; j >= 0 && !f.MayContain(keys[j]) {
							t.Errorf("key %d missing while others were added", j)
						}
					}
				})
			}
			wg.Wait()
			for i, h := range keys {
				if !f.MayContain(h) {
					t.Fatalf("key %d of %d missing", i, len(keys))
				}
			}
			// A key that sets no new bit is not counted: within capacity
			// that is about 1% of them; far over it, most.
			if got := f.Len(); got > tc.keys || (tc.keys <= tc.capacity && got < tc.keys*95/100) {
				t.Errorf("got %d entries, want about %d", got, tc.keys)
			}
			if got, want := f.Full(), tc.keys > tc.capacity; got != want {
				t.Errorf("Full: got %v, want %v", got, want)
			}
		})
	}
}

// At capacity about 1% of hashes never added pass the filter, and each
// filter is seeded afresh, so two filters over the same keys let through
// different unknown tokens.
func TestMembershipFalsePositiveRate(t *testing.T) {
	const n, probes = 50_000, 200_000
	a, b := policy.NewMembership(n), policy.NewMembership(n)
	for range n {
		h := randomHash(t)
		a.Add(h)
		b.Add(h)
	}
	var inA, inBoth int
	for range probes {
		h := randomHash(t)
		if a.MayContain(h) {
			inA++
			if b.MayContain(h) {
				inBoth++
			}
		}
	}
	rate := float64(inA) / probes
	// 2,000 expected; 1.3% is more than ten standard deviations away.
	if rate > 0.013 || rate == 0 {
		t.Errorf("false-positive rate at capacity %.4f, want about %.2f", rate, policy.MembershipFalsePositiveRate)
	}
	if inBoth > inA/10 {
		t.Errorf("%d of %d false positives of one filter pass the other too, want about 1%%", inBoth, inA)
	}
	if got, max := a.Bytes(), n*2; got > max {
		t.Errorf("%d bytes for %d keys, want at most %d", got, n, max)
	}
}

// FuzzMembership adds every 32-byte hash of the input and checks that each
// is found.
func FuzzMembership(f *testing.F) {
	f.Add(make([]byte, 32), 1)
	f.Add([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"), 1)
	f.Fuzz(func(t *testing.T, data []byte, capacity int) {
		m := policy.NewMembership(capacity % 100_000)
		var keys []policy.Hash
		for len(data) >= 32 {
			var h policy.Hash
			copy(h[:], data)
			data = data[32:]
			m.Add(h)
			keys = append(keys, h)
		}
		for _, h := range keys {
			if !m.MayContain(h) {
				t.Fatalf("%s added and not found", h)
			}
		}
	})
}

func TestCacheFilter(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// lookups is CacheConfig.FilterMissLookups.
		lookups int
		// run returns the hash to ask for, having set the stage.
		run func(t *testing.T, s *fakeStore, cache *policy.Cache) policy.Hash
		// found is whether the token is found; queries how many store
		// look-ups the last Get made; refused whether the filter refused it.
		// fails is whether Get returns an error other than not found.
		found, fails bool
		queries      int64
		refused      bool
	}{
		{name: "no filter loaded yet: an unknown token is looked up", lookups: 0,
			run: func(t *testing.T, s *fakeStore, cache *policy.Cache) policy.Hash {
				return randomHash(t)
			}, found: false, queries: 1},
		{name: "an unknown token is refused without a query", lookups: 0,
			run: func(t *testing.T, s *fakeStore, cache *policy.Cache) policy.Hash {
				MustLoadFilter(t, cache, s)
				return randomHash(t)
			}, found: false, queries: 0, refused: true},
		{name: "a token in the store when the filter loaded passes", lookups: 0,
			run: func(t *testing.T, s *fakeStore, cache *policy.Cache) policy.Hash {
				h := addToken(s)
				MustLoadFilter(t, cache, s)
				return h
			}, found: true, queries: 1},
		{name: "a token created after the load passes once announced", lookups: 0,
			run: func(t *testing.T, s *fakeStore, cache *policy.Cache) policy.Hash {
				MustLoadFilter(t, cache, s)
				h := addToken(s)
				cache.Invalidate(h)
				return h
			}, found: true, queries: 1},
		{name: "a token created during the load and announced then passes", lookups: 0,
			run: func(t *testing.T, s *fakeStore, cache *policy.Cache) policy.Hash {
				addToken(s)
				var h policy.Hash
				src := &keySource{s: s, during: func() { h = addToken(s); cache.Invalidate(h) }}
				if err := cache.LoadFilter(ctx, src); err != nil {
					t.Fatal(err)
				}
				return h
			}, found: true, queries: 1},
		{name: "a token created after the load and not yet announced is looked up within the allowance", lookups: 5,
			run: func(t *testing.T, s *fakeStore, cache *policy.Cache) policy.Hash {
				MustLoadFilter(t, cache, s)
				return addToken(s)
			}, found: true, queries: 1},
		{name: "a token created after the load and not yet announced is refused past the allowance", lookups: 3,
			run: func(t *testing.T, s *fakeStore, cache *policy.Cache) policy.Hash {
				MustLoadFilter(t, cache, s)
				for range 3 {
					cache.Get(ctx, randomHash(t)) // a flood of made-up tokens
				}
				return addToken(s)
			}, found: false, queries: 0, refused: true},
		{name: "a deleted token falls through to the store, which says it is gone", lookups: 0,
			run: func(t *testing.T, s *fakeStore, cache *policy.Cache) policy.Hash {
				h := addToken(s)
				MustLoadFilter(t, cache, s)
				s.mu.Lock()
				delete(s.tokens, h)
				s.mu.Unlock()
				cache.Invalidate(h)
				return h
			}, found: false, queries: 1},
		{name: "a rolled token's new value passes once announced", lookups: 0,
			run: func(t *testing.T, s *fakeStore, cache *policy.Cache) policy.Hash {
				old := addToken(s)
				MustLoadFilter(t, cache, s)
				s.mu.Lock()
				tok := s.tokens[old]
				delete(s.tokens, old)
				s.mu.Unlock()
				h := policy.HashValue(s.add(tok))
				cache.Invalidate(old)
				cache.Invalidate(h)
				return h
			}, found: true, queries: 1},
		{name: "after changes were lost the filter is dropped and unknown tokens are looked up", lookups: 0,
			run: func(t *testing.T, s *fakeStore, cache *policy.Cache) policy.Hash {
				MustLoadFilter(t, cache, s)
				cache.InvalidateAll()
				return randomHash(t)
			}, found: false, queries: 1},
		{name: "a load overlapping lost changes is not put in force", lookups: 0,
			run: func(t *testing.T, s *fakeStore, cache *policy.Cache) policy.Hash {
				addToken(s)
				src := &keySource{s: s, during: cache.InvalidateAll}
				if err := cache.LoadFilter(ctx, src); err == nil {
					t.Error("LoadFilter: got nil, want an error")
				}
				return randomHash(t)
			}, found: false, queries: 1},
		{name: "a token the filter rules out is refused when its look-up fails", lookups: 5,
			run: func(t *testing.T, s *fakeStore, cache *policy.Cache) policy.Hash {
				MustLoadFilter(t, cache, s)
				s.err = errors.New("store down")
				return randomHash(t)
			}, found: false, queries: 1, refused: true},
		{name: "a token the filter may hold is an error when its look-up fails", lookups: 5,
			run: func(t *testing.T, s *fakeStore, cache *policy.Cache) policy.Hash {
				h := addToken(s)
				MustLoadFilter(t, cache, s)
				s.err = errors.New("store down")
				return h
			}, found: false, queries: 1, fails: true},
		{name: "a failed load leaves the filter in force", lookups: 0,
			run: func(t *testing.T, s *fakeStore, cache *policy.Cache) policy.Hash {
				MustLoadFilter(t, cache, s)
				if err := cache.LoadFilter(ctx, &keySource{s: s, err: errors.New("store down")}); err == nil {
					t.Error("LoadFilter: got nil, want an error")
				}
				return randomHash(t)
			}, found: false, queries: 0, refused: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, c := newFakeStore(), newClock()
			cache := mustFilteredCache(t, s, c, tc.lookups)
			h := tc.run(t, s, cache)
			before, refusals := s.calls.Load(), cache.Stats().FilterRefusals
			_, err := cache.Get(ctx, h)
			if found := err == nil; found != tc.found {
				t.Fatalf("found: got %v (%v), want %v", found, err, tc.found)
			}
			if err != nil && errors.Is(err, policy.ErrNotFound) == tc.fails {
				t.Fatalf("got %v, want an error other than not found %v", err, tc.fails)
			}
			if got := s.calls.Load() - before; got != tc.queries {
				t.Errorf("store queries: got %d, want %d", got, tc.queries)
			}
			if got := cache.Stats().FilterRefusals - refusals; got != map[bool]uint64{true: 1}[tc.refused] {
				t.Errorf("filter refusals: got %d, want refused %v", got, tc.refused)
			}
		})
	}
}

// A token the filter refused is not remembered as unknown: once its
// creation is announced, the next request passes at once, not a negative
// TTL later. A deleted token, looked up and found gone, is remembered as
// unknown as before.
func TestCacheFilterRefusalIsNotRemembered(t *testing.T) {
	ctx := context.Background()
	s, c := newFakeStore(), newClock()
	cache := mustFilteredCache(t, s, c, 0)
	MustLoadFilter(t, cache, s)
	h := addToken(s)
	if _, err := cache.Get(ctx, h); !errors.Is(err, policy.ErrNotFound) {
		t.Fatalf("before the announcement: got %v, want not found", err)
	}
	cache.Invalidate(h)
	if _, err := cache.Get(ctx, h); err != nil {
		t.Fatalf("right after the announcement: got %v, want found", err)
	}

	s.mu.Lock()
	delete(s.tokens, h)
	s.mu.Unlock()
	cache.Invalidate(h)
	for range 3 {
		if _, err := cache.Get(ctx, h); !errors.Is(err, policy.ErrNotFound) {
			t.Fatalf("deleted: got %v, want not found", err)
		}
	}
	if st := cache.Stats(); st.NegativeHits != 2 || st.FilterRefusals != 1 {
		t.Errorf("got %d negative hits and %d refusals, want 2 and 1", st.NegativeHits, st.FilterRefusals)
	}
}

// The allowance of look-ups for tokens the filter rules out refills with
// time, and a repeated unknown token is answered by the negative cache
// without spending it.
func TestCacheFilterMissLookupsAllowance(t *testing.T) {
	ctx := context.Background()
	s, c := newFakeStore(), newClock()
	cache := mustFilteredCache(t, s, c, 4)
	MustLoadFilter(t, cache, s)
	repeated := randomHash(t)
	cache.Get(ctx, repeated)
	for range 10 {
		cache.Get(ctx, repeated)
	}
	for range 10 {
		cache.Get(ctx, randomHash(t))
	}
	st := cache.Stats()
	if st.FilterLookups != 4 || st.FilterRefusals != 7 || s.calls.Load() != 4 {
		t.Errorf("got %d look-ups (%d queries), %d refusals, want 4 (4), 7", st.FilterLookups, s.calls.Load(), st.FilterRefusals)
	}
	c.advance(500 * time.Millisecond)
	for range 10 {
		cache.Get(ctx, randomHash(t))
	}
	if got := cache.Stats().FilterLookups; got != 6 {
		t.Errorf("half a second later: got %d look-ups, want 6", got)
	}
}

// A filter filled past its room by tokens created since it loaded asks
// to be rebuilt; so does one dropped because changes were lost.
func TestCacheFilterWanted(t *testing.T) {
	s, c := newFakeStore(), newClock()
	cache := mustFilteredCache(t, s, c, 0)
	MustLoadFilter(t, cache, s)
	select {
	case <-cache.FilterWanted():
		t.Fatal("a rebuild wanted right after the load")
	default:
	}
	room := policy.MembershipCapacity(0)
	for range room + room/10 {
		cache.Invalidate(randomHash(t))
	}
	select {
	case <-cache.FilterWanted():
	default:
		t.Fatalf("no rebuild wanted with %d keys in a filter built for %d", cache.Stats().FilterEntries, room)
	}
	MustLoadFilter(t, cache, s)
	cache.InvalidateAll()
	select {
	case <-cache.FilterWanted():
	default:
		t.Fatal("no rebuild wanted after changes were lost")
	}
	if cache.Stats().FilterLoaded {
		t.Error("the filter is still in force after changes were lost")
	}
}
