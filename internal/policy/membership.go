package policy

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
)

// Membership is a Bloom filter of token key hashes: it answers "certainly
// not a live key" or "perhaps", so that a well-formed token that cannot
// exist is refused without a query. It never forgets what was added, so it
// has no false negatives; deleted keys stay in it and fall through to the
// store, which says they are gone. Adds and look-ups are safe at once
// from any goroutine and take no lock.
//
// A token hash is already a uniform 256-bit SHA-256, so its eight 32-bit
// words serve directly as the filter's hash functions (MembershipHashes of
// them), each mixed with a random per-filter seed: a token an attacker
// found to slip through one replica's filter (by timing its answers) is no
// more likely to slip through another's, or this one's after a rebuild.
type Membership struct {
	words    []atomic.Uint64
	bits     uint64 // len(words) * 64
	seed     [membershipHashes]uint32
	capacity int
	entries  atomic.Int64
}

// The filter's shape: membershipHashes bits per key in
// membershipBitsPerKey bits of room per key give a false-positive rate of
// about 1% at capacity (the optimum for 9.6 bits is 6.6 hashes).
const (
	membershipHashes     = 7
	membershipBitsPerKey = 9.6
	// MembershipFalsePositiveRate is the share of unknown tokens that still
	// reach the store when the filter is at capacity; below it, fewer.
	MembershipFalsePositiveRate = 0.01
	// maxMembershipBits keeps a position within what a 32-bit hash word
	// can spread evenly (512 MiB of filter, ~450M keys).
	maxMembershipBits = 1 << 32
)

// NewMembership returns an empty filter with room for capacity keys at
// MembershipFalsePositiveRate; past that, the rate grows (Full reports
// it) until the filter is rebuilt.
func NewMembership(capacity int) *Membership {
	capacity = max(capacity, 1)
	bits := uint64(math.Ceil(float64(capacity)*membershipBitsPerKey/64)) * 64
	bits = min(bits, maxMembershipBits)
	f := &Membership{words: make([]atomic.Uint64, bits/64), bits: bits, capacity: capacity}
	var seed [4 * membershipHashes]byte
	_, _ = rand.Read(seed[:]) // crypto/rand.Read never fails
	for i := range f.seed {
		f.seed[i] = binary.LittleEndian.Uint32(seed[4*i:])
	}
	return f
}

// position returns the bit the i-th hash function of h selects: Lemire's
// multiply-shift maps a 32-bit word onto [0, bits) without a division.
func (f *Membership) position(h *Hash, i int) uint64 {
	w := binary.LittleEndian.Uint32(h[4*i:]) ^ f.seed[i]
	return (uint64(w) * f.bits) >> 32
}

// Add records h. It counts h as an entry only when it set a bit, so a key
// announced many times (every edit of a token announces its keys) counts
// once, or not at all if the filter already seemed to hold it.
func (f *Membership) Add(h Hash) {
	fresh := false
	for i := range membershipHashes {
		p := f.position(&h, i)
		bit := uint64(1) << (p % 64)
		if f.words[p/64].Or(bit)&bit == 0 {
			fresh = true
		}
	}
	if fresh {
		f.entries.Add(1)
	}
}

// MayContain reports whether h may have been added; false is certain.
func (f *Membership) MayContain(h Hash) bool {
	for i := range membershipHashes {
		p := f.position(&h, i)
		if f.words[p/64].Load()&(uint64(1)<<(p%64)) == 0 {
			return false
		}
	}
	return true
}

// Len returns the keys added (those that set at least one bit).
func (f *Membership) Len() int { return int(f.entries.Load()) }

// Bytes returns the filter's size in memory.
func (f *Membership) Bytes() int { return len(f.words) * 8 }

// Full reports whether more keys were added than the filter was sized for,
// so that its false-positive rate now exceeds MembershipFalsePositiveRate.
func (f *Membership) Full() bool { return f.Len() > f.capacity }

