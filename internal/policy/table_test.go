package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"runtime"
	"testing"

	lru "github.com/hashicorp/golang-lru/v2"
)

func tableHash(i int) Hash {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(i))
	return Hash(sha256.Sum256(b[:]))
}

func tablePolicy(i int, account string, r *rules) Policy {
	return Policy{TokenID: fmt.Sprintf("tok_%016d", i), AccountID: account, rules: r,
		terms: terms{kind: Publishable, creditLimit: int64(i), accountQuota: -1, flags: flagEnabled}}
}

// order returns the cached hashes' numbers from most to least recently
// used, walking the chain both ways to check its links.
func (t *table) order(t2 *testing.T, n int) []int {
	t2.Helper()
	num := map[Hash]int{}
	for i := range n {
		num[tableHash(i)] = i
	}
	var fwd, back []int
	for i := t.head; i != noSlot; i = t.slots.at(i).next {
		fwd = append(fwd, num[t.slots.at(i).hash])
	}
	for i := t.tail; i != noSlot; i = t.slots.at(i).prev {
		back = append([]int{num[t.slots.at(i).hash]}, back...)
	}
	if fmt.Sprint(fwd) != fmt.Sprint(back) || len(fwd) != t.index.len() {
		t2.Fatalf("chain forward %v, backward %v, index %d", fwd, back, t.index.len())
	}
	return fwd
}

func TestTableGetReturnsWhatWasAdded(t *testing.T) {
	tb := newTable(10)
	shared := &rules{domains: []DomainPattern{{}}}
	key := &signingKey{secret: []byte("s")}
	p := tablePolicy(1, "acc_1", shared)
	p.signing = key
	tb.add(tableHash(1), p, "k", 42)
	got, loaded, stale, ok := tb.get(tableHash(1))
	if !ok || stale || loaded != 42 {
		t.Fatalf("get = ok %v stale %v loaded %d", ok, stale, loaded)
	}
	if got.TokenID != p.TokenID || got.AccountID != "acc_1" || got.terms != p.terms || got.rules != shared || got.signing != key {
		t.Fatalf("got %+v, want %+v", got, p)
	}
	if _, _, _, ok := tb.get(tableHash(2)); ok {
		t.Fatal("an absent hash was found")
	}
}

func TestTableEvictsLeastRecentlyUsed(t *testing.T) {
	tb := newTable(3)
	for i := range 3 {
		if tb.add(tableHash(i), tablePolicy(i, "acc_1", nil), "", 0) {
			t.Fatalf("add %d evicted below the size", i)
		}
	}
	tb.get(tableHash(0)) // 0 is now the most recent; 1 the least
	if got := fmt.Sprint(tb.order(t, 5)); got != "[0 2 1]" {
		t.Fatalf("order %s", got)
	}
	if !tb.add(tableHash(3), tablePolicy(3, "acc_1", nil), "", 0) {
		t.Fatal("a full table did not evict")
	}
	if _, _, _, ok := tb.get(tableHash(1)); ok {
		t.Fatal("the least recently used policy was kept")
	}
	if got := fmt.Sprint(tb.order(t, 5)); got != "[3 0 2]" {
		t.Fatalf("order %s", got)
	}
	// Replacing a cached hash neither evicts nor grows.
	if tb.add(tableHash(2), tablePolicy(20, "acc_1", nil), "", 7) {
		t.Fatal("replacing evicted")
	}
	if p, loaded, _, _ := tb.get(tableHash(2)); p.creditLimit != 20 || loaded != 7 || tb.len() != 3 {
		t.Fatalf("replaced: %+v loaded %d len %d", p, loaded, tb.len())
	}
	tb.remove(tableHash(0))
	tb.remove(tableHash(0))
	if got := fmt.Sprint(tb.order(t, 5)); got != "[2 3]" {
		t.Fatalf("order after remove %s", got)
	}
	// A freed slot is used again rather than growing the slice.
	tb.add(tableHash(4), tablePolicy(4, "acc_1", nil), "", 0)
	if tb.slots.n != 3 {
		t.Fatalf("%d slots for 3 policies", tb.slots.n)
	}
}

func TestTableResize(t *testing.T) {
	tb := newTable(10)
	for i := range 10 {
		tb.add(tableHash(i), tablePolicy(i, fmt.Sprintf("acc_%d", i%2), nil), "", 0)
	}
	tb.resize(4)
	if got := fmt.Sprint(tb.order(t, 10)); got != "[9 8 7 6]" {
		t.Fatalf("after shrinking: %s", got)
	}
	if tb.slots.n != 4 || len(tb.slots.pages) != 1 {
		t.Fatalf("shrinking kept %d slots in %d pages", tb.slots.n, len(tb.slots.pages))
	}
	for i := 6; i < 10; i++ {
		if p, _, _, ok := tb.get(tableHash(i)); !ok || p.creditLimit != int64(i) || p.AccountID != fmt.Sprintf("acc_%d", i%2) {
			t.Fatalf("policy %d after shrinking: %+v %v", i, p, ok)
		}
	}
	tb.resize(6)
	for i := 10; i < 12; i++ {
		if tb.add(tableHash(i), tablePolicy(i, "acc_0", nil), "", 0) {
			t.Fatalf("growing: add %d evicted", i)
		}
	}
	if tb.len() != 6 {
		t.Fatalf("len %d after growing to 6", tb.len())
	}
}

