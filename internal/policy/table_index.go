package policy

import "hash/maphash"

// slotIndex finds the slot that caches a hash. It is an open-addressing
// table of slot numbers with linear probing: each bucket holds a slot
// number plus one (0 is an empty bucket), and a hash is looked for from
// its home bucket onwards, comparing the full hash kept in each candidate
// slot, until an empty bucket. A bucket is 4 bytes and at most 3 in 4 are
// used, so in a full table an entry costs 5.3–10.7 bytes, where a
// map[Hash]int32 costs 42–85 (it keeps the 32-byte key again); its
// buckets live outside the heap, like the slots (see region).
//
// Deletion shifts the entries after the removed one back towards their
// home buckets (backward-shift deletion), so there are no tombstones and
// a look-up never probes past the end of its cluster.
//
// Buckets are chosen by a hash of the key with a seed of the index's own.
// The keys are SHA-256 hashes of token values, which anyone can compute
// for values they make up; without the seed a client could pick tokens
// whose hashes fall in one run of buckets.
type slotIndex struct {
	seed    maphash.Seed
	buckets region[uint32]
	n       int // entries
}

// minIndexBuckets is the smallest index, one 4 KiB page of buckets.
const minIndexBuckets = 1024

func newSlotIndex() *slotIndex { return &slotIndex{seed: maphash.MakeSeed()} }

func (x *slotIndex) home(h Hash) uint32 {
	return uint32(maphash.Bytes(x.seed, h[:])) & uint32(len(x.buckets.vals)-1)
}

// find returns the slot that holds h.
func (x *slotIndex) find(h Hash, slots *pages) (int32, bool) {
	b := x.buckets.vals
	if len(b) == 0 {
		return 0, false
	}
	mask := uint32(len(b) - 1)
	for i := x.home(h); b[i] != 0; i = (i + 1) & mask {
		if s := int32(b[i] - 1); slots.at(s).hash == h {
			return s, true
		}
	}
	return 0, false
}

// insert records that slot s holds h, which the index must not have.
// limit is the most entries the index will be asked to hold (the table's
// size), for growing.
func (x *slotIndex) insert(h Hash, s int32, slots *pages, limit int) {
	if (x.n+1)*4 > len(x.buckets.vals)*3 {
		x.grow(slots, limit)
	}
	x.put(h, s)
	x.n++
}

// put writes slot s into the first empty bucket from h's home.
func (x *slotIndex) put(h Hash, s int32) {
	b := x.buckets.vals
	mask := uint32(len(b) - 1)
	i := x.home(h)
	for b[i] != 0 {
		i = (i + 1) & mask
	}
	b[i] = uint32(s) + 1
}

// grow makes as many buckets as limit entries need, at least twice as
// many as there were, and places every entry again.
//
// Growing to the table's size at once, rather than by doubling, is for
// the pause: placing every entry again holds the table's lock, and at
// 786k entries took 365 ms here (most of it the first touch of the new
// buckets' memory). Sized for the table from the first insert, the index
// never moves an entry while the size stays, and the first touch of each
// of its pages falls on whichever insert lands there first. A cache that
// holds few tokens pays for its configured size: 4 B a bucket, 1.3–2.7
// buckets per token it may hold (4 MiB at the default 500k), mapped, and
// resident once a few thousand tokens have touched every page.
func (x *slotIndex) grow(slots *pages, limit int) {
	old := x.buckets
	n := max(2*len(old.vals), minIndexBuckets)
	for n*3 < limit*4 {
		n *= 2
	}
	x.buckets = newRegion[uint32](n)
	for _, e := range old.vals {
		if e != 0 {
			x.put(slots.at(int32(e-1)).hash, int32(e-1))
		}
	}
	old.free()
}

// remove forgets that slot s holds h, and moves back the entries of the
// cluster after it that may move, so that each stays reachable from its
// home without a gap.
func (x *slotIndex) remove(h Hash, s int32, slots *pages) {
	b := x.buckets.vals
	if len(b) == 0 {
		return
	}
	mask := uint32(len(b) - 1)
	i := x.home(h)
	for b[i] != uint32(s)+1 {
		if b[i] == 0 {
			return
		}
		i = (i + 1) & mask
	}
	x.n--
	// i is the gap. The entry at j may fill it when its home lies at or
	// before the gap, counting cyclically back from j: further from j
	// than the gap is.
	for j := (i + 1) & mask; b[j] != 0; j = (j + 1) & mask {
		k := x.home(slots.at(int32(b[j] - 1)).hash)
		if (j-k)&mask >= (j-i)&mask {
			b[i] = b[j]
			i = j
		}
	}
	b[i] = 0
}

// len returns how many entries the index holds.
func (x *slotIndex) len() int { return x.n }

// free empties the index and gives its memory back.
func (x *slotIndex) free() {
	x.buckets.free()
	x.n = 0
}
