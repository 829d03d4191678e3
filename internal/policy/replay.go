package policy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"time"
)

// ReplayStore remembers the signatures of allowed signed requests, so that
// each is allowed once. The Decider calls Remember only for a request that
// every rule allows, before the meter charges it, and Forget when the meter
// then refuses it: a signature is used up only by a request that got
// through. A store is per replica (ReplayCache) or fleet-wide.
type ReplayStore interface {
	// Remember records sig, a verified signature of tokenID's, until
	// the last moment its request is fresh, and reports whether it is
	// new: false when it is already remembered. It is an atomic check
	// and insert: of any number of concurrent calls with the same
	// signature, at most one returns true. When the store cannot remember
	// (it is full, or unreachable) it returns an error and the request
	// must be refused: a *ReplayFullError when it is full.
	Remember(ctx context.Context, tokenID string, sig [sha256.Size]byte, until time.Time) (fresh bool, err error)
	// Forget drops a signature that Remember returned fresh for, when its
	// request was refused after all, so that it may be sent again.
	Forget(ctx context.Context, tokenID string, sig [sha256.Size]byte) error
}

// ReplayFullError is Remember's refusal when a token's share of the store,
// or the whole store, is full for now.
type ReplayFullError struct {
	// Token is set when the token's own share is full, rather than the
	// store.
	Token bool
	// RetryAfter is when room will have been made.
	RetryAfter time.Duration
}

func (e *ReplayFullError) Error() string {
	if e.Token {
		return fmt.Sprintf("policy: this token's replay memory is full for %v", e.RetryAfter)
	}
	return fmt.Sprintf("policy: the replay memory is full for %v", e.RetryAfter)
}

// ReplayConfig sizes a ReplayCache.
type ReplayConfig struct {
	// Size is the signatures one generation holds, all tokens together.
	Size int
	// PerToken is the signatures one generation holds for one token, so
	// that no token's traffic can take another's room.
	PerToken int
}

// ReplayCache is a ReplayStore in this replica's memory. It keeps two
// generations of signatures: the current one, which takes new signatures,
// and the previous one. A generation is dropped only once every signature
// in it is past its until, so nothing is forgotten while it could still
// be replayed; the current generation then becomes the previous and a new
// one starts. Each generation holds at most Size signatures and PerToken
// of any one token: past either bound, Remember refuses rather than
// forgets, until the next generation starts. Its maps hold no pointers,
// so a million signatures cost the garbage collector nothing to scan.
type ReplayCache struct {
	mu        sync.Mutex
	cfg       ReplayConfig
	seed      maphash.Seed
	now       func() time.Time
	cur, prev replayGeneration
}

// replayGeneration is one generation's signatures and, keyed by a hash of
// the token id, how many of them each token has.
type replayGeneration struct {
	sigs   map[[sha256.Size]byte]struct{}
	counts map[uint64]uint32
	until  int64 // unix nanoseconds: its last signature is fresh up to then
}

func newReplayGeneration(hint int) replayGeneration {
	return replayGeneration{sigs: make(map[[sha256.Size]byte]struct{}, hint), counts: map[uint64]uint32{}}
}

// NewReplayCache returns an empty cache; now is its clock.
func NewReplayCache(cfg ReplayConfig, now func() time.Time) (*ReplayCache, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &ReplayCache{cfg: cfg, seed: maphash.MakeSeed(), now: now,
		cur: newReplayGeneration(0), prev: newReplayGeneration(0)}, nil
}

// Validate reports a size that cannot work.
func (c ReplayConfig) Validate() error {
	switch {
	case c.Size < 1:
		return errors.New("the replay memory must hold at least 1 signature")
	case c.PerToken < 1:
		return errors.New("one token's share of the replay memory must be at least 1")
	case c.PerToken > c.Size:
		return fmt.Errorf("one token's share of the replay memory (%d) must not exceed its size (%d)", c.PerToken, c.Size)
	}
	return nil
}

var _ ReplayStore = (*ReplayCache)(nil)

// Remember implements ReplayStore. It never fails but to refuse with a
// *ReplayFullError.
func (r *ReplayCache) Remember(_ context.Context, tokenID string, sig [sha256.Size]byte, until time.Time) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.now().UnixNano()
	r.advance(t)
	if _, ok := r.cur.sigs[sig]; ok {
		return false, nil
	}
	if _, ok := r.prev.sigs[sig]; ok {
		return false, nil
	}
	tok := maphash.String(r.seed, tokenID)
	switch {
	case r.cur.counts[tok] >= uint32(r.cfg.PerToken):
		return false, &ReplayFullError{Token: true, RetryAfter: r.retryAfter(t)}
	case len(r.cur.sigs) >= r.cfg.Size:
		return false, &ReplayFullError{RetryAfter: r.retryAfter(t)}
	}
	r.cur.sigs[sig] = struct{}{}
	r.cur.counts[tok]++
	r.cur.until = max(r.cur.until, until.UnixNano())
	return true, nil
}

// Forget implements ReplayStore. It never fails.
func (r *ReplayCache) Forget(_ context.Context, tokenID string, sig [sha256.Size]byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	tok := maphash.String(r.seed, tokenID)
	for _, g := range []*replayGeneration{&r.cur, &r.prev} {
		if _, ok := g.sigs[sig]; ok {
			delete(g.sigs, sig)
			if g.counts[tok] <= 1 {
				delete(g.counts, tok)
			} else {
				g.counts[tok]--
			}
			return nil
		}
	}
	return nil
}

// advance drops what has expired as of t: both generations when neither
// holds a fresh signature, else the previous one, once all of its are
// past, making the current one previous.
func (r *ReplayCache) advance(t int64) {
	if t <= r.prev.until || len(r.prev.sigs) == 0 && len(r.cur.sigs) == 0 {
		return
	}
	switch {
	case t > r.cur.until:
		r.prev, r.cur = newReplayGeneration(0), newReplayGeneration(0)
	default:
		r.prev, r.cur = r.cur, newReplayGeneration(len(r.cur.sigs))
	}
}

// retryAfter is how long until advance will next make room: when every
// signature of the previous generation is past.
func (r *ReplayCache) retryAfter(t int64) time.Duration {
	return max(time.Duration(r.prev.until-t+1), time.Second)
}
