package policy_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
)

// batchStore is fakeStore that also answers many hashes at once. Each
// batch query waits for a value on gate, and the failAt-th one (from 1)
// fails.
type batchStore struct {
	*fakeStore
	gate   chan struct{}
	failAt int

	mu      sync.Mutex
	batches [][]policy.Hash
}

var _ policy.BatchStore = (*batchStore)(nil)

func (s *batchStore) TokensByHash(ctx context.Context, hs []policy.Hash) (map[policy.Hash]policy.Loaded, error) {
	s.mu.Lock()
	s.batches = append(s.batches, hs)
	n := len(s.batches)
	s.mu.Unlock()
	select {
	case <-s.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if n == s.failAt {
		return nil, errors.New("batch failed")
	}
	out := map[policy.Hash]policy.Loaded{}
	for _, h := range hs {
		if t, a, err := s.fakeStore.TokenByHash(ctx, h); err == nil {
			out[h] = policy.Loaded{Token: t, Account: a}
		}
	}
	return out, nil
}

func (s *batchStore) sizes() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for _, b := range s.batches {
		out = append(out, len(b))
	}
	return out
}

// waitFor polls cond for up to a few seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

type got struct {
	id  string
	err error
}

// TestCacheBatchesConcurrentMisses: a lone miss is queried at once, alone;
// misses arriving while it is in flight go together in the next query,
// each caller gets its own token, an unknown hash is not found, and a
// failed query fails its own batch only.
func TestCacheBatchesConcurrentMisses(t *testing.T) {
	s := &batchStore{fakeStore: newFakeStore(), gate: make(chan struct{}), failAt: 2}
	cache := mustCache(t, s, newClock())
	var hs []policy.Hash
	var ids []string
	for range 5 {
		tok := policy.NewToken("acc_1", policy.Publishable)
		hs, ids = append(hs, policy.HashValue(s.add(tok))), append(ids, tok.ID)
	}
	unknown := policy.HashValue(policy.NewValue(policy.Publishable))

	results := make([]chan got, 6)
	get := func(i int, h policy.Hash) {
		results[i] = make(chan got, 1)
		go func() {
			p, err := cache.Get(context.Background(), h)
			results[i] <- got{p.TokenID, err}
		}()
	}
	// A lone miss: its query starts at once, with it alone.
	get(0, hs[0])
	waitFor(t, "the first query", func() bool { return len(s.sizes()) == 1 })
	// Misses while it is in flight wait for the next query, together.
	get(1, hs[1])
	get(2, hs[2])
	waitFor(t, "two misses queued", func() bool { return cache.QueuedLookups() == 2 })
	s.gate <- struct{}{} // the first query answers
	waitFor(t, "the second query", func() bool { return len(s.sizes()) == 2 })
	// Misses while the second (failing) query is in flight go in a third.
	get(3, hs[3])
	get(4, unknown)
	get(5, hs[4])
	waitFor(t, "three more misses queued", func() bool { return cache.QueuedLookups() == 3 })
	s.gate <- struct{}{} // the second query fails
	s.gate <- struct{}{} // the third answers

	want := []struct {
		id       string
		notFound bool
		failed   bool
	}{{id: ids[0]}, {failed: true}, {failed: true}, {id: ids[3]}, {notFound: true}, {id: ids[4]}}
	for i, w := range want {
		r := <-results[i]
		switch {
		case w.failed:
			if r.err == nil || errors.Is(r.err, policy.ErrNotFound) {
				t.Errorf("miss %d: got %q, %v; want the batch's error", i, r.id, r.err)
			}
		case w.notFound:
			if !errors.Is(r.err, policy.ErrNotFound) {
				t.Errorf("miss %d: got %q, %v; want not found", i, r.id, r.err)
			}
		case r.err != nil || r.id != w.id:
			t.Errorf("miss %d: got %q, %v; want %q", i, r.id, r.err, w.id)
		}
	}
	if g := s.sizes(); len(g) != 3 || g[0] != 1 || g[1] != 2 || g[2] != 3 {
		t.Errorf("batches of %v, want [1 2 3]", g)
	}
}

// TestCacheBatchAsksOnceForAKey: concurrent misses of one token share one
// look-up, in a batch as without one.
func TestCacheBatchAsksOnceForAKey(t *testing.T) {
	s := &batchStore{fakeStore: newFakeStore(), gate: make(chan struct{})}
	cache := mustCache(t, s, newClock())
	first := policy.HashValue(s.add(policy.NewToken("acc_1", policy.Publishable)))
	tok := policy.NewToken("acc_1", policy.Publishable)
	h := policy.HashValue(s.add(tok))
	go cache.Get(context.Background(), first) // holds the first query in flight
	waitFor(t, "the first query", func() bool { return len(s.sizes()) == 1 })
	results := make(chan got, 20)
	for range 20 {
		go func() {
			p, err := cache.Get(context.Background(), h)
			results <- got{p.TokenID, err}
		}()
	}
	waitFor(t, "a look-up queued", func() bool { return cache.QueuedLookups() == 1 })
	time.Sleep(50 * time.Millisecond) // let the other misses pile up on it
	close(s.gate)
	for range 20 {
		if r := <-results; r.err != nil || r.id != tok.ID {
			t.Errorf("got %q, %v; want %q", r.id, r.err, tok.ID)
		}
	}
	if g := s.sizes(); len(g) != 2 || g[1] != 1 {
		t.Errorf("batches of %v, want [1 1]: 20 misses of one token asked once", g)
	}
}

// TestCacheMissStartsNoGoroutine: a miss waits for its look-up in its own
// goroutine; the store is asked from one goroutine per query in flight,
// not one per miss (a goroutine per miss was a measurable part of what a
// warming replica spent per miss).
func TestCacheMissStartsNoGoroutine(t *testing.T) {
	s := &batchStore{fakeStore: newFakeStore(), gate: make(chan struct{})}
	cache := mustCache(t, s, newClock())
	const misses = 20
	var hs []policy.Hash
	for range misses {
		hs = append(hs, policy.HashValue(s.add(policy.NewToken("acc_1", policy.Publishable))))
	}
	before := runtime.NumGoroutine()
	var wg sync.WaitGroup
	for _, h := range hs {
		wg.Go(func() {
			if _, err := cache.Get(context.Background(), h); err != nil {
				t.Error(err)
			}
		})
	}
	waitFor(t, "one query in flight and the rest queued", func() bool {
		g := s.sizes()
		return len(g) == 1 && g[0]+cache.QueuedLookups() == misses
	})
	// The askers, and the one goroutine that queries.
	if extra := runtime.NumGoroutine() - before; extra > misses+1 {
		t.Errorf("%d goroutines for %d misses, want at most %d", extra, misses, misses+1)
	}
	close(s.gate)
	wg.Wait()
}
