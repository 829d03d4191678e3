package policy

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// indexHarness drives a slotIndex the way the table does: each hash is
// kept in a slot of its own, which the index reads to compare, and a
// map[Hash]int32 says what the index should answer.
type indexHarness struct {
	t     testing.TB
	x     *slotIndex
	slots pages
	free  []int32
	want  map[Hash]int32
}

func newIndexHarness(t testing.TB) *indexHarness {
	h := &indexHarness{t: t, x: newSlotIndex(), want: map[Hash]int32{}}
	t.Cleanup(func() { h.x.free(); h.slots.free() })
	return h
}

func (h *indexHarness) insert(k Hash) {
	if _, ok := h.want[k]; ok {
		return
	}
	var s int32
	if n := len(h.free); n > 0 {
		s, h.free = h.free[n-1], h.free[:n-1]
	} else {
		s = h.slots.grow()
	}
	h.slots.at(s).hash = k
	h.x.insert(k, s, &h.slots, len(h.want)+1)
	h.want[k] = s
}

func (h *indexHarness) remove(k Hash) {
	s, ok := h.want[k]
	if !ok {
		return
	}
	h.x.remove(k, s, &h.slots)
	*h.slots.at(s) = slot{}
	h.free = append(h.free, s)
	delete(h.want, k)
}

// check asks the index for every hash it should have, and for absent ones.
func (h *indexHarness) check(absent ...Hash) {
	h.t.Helper()
	if h.x.len() != len(h.want) {
		h.t.Fatalf("index len %d, want %d", h.x.len(), len(h.want))
	}
	for k, s := range h.want {
		if got, ok := h.x.find(k, &h.slots); !ok || got != s {
			h.t.Fatalf("find(%x) = %d, %v, want %d, true", k[:4], got, ok, s)
		}
	}
	for _, k := range absent {
		if _, in := h.want[k]; in {
			continue
		}
		if got, ok := h.x.find(k, &h.slots); ok {
			h.t.Fatalf("find(%x) of an absent hash = %d", k[:4], got)
		}
	}
	// No more than 3 in 4 buckets are used, so every probe ends.
	if used := h.x.len(); used*4 > len(h.x.buckets.vals)*3 {
		h.t.Fatalf("%d entries in %d buckets", used, len(h.x.buckets.vals))
	}
}

func TestSlotIndexChurn(t *testing.T) {
	h := newIndexHarness(t)
	rnd := rand.New(rand.NewPCG(1, 2))
	keys := make([]Hash, 5000)
	for i := range keys {
		keys[i] = tableHash(i)
	}
	// Grow through several doublings, then churn at a steady size, then
	// empty it: inserts and deletes interleaved at random.
	for round, bias := range []int{80, 50, 50, 20, 0} {
		for range 20_000 {
			k := keys[rnd.IntN(len(keys))]
			if rnd.IntN(100) < bias {
				h.insert(k)
			} else {
				h.remove(k)
			}
		}
		h.check(keys...)
		t.Logf("round %d: %d entries in %d buckets", round, h.x.len(), len(h.x.buckets.vals))
	}
	for _, k := range keys {
		h.remove(k)
	}
	h.check(keys...)
	for _, e := range h.x.buckets.vals {
		if e != 0 {
			t.Fatal("an emptied index has a full bucket")
		}
	}
}

