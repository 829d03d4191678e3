package policy_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
)

// fleetStore is the store replicas share, in these tests a ReplayCache,
// that can be made to fail or to hang until its caller's deadline. It
// answers as a network store does: never once the caller's context ended.
type fleetStore struct {
	policy.ReplayStore
	fail, hang    atomic.Bool
	calls         atomic.Int64
	lastDeadline  atomic.Int64 // how long the last call was given, in ns
	lastCancelled atomic.Bool
}

var errFleetDown = errors.New("fleet store: connection refused")

func (f *fleetStore) wait(ctx context.Context) error {
	f.calls.Add(1)
	if d, ok := ctx.Deadline(); ok {
		f.lastDeadline.Store(int64(time.Until(d)))
	}
	f.lastCancelled.Store(ctx.Err() != nil)
	switch {
	case f.hang.Load():
		<-ctx.Done()
		return ctx.Err()
	case f.fail.Load():
		return errFleetDown
	}
	return ctx.Err()
}

func (f *fleetStore) Remember(ctx context.Context, tok string, sig [sha256.Size]byte, until time.Time) (bool, error) {
	if err := f.wait(ctx); err != nil {
		return false, err
	}
	return f.ReplayStore.Remember(ctx, tok, sig, until)
}

func (f *fleetStore) Forget(ctx context.Context, tok string, sig [sha256.Size]byte) error {
	if err := f.wait(ctx); err != nil {
		return err
	}
	return f.ReplayStore.Forget(ctx, tok, sig)
}

// fleetRig is two replicas, a and b, each with its own ReplayCache in front
// of one shared fleet store, on one clock; notes collects what each
// replica was told of the fleet store's state.
type fleetRig struct {
	clock *clock
	fleet *fleetStore
	a, b  *policy.ReplayFallback
	notes []string
}

const fleetTimeout, fleetRetry = 20 * time.Millisecond, time.Second

func mustFleetRig(tb testing.TB, perToken int) *fleetRig {
	tb.Helper()
	rig := &fleetRig{clock: newClock()}
	shared, err := policy.NewReplayCache(policy.ReplayConfig{Size: 1000, PerToken: 1000}, rig.clock.now)
	if err != nil {
		tb.Fatal(err)
	}
	rig.fleet = &fleetStore{ReplayStore: shared}
	replica := func(name string) *policy.ReplayFallback {
		local, err := policy.NewReplayCache(policy.ReplayConfig{Size: 1000, PerToken: perToken}, rig.clock.now)
		if err != nil {
			tb.Fatal(err)
		}
		r, err := policy.NewReplayFallback(rig.fleet, local, policy.ReplayFallbackConfig{Timeout: fleetTimeout, Retry: fleetRetry},
			rig.clock.now, func(err error) {
				if err != nil {
					rig.notes = append(rig.notes, name+" down")
				} else {
					rig.notes = append(rig.notes, name+" up")
				}
			})
		if err != nil {
			tb.Fatal(err)
		}
		return r
	}
	rig.a, rig.b = replica("a"), replica("b")
	return rig
}

// remember is mustRemember for a ReplayFallback.
func (rig *fleetRig) remember(tb testing.TB, r *policy.ReplayFallback, tok string, n int, want string) {
	tb.Helper()
	fresh, err := r.Remember(context.Background(), tok, sigN(n), rig.clock.now().Add(time.Minute))
	got := "seen"
	var full *policy.ReplayFullError
	switch {
	case errors.As(err, &full):
		got = "full"
	case err != nil:
		tb.Fatalf("remember: got %v, want no error but full", err)
	case fresh:
		got = "new"
	}
	if got != want {
		tb.Errorf("remember %s's signature %d: got %s, want %s", tok, n, got, want)
	}
}

