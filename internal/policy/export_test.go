package policy

// QueuedLookups reports how many look-ups wait for the next batch query,
// for tests that must know a miss has joined one.
func (c *Cache) QueuedLookups() int {
	c.loads.mu.Lock()
	defer c.loads.mu.Unlock()
	return len(c.loads.queue)
}