// TestSlotIndexRemoveShifts removes each entry of a cluster that wraps
// round the end of the buckets. Those after it must move back, each as far
// as its home allows and no further, leaving the buckets as if the removed
// hash had never been inserted.
func TestSlotIndexRemoveShifts(t *testing.T) {
	x := newSlotIndex()
	var none pages
	x.grow(&none, 0) // the first buckets, for home to count in
	defer x.free()
	last := uint32(len(x.buckets.vals) - 1)
	// Hashes for the homes below, found by trying. Inserted in this order
	// they fill the buckets from the last one to 6 with no gap: two at
	// the last bucket, the second wrapping round to 0; two homed at 0
	// pushed on to 1 and 2; one homed at 1 pushed to 3, one at 3 to 4;
	// one at home in 5, and one homed at 5 in 6, which has nowhere to go
	// back to whatever is removed before it.
	homes := []uint32{last, last, 0, 0, 1, 3, 5, 5}
	byHome := map[uint32][]Hash{}
	need := map[uint32]int{}
	for _, b := range homes {
		need[b]++
	}
	for i, found := 0, 0; found < len(homes); i++ {
		k := tableHash(i)
		if b := x.home(k); len(byHome[b]) < need[b] {
			byHome[b] = append(byHome[b], k)
			found++
		}
	}
	var cluster []Hash
	for _, b := range homes {
		cluster = append(cluster, byHome[b][0])
		byHome[b] = byHome[b][1:]
	}
	layout := func(h *indexHarness) []string {
		var l []string
		for _, b := range append([]uint32{last}, 0, 1, 2, 3, 4, 5, 6, 7) {
			if e := h.x.buckets.vals[b]; e != 0 {
				l = append(l, fmt.Sprintf("%x", h.slots.at(int32(e - 1)).hash[:2]))
			} else {
				l = append(l, "-")
			}
		}
		return l
	}
	for victim := range cluster {
		h := newIndexHarness(t)
		h.x.seed = x.seed
		for _, k := range cluster {
			h.insert(k)
		}
		if got := layout(h); got[8] != "-" || slices.Contains(got[:8], "-") {
			t.Fatalf("the cluster is not in the buckets from the last to 6: %v", got)
		}
		h.remove(cluster[victim])
		h.check(cluster...)
		never := newIndexHarness(t)
		never.x.seed = x.seed
		for i, k := range cluster {
			if i != victim {
				never.insert(k)
			}
		}
		if got, want := layout(h), layout(never); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("removing %d left the buckets %v, want %v", victim, got, want)
		}
	}
}

// TestSlotIndexAgainstMap is a randomized differential test: long runs of
// random inserts, removes and look-ups, compared with a map at each step.
func TestSlotIndexAgainstMap(t *testing.T) {
	for seed := range uint64(20) {
		rnd := rand.New(rand.NewPCG(seed, seed))
		ops := make([]byte, 4000)
		for i := range ops {
			ops[i] = byte(rnd.Uint32())
		}
		runIndexOps(t, ops)
	}
}

// FuzzSlotIndex runs the differential test on any sequence of operations:
// each pair of bytes is one, over a small set of keys so that they recur.
func FuzzSlotIndex(f *testing.F) {
	f.Add([]byte{0, 1, 0, 2, 128, 1, 0, 3})
	f.Add(binary.LittleEndian.AppendUint64(nil, 0x8081_0001_8203_0405))
	f.Fuzz(runIndexOps)
}

func runIndexOps(t *testing.T, ops []byte) {
	h := newIndexHarness(t)
	for i := 0; i+1 < len(ops); i += 2 {
		k := tableHash(int(ops[i+1]))
		switch {
		case ops[i] < 128:
			h.insert(k)
		case ops[i] < 224:
			h.remove(k)
		}
		want, in := h.want[k]
		if got, ok := h.x.find(k, &h.slots); ok != in || got != want && in {
			t.Fatalf("op %d: find = %d, %v, want %d, %v", i/2, got, ok, want, in)
		}
	}
	h.check(tableHash(-2), tableHash(1000))
}

// The index is sized for the table's size at its first insert, so that
// it never moves its entries while the table fills (a pause with the table
// locked), and it doubles only past that size.
func TestSlotIndexGrowsToTheTableSize(t *testing.T) {
	const limit = 100_000
	x := newSlotIndex()
	var slots pages
	defer func() { x.free(); slots.free() }()
	var sizes []int
	for i := range 2 * limit {
		s := slots.grow()
		slots.at(s).hash = tableHash(i)
		x.insert(tableHash(i), s, &slots, limit)
		if n := len(x.buckets.vals); len(sizes) == 0 || sizes[len(sizes)-1] != n {
			sizes = append(sizes, n)
		}
	}
	if got := fmt.Sprint(sizes); got != "[262144 524288]" {
		t.Fatalf("bucket counts %s, want 262144 from the first insert, doubled past the size", got)
	}
	for i := 0; i < 2*limit; i += 997 {
		if s, ok := x.find(tableHash(i), &slots); !ok || s != int32(i) {
			t.Fatalf("find(%d) = %d, %v", i, s, ok)
		}
	}
}
