package policy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// ReplayFallback is the replay memory of a fleet: a store every replica
// shares (Redis), so that a signed request is allowed once on any replica,
// in front of which sits this replica's own (a ReplayCache). Every
// signature goes to both. The local store answers first: a replay it
// holds is refused without asking the fleet, and its bounds (the token's
// share, the whole size) refuse as they do without a fleet, so that no
// token can fill the shared store past what every replica would let it.
//
// When the fleet store fails or takes longer than Timeout, the local
// answer decides: a replay is then refused only on the replica that saw
// the original, as without a fleet store, rather than every signed request
// being refused while it is down. After a failure the fleet store is left
// alone for Retry, then one request tries it again, so an outage costs at
// most one Timeout per Retry, never one per request.
type ReplayFallback struct {
	fleet, local ReplayStore
	cfg          ReplayFallbackConfig
	now          func() time.Time
	notify       func(error)
	// down is when (unix nanoseconds) to try a failed fleet store again;
	// 0 while it answers.
	down      atomic.Int64
	fallbacks atomic.Uint64
}

// ReplayFallbackConfig times a ReplayFallback.
type ReplayFallbackConfig struct {
	// Timeout bounds each call to the fleet store.
	Timeout time.Duration
	// Retry is how long a failed fleet store is left alone.
	Retry time.Duration
}

// NewReplayFallback returns a ReplayFallback over fleet and local; now is
// its clock. notify, which may be nil, is told of each change of the
// fleet store's state, not of each request: the error when it starts
// failing, nil when it answers again.
func NewReplayFallback(fleet, local ReplayStore, cfg ReplayFallbackConfig, now func() time.Time, notify func(error)) (*ReplayFallback, error) {
	switch {
	case fleet == nil || local == nil:
		return nil, errors.New("replay fallback: both a fleet and a local store are needed")
	case cfg.Timeout <= 0:
		return nil, fmt.Errorf("replay fallback: timeout must be > 0, got %v", cfg.Timeout)
	case cfg.Retry <= 0:
		return nil, fmt.Errorf("replay fallback: retry must be > 0, got %v", cfg.Retry)
	}
	if notify == nil {
		notify = func(error) {}
	}
	return &ReplayFallback{fleet: fleet, local: local, cfg: cfg, now: now, notify: notify}, nil
}

var _ ReplayStore = (*ReplayFallback)(nil)

// Remember implements ReplayStore. It fails only as the local store does:
// when it is full.
func (r *ReplayFallback) Remember(ctx context.Context, tokenID string, sig [sha256.Size]byte, until time.Time) (bool, error) {
	fresh, err := r.local.Remember(ctx, tokenID, sig, until)
	if err != nil || !fresh {
		return fresh, err
	}
	now := r.now()
	if r.usable(now) {
		// Not the request's context: a caller that hangs up must not
		// count as the fleet store failing.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Timeout)
		fleetFresh, err := r.fleet.Remember(fctx, tokenID, sig, until)
		cancel()
		if err == nil {
			r.answered()
			// A replay seen elsewhere stays remembered here too: a
			// second replay to this replica costs the fleet nothing.
			return fleetFresh, nil
		}
		r.failed(now, err)
	}
	r.fallbacks.Add(1)
	return true, nil
}

// Forget implements ReplayStore: it forgets in both stores, but does not
// wait on a fleet store that is failing.
func (r *ReplayFallback) Forget(ctx context.Context, tokenID string, sig [sha256.Size]byte) error {
	lerr := r.local.Forget(ctx, tokenID, sig)
	if r.down.Load() != 0 {
		return lerr
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Timeout)
	defer cancel()
	ferr := r.fleet.Forget(fctx, tokenID, sig)
	if ferr != nil {
		r.failed(r.now(), ferr)
	}
	return errors.Join(lerr, ferr)
}

// Fallbacks returns how many signatures were remembered by this replica
// alone because the fleet store failed or was being left alone.
func (r *ReplayFallback) Fallbacks() uint64 { return r.fallbacks.Load() }

// usable reports whether to ask the fleet store: always while it answers;
// after a failure, once Retry has passed, for whichever request wins the
// swap.
func (r *ReplayFallback) usable(now time.Time) bool {
	down := r.down.Load()
	if down == 0 {
		return true
	}
	return now.UnixNano() >= down && r.down.CompareAndSwap(down, now.Add(r.cfg.Retry).UnixNano())
}

func (r *ReplayFallback) failed(now time.Time, err error) {
	if r.down.Swap(now.Add(r.cfg.Retry).UnixNano()) == 0 {
		r.notify(err)
	}
}

func (r *ReplayFallback) answered() {
	if r.down.Load() != 0 && r.down.Swap(0) != 0 {
		r.notify(nil)
	}
}
