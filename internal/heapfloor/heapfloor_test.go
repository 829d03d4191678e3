package heapfloor_test

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/heapfloor"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		base        int
		live, floor int64
		want        int
	}{
		{100, 4 * mib, 64 * mib, 1500}, // goal 4 + 60 = 64 MiB
		{100, 32 * mib, 64 * mib, 100}, // the live heap alone reaches it
		{100, 40 * mib, 64 * mib, 100}, // and passes it
		{200, 16 * mib, 64 * mib, 300}, // 16 + 48
		{400, 16 * mib, 64 * mib, 400}, // the operator's GOGC already does
		{100, 0, 64 * mib, 100_000},    // nothing live yet: bounded
		{100, 1, 64 * mib, 100_000},    // a ratio past the bound
		{100, 60 * mib, 64 * mib, 100}, // 60 + 60 ≥ 64
		{50, 60 * mib, 64 * mib, 50},   // 60 + 30 ≥ 64
		{50, 40 * mib, 64 * mib, 60},   // 40 + 24 = 64
	} {
		if got := heapfloor.Percent(c.base, c.live, c.floor); got != c.want {
			t.Errorf("Percent(%d, %d, %d) = %d, want %d", c.base, c.live, c.floor, got, c.want)
		}
	}
}

// TestKeepRaisesGOGCAfterACollection: with a small live heap, the GOGC in
// force after a collection makes the goal the floor; stop gives the old
// one back.
func TestKeepRaisesGOGCAfterACollection(t *testing.T) {
	gogc := func() int { p := debug.SetGCPercent(100); debug.SetGCPercent(p); return p }
	before := gogc()
	stop := heapfloor.Keep(1 << 30)
	for deadline := time.Now().Add(10 * time.Second); gogc() <= before; {
		runtime.GC()
		if time.Now().After(deadline) {
			t.Fatalf("GOGC still %d after collections, want it raised for a 1 GiB floor", gogc())
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	if got := gogc(); got != before {
		t.Errorf("after stop GOGC is %d, want %d back", got, before)
	}
	runtime.GC()
	time.Sleep(50 * time.Millisecond)
	if got := gogc(); got != before {
		t.Errorf("a collection after stop set GOGC to %d, want %d", got, before)
	}
}
