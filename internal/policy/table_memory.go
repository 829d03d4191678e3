package policy

import (
	"fmt"
	"unsafe"
)

// region is memory for n values of T, outside the Go heap where the OS
// gives it (mapBytes), and on the heap otherwise.
//
// Why outside: the table's slots and index are hundreds of megabytes of
// long-lived values that the garbage collector never needs to look into.
// On the heap they count toward GOGC's goal, so the heap grows to about
// twice the cache before each collection, and that is resident memory:
// with a million cached tokens, 529 B of RSS per token for 255 B of live
// heap. Mapped, they cost their own size once, and are given back to the
// OS the moment the table lets go of them (free), not when the scavenger
// gets round to it.
//
// T must hold no pointers: the collector does not see mapped memory, so a
// pointer kept there would not keep its target alive, and a string field
// would dangle. TestRegionTypesHoldNoPointers checks every T used here.
// For the same reason nothing may point into a region after free: the
// table copies values out (the token id, the terms) and never hands out
// a reference to a slot.
type region[T any] struct {
	vals   []T
	mapped []byte // what mapBytes returned; nil when vals is on the heap
}

// newRegion returns n zeroed values. When the OS refuses the mapping it
// falls back to the heap, which the runtime fails on only when it, too,
// is out of memory: a full cache is still better than a crash.
func newRegion[T any](n int) region[T] {
	if n == 0 {
		return region[T]{}
	}
	b, err := mapBytes(n * int(unsafe.Sizeof(*new(T))))
	if err != nil {
		return region[T]{vals: make([]T, n)}
	}
	return region[T]{vals: unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(b))), n), mapped: b}
}

// free gives the memory back. The region is empty afterwards.
func (r *region[T]) free() {
	if r.mapped != nil {
		// Unmapping what mapBytes returned fails only for an address
		// that is not a mapping of ours, which would mean the table's
		// bookkeeping is broken: carrying on could unmap memory now used
		// for something else.
		if err := unmapBytes(r.mapped); err != nil {
			panic(fmt.Sprintf("policy: unmap %d bytes of the cache table: %v", len(r.mapped), err))
		}
	}
	*r = region[T]{}
}

// mappedBytes reports how much of the region lives outside the Go heap.
func (r *region[T]) mappedBytes() int { return len(r.mapped) }
