package policy

import (
	"os"
	"reflect"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRegionTypesHoldNoPointers checks that what the table keeps outside
// the Go heap holds nothing the garbage collector would need to see: no
// pointer, string, slice, map, channel, function or interface, at any
// depth. A string field added to slot must fail here, not dangle later.
func TestRegionTypesHoldNoPointers(t *testing.T) {
	for _, typ := range []reflect.Type{
		reflect.TypeFor[slot](),   // pages
		reflect.TypeFor[uint32](), // the index's buckets
	} {
		if path, ok := pointerIn(typ, typ.String()); ok {
			t.Errorf("%s holds a pointer at %s: it cannot live in mapped memory", typ, path)
		}
	}
	// The check itself must see pointers where they are.
	type inner struct{ ids [2]string }
	type outer struct {
		n int64
		x [3]inner
	}
	if path, ok := pointerIn(reflect.TypeFor[outer](), "outer"); !ok || path != "outer.x[].ids[]" {
		t.Errorf("pointerIn(outer) = %q, %v, want outer.x[].ids[], true", path, ok)
	}
}

// pointerIn returns where typ holds something with a pointer in it.
func pointerIn(typ reflect.Type, path string) (string, bool) {
	switch typ.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return "", false
	case reflect.Array:
		return pointerIn(typ.Elem(), path+"[]")
	case reflect.Struct:
		for i := range typ.NumField() {
			f := typ.Field(i)
			if p, ok := pointerIn(f.Type, path+"."+f.Name); ok {
				return p, true
			}
		}
		return "", false
	}
	// Pointers, strings, slices, maps, channels, functions, interfaces,
	// and uintptr, which may be a pointer in disguise.
	return path, true
}

// Purging and shrinking give the mapped memory back: the table's count of
// it falls, and so does the process's resident memory, at once.
func TestTableGivesMappedMemoryBack(t *testing.T) {
	skipUnlessMapped(t)
	const n = 50 * pageSlots
	tb := newTable(n)
	fill := func() {
		for i := range n {
			tb.add(tableHash(i), tablePolicy(i, "acc_1", nil), "", 0)
		}
	}
	fill()
	full := tb.mappedBytes()
	if want := n*sizeofSlot() + 4*len(tb.index.buckets.vals); full != want {
		t.Fatalf("%d bytes mapped for %d policies, want %d", full, n, want)
	}
	// Free heap memory goes back to the OS first, so that what falls
	// afterwards is the table's.
	debug.FreeOSMemory()
	before := residentBytes(t)
	tb.resize(10)
	if got, want := tb.mappedBytes(), pageSlots*sizeofSlot()+4*minIndexBuckets; got != want {
		t.Fatalf("after shrinking to 10: %d bytes mapped, want %d", got, want)
	}
	if fell := int64(before) - int64(residentBytes(t)); fell < int64(full-tb.mappedBytes())*3/4 {
		t.Fatalf("shrinking gave back %d of %d mapped bytes, resident memory fell %d", full-tb.mappedBytes(), full, fell)
	}

	tb.resize(n)
	fill()
	debug.FreeOSMemory()
	before = residentBytes(t)
	tb.purge()
	if got := tb.mappedBytes(); got != 0 {
		t.Fatalf("after a purge: %d bytes mapped", got)
	}
	if fell := int64(before) - int64(residentBytes(t)); fell < int64(full)*3/4 {
		t.Fatalf("a purge gave back %d mapped bytes, resident memory fell %d", full, fell)
	}
	fill()
	if got := tb.mappedBytes(); got != full {
		t.Fatalf("filled again after a purge: %d bytes mapped, want %d", got, full)
	}
}

// A table dropped without a purge gives its mapped memory back once
// collected. Seen from outside, as the process's resident memory, which
// the collector's own accounting does not include.
func TestDroppedTableGivesMappedMemoryBack(t *testing.T) {
	skipUnlessMapped(t)
	const n = 50 * pageSlots
	tb := newTable(n)
	for i := range n {
		tb.add(tableHash(i), tablePolicy(i, "acc_1", nil), "", 0)
	}
	mapped := tb.mappedBytes()
	runtime.GC()
	before := residentBytes(t)
	runtime.KeepAlive(tb) // up to here, and no further
	for range 100 {
		runtime.GC()
		if freed := int64(before) - int64(residentBytes(t)); freed >= int64(mapped)*3/4 {
			return
		}
		time.Sleep(10 * time.Millisecond) // the cleanup runs on a goroutine of its own
	}
	t.Fatalf("resident memory fell %d bytes after dropping a table that mapped %d",
		int64(before)-int64(residentBytes(t)), mapped)
}

func skipUnlessMapped(t *testing.T) {
	t.Helper()
	b, err := mapBytes(1)
	if err != nil {
		t.Skipf("the table's memory is on the heap here: %v", err)
	}
	if err := unmapBytes(b); err != nil {
		t.Fatal(err)
	}
}

// residentBytes reads the process's resident set size (VmRSS) from procfs.
func residentBytes(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no procfs to read the resident set size from: %v", err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("read VmRSS %q: %v", rest, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

func sizeofSlot() int { return int(reflect.TypeFor[slot]().Size()) }
