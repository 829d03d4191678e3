package policy

import (
	"runtime"
	"sync"
)

// maxTokenIDLen is the longest token id a cached policy holds inline.
// Tollgate's own ids are 20 bytes.
const maxTokenIDLen = 32

// noSlot ends the LRU chain and marks an empty shelf reference.
const noSlot = -1

// table is the cache's LRU of compiled policies. A million cached tokens
// must not give the garbage collector a million objects to mark on every
// cycle: with one allocation per entry (golang-lru's list elements), a
// full GC over 1M cached policies took 90–600 ms here; over this table,
// about 5 ms. So the slots live in pages of plain values — the
// index maps a hash to a slot number, the LRU chain is slot numbers, the
// token id is kept inline — and the few parts that do hold pointers, which
// tokens mostly share (the account, compiled list restrictions) or few
// have (signing keys), live on shelves that slots refer to by number.
//
// Having no pointers, the slots and the index need not be on the Go heap
// at all, and are not (region): there they would count toward GOGC's
// goal, and the process would hold about twice their size.
type table struct {
	mu         sync.Mutex
	index      *slotIndex
	slots      *pages
	size       int   // the most slots in use at once
	head, tail int32 // most and least recently used
	free       int32 // the first unused slot, chained through next

	accounts shelf[accountInfo]
	rules    shelf[*rules]
	signing  shelf[*signingKey]
}

// slot is one cached policy: its terms, its links in the LRU chain, and
// shelf numbers for everything that holds a pointer.
type slot struct {
	hash       Hash
	prev, next int32
	loaded     int64 // unix nanoseconds
	terms      terms
	account    int32
	accountGen uint32 // the account's generation when loaded
	rules      int32
	signing    int32
	idLen      uint8
	id         [maxTokenIDLen]byte
}

// accountInfo is what the slots of one account share. gen moves when the
// account changes, which makes all of them stale at once, without a scan.
type accountInfo struct {
	id  string
	gen uint32
}

// pageSlots is how many slots a page holds. The table grows a page at a
// time rather than by append, which at a million slots copies 150 MB with
// the table locked and holds twice that while it does.
const pageSlots = 1024

// pages hold the slots, numbered from 0 in the order handed out.
type pages struct {
	pages []region[slot]
	n     int32
}

func (p *pages) at(i int32) *slot { return &p.pages[i/pageSlots].vals[i%pageSlots] }

// grow hands out the next slot number.
func (p *pages) grow() int32 {
	if int(p.n) == len(p.pages)*pageSlots {
		p.pages = append(p.pages, newRegion[slot](pageSlots))
	}
	p.n++
	return p.n - 1
}

// free gives every page back; no slot may be used afterwards.
func (p *pages) free() {
	for i := range p.pages {
		p.pages[i].free()
	}
	*p = pages{}
}

func (p *pages) mappedBytes() int {
	n := 0
	for i := range p.pages {
		n += p.pages[i].mappedBytes()
	}
	return n
}

func newTable(size int) *table {
	index, slots := newSlotIndex(), &pages{}
	t := &table{index: index, slots: slots, size: size, head: noSlot, tail: noSlot, free: noSlot}
	// The mapped memory is the table's to give back, also when the table
	// is dropped without a purge (a test's cache, say): the collector
	// frees the table but cannot see what it mapped.
	runtime.AddCleanup(t, func(m tableMemory) {
		m.index.free()
		m.slots.free()
	}, tableMemory{index, slots})
	return t
}

// tableMemory is what a table has mapped, apart from the table itself, so
// that a cleanup can free it once the table is unreachable.
type tableMemory struct {
	index *slotIndex
	slots *pages
}

// get returns the policy cached for h, when it was loaded, and whether
// its account has changed since.
func (t *table) get(h Hash) (p Policy, loaded int64, stale, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i, ok := t.index.find(h, t.slots)
	if !ok {
		return Policy{}, 0, false, false
	}
	t.unlink(i)
	t.pushFront(i)
	s := t.slots.at(i)
	acc := t.accounts.items[s.account].val
	p = Policy{TokenID: string(s.id[:s.idLen]), AccountID: acc.id, terms: s.terms}
	if s.rules != noSlot {
		p.rules = t.rules.items[s.rules].val
	}
	if s.signing != noSlot {
		p.signing = t.signing.items[s.signing].val
	}
	return p, s.loaded, s.accountGen != acc.gen, true
}

// add caches p for h, replacing what h had, and reports whether it
// evicted the least recently used policy to make room. Policies whose
// rules have the same key share one copy of them.
func (t *table) add(h Hash, p Policy, rulesKey string, loaded int64) (evicted bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i, ok := t.index.find(h, t.slots)
	if ok {
		t.unlink(i)
		t.release(i)
	} else {
		if t.index.len() >= t.size {
			t.drop(t.tail)
			evicted = true
		}
		i = t.take()
	}
	s := t.slots.at(i)
	*s = slot{hash: h, loaded: loaded, terms: p.terms, rules: noSlot, signing: noSlot}
	s.idLen = uint8(copy(s.id[:], p.TokenID))
	s.account = t.accounts.put(p.AccountID, func() accountInfo { return accountInfo{id: p.AccountID} })
	s.accountGen = t.accounts.items[s.account].val.gen
	if p.rules != nil {
		s.rules = t.rules.put(rulesKey, func() *rules { return p.rules })
	}
	if p.signing != nil {
		s.signing = t.signing.put("", func() *signingKey { return p.signing })
	}
	if !ok {
		// The index reads the slot's hash, so it learns of the slot last.
		t.index.insert(h, i, t.slots, t.size)
	}
	t.pushFront(i)
	return evicted
}

