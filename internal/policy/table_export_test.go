package policy

import "testing"

// MappedBytes reports how much memory the cache's table holds outside the
// Go heap, which the heap statistics do not count.
func (c *Cache) MappedBytes() int { return c.entries.mappedBytes() }

// ResidentBytes reads the process's resident set size (VmRSS), skipping
// the test where there is no procfs.
func ResidentBytes(t *testing.T) uint64 {
	t.Helper()
	return residentBytes(t)
}
