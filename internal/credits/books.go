package credits

import (
	"cmp"
	"context"
	"slices"
	"time"
)

// Run keeps the books until ctx ends: every FlushInterval it writes usage,
// adds what unlimited subjects spent, returns leases of finished periods,
// and beats the replica heartbeat. When ctx ends it returns every unspent
// lease and writes what is left, so a graceful stop loses nothing.
func (m *Meter) Run(ctx context.Context) {
	m.heartbeat(ctx)
	tick := time.NewTicker(m.cfg.FlushInterval)
	defer tick.Stop()
	beat := time.NewTicker(max(m.cfg.ReplicaTTL/3, 100*time.Millisecond))
	defer beat.Stop()
	share := time.NewTicker(m.cfg.ShareInterval)
	defer share.Stop()
	m.lastShare = m.now()
	for {
		select {
		case <-ctx.Done():
			m.close()
			return
		case <-beat.C:
			m.heartbeat(ctx)
		case <-share.C:
			m.shareDemand(ctx, m.now())
		case <-tick.C:
			// Not the server's context: cancelling a write whose statement
			// already committed would put its credits back in the books,
			// and the last flush would write them a second time. Each write
			// carries a deadline of its own, sized to what it writes.
			m.flush(context.WithoutCancel(ctx), false)
		}
	}
}

func (m *Meter) heartbeat(ctx context.Context) {
	hctx, cancel := context.WithTimeout(ctx, m.cfg.StoreTimeout)
	defer cancel()
	n, err := m.store.Heartbeat(hctx, m.id, m.cfg.ReplicaTTL)
	if err != nil {
		m.log.Warn("credits: heartbeat failed; keeping the last replica count", "err", err)
		return
	}
	m.replicas.Store(int64(n))
}

// close returns leases and writes usage with a fresh deadline, since the
// server's context is already done. The deadline grows with the backlog,
// so a replica stopping with many rows unwritten gets the time to write
// them rather than a fixed few seconds.
func (m *Meter) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*m.cfg.StoreTimeout+time.Duration(m.Backlog())*usageRowBudget)
	defer cancel()
	// This is the last chance to write: retry until the books are empty or
	// the deadline passes, rather than lose what a failed write held.
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		m.flush(ctx, true)
		if m.settled() {
			break
		}
		select {
		case <-ctx.Done():
			m.log.Error("credits: stopping with usage or leases unwritten", "err", ctx.Err())
			return
		case <-time.After(wait):
		}
	}
	if err := m.store.RemoveReplica(ctx, m.id); err != nil {
		m.log.Warn("credits: leaving the replica list failed", "err", err)
	}
}

// flush writes pending spending and usage. With all set (at shutdown) it
// returns every lease; otherwise only those of finished periods and of
// subjects idle for a while.
func (m *Meter) flush(ctx context.Context, all bool) {
	now := m.now()
	current := m.cfg.Period.Start(now).Unix()
	idle := now.Add(-10 * m.cfg.FlushInterval).Unix()
	// The books are walked from a copy, so Checks meeting new subjects
	// do not wait for the walk; a slice, since a warming replica holds a
	// subject for every token it met in the last few flush intervals and
	// copying them into a map cost more than the walk.
	type book struct {
		k subjectKey
		s *subject
	}
	m.mu.Lock()
	books := make([]book, 0, len(m.subjects))
	for k, s := range m.subjects {
		books = append(books, book{k, s})
	}
	m.mu.Unlock()

	// Spending is queued afresh only once the last queue is written, so a
	// flush never re-sorts or re-queues a backlog it cannot write yet.
	collect := len(m.queue.spend) == 0
	for _, b := range books {
		k, s := b.k, b.s
		s.mu.Lock()
		// A refund can leave a counted subject below zero (spent, written,
		// then refunded): the one-by-one path handles that.
		unlimited := s.limit < 0 && s.lease == 0 && s.pending >= 0
		switch {
		case unlimited && s.pending > 0 && collect:
			m.queue.spend = append(m.queue.spend, spending{k, s.pending})
			s.queued += s.pending
			s.pending = 0
		case unlimited && s.pending == 0 && s.queued == 0 && (all || k.period != current || s.lastUsed < idle):
			// Nothing to write and no longer in use.
			s.retired = true
			m.mu.Lock()
			delete(m.subjects, k)
			m.mu.Unlock()
		}
		s.mu.Unlock()
		if !unlimited {
			m.settle(ctx, k, s, all, current, idle)
		}
	}
	// The writes' time budget starts here: walking the books is not a
	// write, and with many subjects it must not eat the writes' share.
	start := time.Now()
	if collect {
		slices.SortFunc(m.queue.spend, func(a, b spending) int {
			return cmp.Or(cmp.Compare(a.key.period, b.key.period), cmp.Compare(a.key.id, b.key.id))
		})
	}
	m.writeSpending(ctx, all, start)
	m.writeUsage(ctx, all, start)
	m.flushes.Add(1)
}

// settled reports whether nothing is left to write.
func (m *Meter) settled() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.usage) == 0 && len(m.subjects) == 0 && m.queued.Load() == 0
}

// settle writes one subject's books. It takes what is owed out of the
// books under the lock and writes it without the lock, so Checks spending
// from the same subject never wait on the database here.
func (m *Meter) settle(ctx context.Context, k subjectKey, s *subject, all bool, current, idle int64) {
	s.mu.Lock()
	finished := all || k.period != current || s.lastUsed < idle
	pending, lease := s.pending, int64(0)
	if finished {
		lease = s.lease // unspent: give it back
	}
	s.pending, s.lease = 0, s.lease-lease
	s.mu.Unlock()

	var total int64
	var err error
	if delta := pending - lease; delta != 0 {
		total, err = m.exchange(ctx, k.id, time.Unix(k.period, 0), delta)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.pending, s.lease = s.pending+pending, s.lease+lease
		m.failures.Add(1)
		m.log.Warn("credits: writing spending failed; will retry", "subject", k.id, "err", err)
		return
	}
	if pending != 0 || lease != 0 {
		s.total, s.known = total, true
	}
	// Drop the books if nothing came in while they were written. Lock
	// order is s.mu then m.mu here; nothing takes them the other way.
	if s.lease == 0 && s.pending == 0 && s.queued == 0 && (all || k.period != current || s.lastUsed < idle) {
		s.retired = true
		m.mu.Lock()
		delete(m.subjects, k)
		m.mu.Unlock()
	}
}
