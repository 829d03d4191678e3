package policy

// MappedBytes reports how much memory the cache's table holds outside the
// Go heap, which the heap statistics do not count.
func (c *Cache) MappedBytes() int { return c.entries.mappedBytes() }
