package policy

// QueuedLookups reports how many look-ups wait for the next batch query,
// for tests that must know a miss has joined one.
func (c *Cache) QueuedLookups() int {
	if c.batches == nil {
		return 0
	}
	c.batches.mu.Lock()
	defer c.batches.mu.Unlock()
	return len(c.batches.queue)
}