// remove forgets h.
func (t *table) remove(h Hash) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if i, ok := t.index.find(h, t.slots); ok {
		t.drop(i)
	}
}

// staleAccount marks every cached policy of the account stale.
func (t *table) staleAccount(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if i, ok := t.accounts.byKey[id]; ok {
		t.accounts.items[i].val.gen++
	}
}

// purge forgets everything, and gives the memory back.
func (t *table) purge() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.index.free()
	t.slots.free()
	t.head, t.tail, t.free = noSlot, noSlot, noSlot
	t.accounts, t.rules, t.signing = shelf[accountInfo]{}, shelf[*rules]{}, shelf[*signingKey]{}
}

// resize changes how many policies the table holds, evicting the least
// recently used when it shrinks, and then moving the rest into new pages
// so that the memory is given back.
func (t *table) resize(size int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.size = size
	if int(t.slots.n) <= size {
		return
	}
	for t.index.len() > size {
		t.drop(t.tail)
	}
	old, last := *t.slots, t.tail
	*t.slots = pages{}
	t.index.free()
	t.head, t.tail, t.free = noSlot, noSlot, noSlot
	// Walk from the least recently used, so that pushing each to the
	// front rebuilds the same order.
	for i := last; i != noSlot; i = old.at(i).prev {
		j := t.slots.grow()
		*t.slots.at(j) = *old.at(i)
		t.index.insert(old.at(i).hash, j, t.slots, size)
		t.pushFront(j)
	}
	old.free()
}

// len returns how many policies are cached.
func (t *table) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.index.len()
}

// mappedBytes reports how much memory the table holds outside the Go heap.
func (t *table) mappedBytes() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.slots.mappedBytes() + t.index.buckets.mappedBytes()
}

// take returns an unused slot, growing the slice when none is free.
func (t *table) take() int32 {
	if i := t.free; i != noSlot {
		t.free = t.slots.at(i).next
		return i
	}
	return t.slots.grow()
}

// drop forgets slot i and puts it on the free chain.
func (t *table) drop(i int32) {
	t.unlink(i)
	t.release(i)
	s := t.slots.at(i)
	t.index.remove(s.hash, i, t.slots)
	*s = slot{next: t.free}
	t.free = i
}

// release gives back slot i's shelf references.
func (t *table) release(i int32) {
	s := t.slots.at(i)
	t.accounts.release(s.account)
	t.rules.release(s.rules)
	t.signing.release(s.signing)
}

func (t *table) unlink(i int32) {
	s := t.slots.at(i)
	if s.prev != noSlot {
		t.slots.at(s.prev).next = s.next
	} else {
		t.head = s.next
	}
	if s.next != noSlot {
		t.slots.at(s.next).prev = s.prev
	} else {
		t.tail = s.prev
	}
}

func (t *table) pushFront(i int32) {
	s := t.slots.at(i)
	s.prev, s.next = noSlot, t.head
	if t.head != noSlot {
		t.slots.at(t.head).prev = i
	} else {
		t.tail = i
	}
	t.head = i
}

// shelf keeps the values that slots refer to by number, counting the
// slots that use each, so that a value lives as long as a cached policy
// needs it. Values put under the same non-empty key are shared.
type shelf[T any] struct {
	items []shelfItem[T]
	free  []int32
	byKey map[string]int32
}

type shelfItem[T any] struct {
	key  string
	val  T
	refs int32
}

// put counts one more user of key's value, made with mk when the shelf has
// none (always, for key ""), and returns its number.
func (s *shelf[T]) put(key string, mk func() T) int32 {
	if i, ok := s.byKey[key]; ok && key != "" {
		s.items[i].refs++
		return i
	}
	item := shelfItem[T]{key: key, val: mk(), refs: 1}
	var i int32
	if n := len(s.free); n > 0 {
		i, s.free = s.free[n-1], s.free[:n-1]
		s.items[i] = item
	} else {
		i = int32(len(s.items))
		s.items = append(s.items, item)
	}
	if key != "" {
		if s.byKey == nil {
			s.byKey = map[string]int32{}
		}
		s.byKey[key] = i
	}
	return i
}

// release counts one user fewer of value i, and forgets it after the
// last. noSlot is no value.
func (s *shelf[T]) release(i int32) {
	if i == noSlot {
		return
	}
	it := &s.items[i]
	if it.refs--; it.refs > 0 {
		return
	}
	if it.key != "" {
		delete(s.byKey, it.key)
	}
	*it = shelfItem[T]{}
	s.free = append(s.free, i)
}