// MembershipCapacity returns the room a filter over n live keys is built
// with: half as many again, so that tokens created after the build do not
// fill it soon.
func MembershipCapacity(n int) int { return n + n/2 + 4096 }

// KeySource is where the membership filter is loaded from: every live
// token key in the store.
type KeySource interface {
	// CountTokenKeys returns how many token keys the store holds, to size
	// the filter.
	CountTokenKeys(ctx context.Context) (int, error)
	// EachTokenKey calls fn with the hash of every live (unexpired) token
	// key, and returns the first error reading them. It must honour ctx.
	EachTokenKey(ctx context.Context, fn func(Hash)) error
}

// LoadFilter builds a membership filter from src and puts it in force,
// replacing the one in force, if any, which serves meanwhile. Until the
// first filter is in force, and after InvalidateAll, every unknown token
// is looked up in the store as before.
//
// The new filter receives every key announced (Invalidate) from before
// its first read of src, so a key created during the load is in it either
// way. That makes it complete as long as every key created after the load
// began is announced: call it once the change watcher relays changes.
func (c *Cache) LoadFilter(ctx context.Context, src KeySource) error {
	n, err := src.CountTokenKeys(ctx)
	if err != nil {
		return fmt.Errorf("load membership filter: %w", err)
	}
	// This load answers every wish for a rebuild made before it began.
	select {
	case <-c.rebuild:
	default:
	}
	f := NewMembership(MembershipCapacity(n))
	gen := c.filterGen.Load()
	c.building.Store(f)
	// Give the slot back only if it is still ours (a load that began
	// meanwhile owns it now), and only after f is in force: addKey reads
	// building before filter, so an announcement that finds the slot
	// empty finds f in force.
	defer c.building.CompareAndSwap(f, nil)
	if err := src.EachTokenKey(ctx, f.Add); err != nil {
		return fmt.Errorf("load membership filter: %w", err)
	}
	c.filterMu.Lock()
	defer c.filterMu.Unlock()
	if c.filterGen.Load() != gen {
		// The change log lost changes during the load (InvalidateAll):
		// keys created then may be missing from f.
		c.wantFilter()
		return errors.New("load membership filter: changes were lost while it loaded; load it again")
	}
	c.filter.Store(f)
	return nil
}

// FilterWanted receives when the filter should be rebuilt: it is full, or
// it was dropped because changes were lost.
func (c *Cache) FilterWanted() <-chan struct{} { return c.rebuild }

func (c *Cache) wantFilter() {
	select {
	case c.rebuild <- struct{}{}:
	default:
	}
}

// addKey records an announced token key in the filter in force and in the
// one being built, so that a token created after the filter's load is
// never refused by it once this replica heard of it.
func (c *Cache) addKey(h Hash) {
	// building first: see LoadFilter.
	if b := c.building.Load(); b != nil {
		b.Add(h)
	}
	if f := c.filter.Load(); f != nil {
		f.Add(h)
		if f.Full() {
			c.wantFilter()
		}
	}
}

// dropFilter stops using the filter: changes were lost, so it may lack
// keys created meanwhile.
func (c *Cache) dropFilter() {
	c.filterMu.Lock()
	c.filterGen.Add(1)
	c.filter.Store(nil)
	c.filterMu.Unlock()
	c.wantFilter()
}

// ruledOut reports whether the filter in force rules h out: no live key
// can have that hash, unless it was created so recently that this replica
// has not heard of it yet.
func (c *Cache) ruledOut(h Hash) bool {
	f := c.filter.Load()
	return f != nil && !f.MayContain(h)
}

// allowance is a lock-free GCRA: up to perSecond takes a second, in a
// burst of at most one second's worth.
type allowance struct{ tat atomic.Int64 }

func (a *allowance) take(now int64, perSecond int) bool {
	if perSecond <= 0 {
		return false
	}
	const second = int64(1e9)
	interval := second / int64(perSecond)
	for {
		tat := a.tat.Load()
		next := max(tat, now) + interval
		if next-now > second {
			return false
		}
		if a.tat.CompareAndSwap(tat, next) {
			return true
		}
	}
}
