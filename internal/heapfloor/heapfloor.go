// Package heapfloor keeps the garbage collector from running while the
// heap is small.
//
// With GOGC=100 the runtime collects each time the heap doubles its live
// part. Tollgate's live heap is small — its cached policies live outside
// the Go heap — so at a few MB live it collected every few hundred Checks,
// and the collector's work was a visible part of a Check's cost (issue
// 19: GC +2.7 µs of a 50 µs Check with 10k tokens cached). Keep raises
// GOGC after each collection just enough that the next one waits until
// the heap reaches the floor, and leaves it where it was once the live
// heap alone makes the goal larger. It trades memory (garbage up to the
// floor stays resident between collections) for CPU, and never breaks a
// memory limit: GOMEMLIMIT still triggers collections as it would.
package heapfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// maxPercent bounds the GOGC Keep sets, so that a nearly empty heap does
// not ask for an absurd ratio.
const maxPercent = 100_000

// Keep holds the heap goal at floor bytes or more until stop is called,
// which restores the GOGC in force when Keep was called. It does nothing
// when floor is 0 or the collector is off (GOGC=off). The GOGC setting is
// the process's: call it once, from main's side.
func Keep(floor int64) (stop func()) {
	base := debug.SetGCPercent(100)
	debug.SetGCPercent(base)
	if floor <= 0 || base < 0 {
		return func() {}
	}
	var stopped atomic.Bool
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var arm func()
	arm = func() {
		// A cleanup runs after the collection that found its object
		// unreachable: a hook after every cycle. The object must be too
		// large for the tiny allocator, which frees blocks of objects
		// together.
		runtime.AddCleanup(new([64]byte), func(struct{}) {
			if stopped.Load() {
				return
			}
			metrics.Read(sample)
			debug.SetGCPercent(Percent(base, int64(sample[0].Value.Uint64()), floor))
			arm()
		}, struct{}{})
	}
	arm()
	return func() {
		stopped.Store(true)
		debug.SetGCPercent(base)
	}
}

// Percent is the GOGC that makes the heap goal at least floor for a live
// heap of live bytes, and never less than base.
func Percent(base int, live, floor int64) int {
	if live <= 0 {
		return maxPercent
	}
	if live+live*int64(base)/100 >= floor {
		return base
	}
	return int(min((floor-live)*100/live, maxPercent))
}