// Growing adds pages; shrinking moves what is kept into new ones, so the
// memory of the evicted policies is given back.
func TestTablePages(t *testing.T) {
	const n = 3 * pageSlots
	tb := newTable(n)
	for i := range n {
		tb.add(tableHash(i), tablePolicy(i, "acc_1", nil), "", 0)
	}
	if len(tb.slots.pages) != 3 || tb.len() != n {
		t.Fatalf("%d policies in %d pages, want %d in 3", tb.len(), len(tb.slots.pages), n)
	}
	tb.resize(10)
	if len(tb.slots.pages) != 1 || tb.len() != 10 {
		t.Fatalf("after shrinking to 10: %d policies in %d pages", tb.len(), len(tb.slots.pages))
	}
	order := tb.order(t, n)
	if order[0] != n-1 || order[9] != n-10 {
		t.Fatalf("kept %v, want the 10 most recent", order)
	}
}

func TestTableSharesAndReleases(t *testing.T) {
	tb := newTable(10)
	a, b := &rules{}, &rules{}
	tb.add(tableHash(0), tablePolicy(0, "acc_1", a), "same", 0)
	tb.add(tableHash(1), tablePolicy(1, "acc_1", b), "same", 0)
	tb.add(tableHash(2), tablePolicy(2, "acc_2", &rules{}), "other", 0)
	if p, _, _, _ := tb.get(tableHash(1)); p.rules != a {
		t.Fatal("rules with the same key are not shared")
	}
	if len(tb.accounts.byKey) != 2 || len(tb.rules.byKey) != 2 {
		t.Fatalf("%d accounts, %d rules on the shelves", len(tb.accounts.byKey), len(tb.rules.byKey))
	}
	tb.remove(tableHash(2))
	if _, ok := tb.accounts.byKey["acc_2"]; ok {
		t.Fatal("an account with no cached policy stayed on the shelf")
	}
	if _, ok := tb.rules.byKey["other"]; ok {
		t.Fatal("rules no cached policy uses stayed on the shelf")
	}
	tb.remove(tableHash(0))
	if p, _, _, _ := tb.get(tableHash(1)); p.rules != a {
		t.Fatal("shared rules went while a policy still used them")
	}
	tb.remove(tableHash(1))
	if len(tb.rules.byKey) != 0 || len(tb.accounts.byKey) != 0 {
		t.Fatal("the shelves kept values after the last policy went")
	}
	for _, it := range tb.rules.items {
		if it.val != nil {
			t.Fatal("a released shelf item still holds its value")
		}
	}
}

func TestTableStaleAccount(t *testing.T) {
	tb := newTable(10)
	tb.add(tableHash(0), tablePolicy(0, "acc_1", nil), "", 0)
	tb.add(tableHash(1), tablePolicy(1, "acc_2", nil), "", 0)
	tb.staleAccount("acc_1")
	tb.staleAccount("acc_nobody")
	if _, _, stale, _ := tb.get(tableHash(0)); !stale {
		t.Fatal("a policy of the changed account is not stale")
	}
	if _, _, stale, _ := tb.get(tableHash(1)); stale {
		t.Fatal("a policy of another account went stale")
	}
	// Loaded again after the change, it is fresh.
	tb.add(tableHash(0), tablePolicy(0, "acc_1", nil), "", 0)
	if _, _, stale, _ := tb.get(tableHash(0)); stale {
		t.Fatal("a policy loaded after the change is stale")
	}
	tb.purge()
	if _, _, _, ok := tb.get(tableHash(1)); ok || tb.len() != 0 {
		t.Fatal("purge kept policies")
	}
	tb.add(tableHash(1), tablePolicy(1, "acc_2", nil), "", 0)
	if p, _, _, ok := tb.get(tableHash(1)); !ok || p.AccountID != "acc_2" {
		t.Fatal("the table does not work after a purge")
	}
}

func TestCompileRefusesLongTokenIDs(t *testing.T) {
	tok := NewToken("acc_1", Publishable)
	tok.ID = "tok_" + fmt.Sprintf("%040d", 1)
	if _, err := Compile(tok, &Account{ID: "acc_1"}, nil); err == nil {
		t.Fatal("a token id longer than a slot holds compiled")
	}
}

// BenchmarkGCWithCachedPolicies measures one full garbage collection with
// a million policies cached, in the table and, as the baseline, in a
// golang-lru of the same policies. Read ns/op.
func BenchmarkGCWithCachedPolicies(b *testing.B) {
	const n = 1_000_000
	shared := &rules{}
	for _, c := range []struct {
		name string
		fill func() any
	}{
		{"table", func() any {
			tb := newTable(n)
			for i := range n {
				tb.add(tableHash(i), tablePolicy(i, "acc_1", shared), "k", 0)
			}
			return tb
		}},
		{"golang-lru", func() any {
			type entry struct {
				Policy
				loaded int64
			}
			l, _ := lru.New[Hash, entry](n)
			for i := range n {
				l.Add(tableHash(i), entry{Policy: tablePolicy(i, "acc_1", shared)})
			}
			return l
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			held := c.fill()
			runtime.GC()
			for b.Loop() {
				runtime.GC()
			}
			runtime.KeepAlive(held)
		})
	}
}

func BenchmarkTableGet(b *testing.B) {
	const n = 100_000
	tb := newTable(n)
	for i := range n {
		tb.add(tableHash(i), tablePolicy(i, "acc_1", nil), "", 0)
	}
	hs := make([]Hash, 1024)
	for i := range hs {
		hs[i] = tableHash(i * 97 % n)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		tb.get(hs[i&1023])
		i++
	}
}