func TestReplayFallback(t *testing.T) {
	cases := map[string]func(t *testing.T, rig *fleetRig){
		"a replay to another replica is refused while the fleet store answers": func(t *testing.T, rig *fleetRig) {
			rig.remember(t, rig.a, "tok", 1, "new")
			rig.remember(t, rig.b, "tok", 1, "seen")
			rig.remember(t, rig.b, "tok", 2, "new")
			rig.remember(t, rig.a, "tok", 2, "seen")
			if got := rig.a.Fallbacks() + rig.b.Fallbacks(); got != 0 {
				t.Errorf("fallbacks: got %d, want 0", got)
			}
		},
		"a replay to the same replica is refused without asking the fleet store": func(t *testing.T, rig *fleetRig) {
			rig.remember(t, rig.a, "tok", 1, "new")
			calls := rig.fleet.calls.Load()
			rig.remember(t, rig.a, "tok", 1, "seen")
			if got := rig.fleet.calls.Load(); got != calls {
				t.Errorf("fleet calls for a replay held locally: got %d, want %d", got-calls, 0)
			}
		},
		"the local bound refuses even while the fleet store answers": func(t *testing.T, rig *fleetRig) {
			// Fill the token's local share (2 a generation).
			n := 1
			for ; n < 10; n++ {
				if _, err := rig.a.Remember(context.Background(), "tok", sigN(n), rig.clock.now().Add(time.Minute)); err != nil {
					break
				}
			}
			calls := rig.fleet.calls.Load()
			rig.remember(t, rig.a, "tok", n, "full")
			if got := rig.fleet.calls.Load() - calls; got != 0 {
				t.Errorf("fleet calls for a refused signature: got %d, want 0", got)
			}
			rig.remember(t, rig.b, "tok", n, "new")
		},
		"fleet down: the replica that saw it refuses, another allows, each counted": func(t *testing.T, rig *fleetRig) {
			rig.fleet.fail.Store(true)
			rig.remember(t, rig.a, "tok", 1, "new")
			rig.remember(t, rig.a, "tok", 1, "seen")
			rig.remember(t, rig.b, "tok", 1, "new")
			if got := rig.a.Fallbacks() + rig.b.Fallbacks(); got != 2 {
				t.Errorf("fallbacks: got %d, want 2 (one per signature remembered locally only)", got)
			}
		},
		"fleet hangs: each call is bounded by the timeout": func(t *testing.T, rig *fleetRig) {
			rig.fleet.hang.Store(true)
			rig.remember(t, rig.a, "tok", 1, "new")
			if got := time.Duration(rig.fleet.lastDeadline.Load()); got <= 0 || got > fleetTimeout {
				t.Errorf("deadline given to the fleet store: got %v, want at most %v", got, fleetTimeout)
			}
			if got := rig.a.Fallbacks(); got != 1 {
				t.Errorf("fallbacks: got %d, want 1", got)
			}
		},
		"after a failure the fleet store is left alone for Retry, then tried again": func(t *testing.T, rig *fleetRig) {
			rig.fleet.fail.Store(true)
			rig.remember(t, rig.a, "tok", 1, "new")
			calls := rig.fleet.calls.Load()
			for n := 2; n < 10; n++ {
				rig.remember(t, rig.a, "tok"+strconv.Itoa(n), n, "new")
			}
			if got := rig.fleet.calls.Load() - calls; got != 0 {
				t.Errorf("fleet calls while resting: got %d, want 0", got)
			}
			rig.fleet.fail.Store(false)
			rig.clock.advance(fleetRetry)
			rig.remember(t, rig.a, "tok", 10, "new")
			rig.remember(t, rig.b, "tok", 10, "seen")
			if got := rig.fleet.calls.Load() - calls; got != 2 {
				t.Errorf("fleet calls once Retry passed: got %d, want 2", got)
			}
		},
		"the state is told once per outage, not per request": func(t *testing.T, rig *fleetRig) {
			rig.fleet.fail.Store(true)
			for n := range 5 {
				rig.remember(t, rig.a, "tok"+strconv.Itoa(n), n, "new")
				rig.clock.advance(fleetRetry)
			}
			rig.fleet.fail.Store(false)
			for n := 5; n < 10; n++ {
				rig.remember(t, rig.a, "tok"+strconv.Itoa(n), n, "new")
			}
			if got, want := rig.notes, []string{"a down", "a up"}; !slices.Equal(got, want) {
				t.Errorf("notes: got %v, want %v", got, want)
			}
		},
		"a caller that hangs up does not count as the fleet store failing": func(t *testing.T, rig *fleetRig) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			fresh, err := rig.a.Remember(ctx, "tok", sigN(1), rig.clock.now().Add(time.Minute))
			if err != nil || !fresh || rig.fleet.lastCancelled.Load() {
				t.Errorf("got fresh=%t err=%v fleet saw a cancelled context=%t, want fresh and not cancelled", fresh, err, rig.fleet.lastCancelled.Load())
			}
			rig.remember(t, rig.b, "tok", 1, "seen")
		},
		"forget drops the signature from both stores": func(t *testing.T, rig *fleetRig) {
			rig.remember(t, rig.a, "tok", 1, "new")
			if err := rig.a.Forget(context.Background(), "tok", sigN(1)); err != nil {
				t.Fatalf("forget: got %v, want nil", err)
			}
			rig.remember(t, rig.b, "tok", 1, "new")
			rig.remember(t, rig.a, "tok", 1, "seen")
		},
		"forget does not wait on a failing fleet store": func(t *testing.T, rig *fleetRig) {
			rig.fleet.fail.Store(true)
			rig.remember(t, rig.a, "tok", 1, "new")
			calls := rig.fleet.calls.Load()
			if err := rig.a.Forget(context.Background(), "tok", sigN(1)); err != nil {
				t.Errorf("forget: got %v, want nil (the local store forgot)", err)
			}
			if got := rig.fleet.calls.Load() - calls; got != 0 {
				t.Errorf("fleet calls by forget while down: got %d, want 0", got)
			}
			rig.fleet.fail.Store(false)
			rig.remember(t, rig.a, "tok", 1, "new")
		},
	}
	for name, run := range cases {
		t.Run(name, func(t *testing.T) { run(t, mustFleetRig(t, 2)) })
	}
}

func TestNewReplayFallback(t *testing.T) {
	local, err := policy.NewReplayCache(policy.ReplayConfig{Size: 1, PerToken: 1}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	ok := policy.ReplayFallbackConfig{Timeout: time.Millisecond, Retry: time.Second}
	for name, tc := range map[string]struct {
		fleet, local policy.ReplayStore
		cfg          policy.ReplayFallbackConfig
		want         bool
	}{
		"valid":        {local, local, ok, true},
		"no fleet":     {nil, local, ok, false},
		"no local":     {local, nil, ok, false},
		"zero timeout": {local, local, policy.ReplayFallbackConfig{Retry: time.Second}, false},
		"zero retry":   {local, local, policy.ReplayFallbackConfig{Timeout: time.Second}, false},
	} {
		_, err := policy.NewReplayFallback(tc.fleet, tc.local, tc.cfg, time.Now, nil)
		if (err == nil) != tc.want {
			t.Errorf("%s: got err=%v, want ok=%t", name, err, tc.want)
		}
	}
}
