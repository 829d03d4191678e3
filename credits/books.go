package credits

import (
	"context"
	"time"

	"github.com/tollgate/tollgate/store"
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
			// and the last flush would write them a second time.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*m.cfg.StoreTimeout)
			m.flush(fctx, false)
			cancel()
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

// close returns leases and writes usage with a fresh deadline: the
// server's context is already done.
func (m *Meter) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*m.cfg.StoreTimeout)
	defer cancel()
	// This is the last chance to write: retry until the books are empty or
	// the deadline passes, rather than lose what a failed write held.
	for wait := 50 * time.Millisecond; ; wait *= 2 {
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
	m.mu.Lock()
	subjects := make(map[subjectKey]*subject, len(m.subjects))
	for k, s := range m.subjects {
		subjects[k] = s
	}
	batch := make([]store.DailyUsage, 0, len(m.usage))
	for _, u := range m.usage {
		batch = append(batch, *u)
	}
	clear(m.usage)
	m.mu.Unlock()

	counted := map[int64]map[string]int64{} // period → subject → credits
	for k, s := range subjects {
		s.mu.Lock()
		// A refund can leave a counted subject below zero (spent, written,
		// then refunded): the one-by-one path handles that.
		unlimited := s.limit < 0 && s.lease == 0 && s.pending >= 0
		switch {
		case unlimited && s.pending > 0:
			if counted[k.period] == nil {
				counted[k.period] = map[string]int64{}
			}
			counted[k.period][k.id] = s.pending
			s.pending = 0
		case unlimited && s.pending == 0 && (all || k.period != current || s.lastUsed < idle):
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
	for period, deltas := range counted {
		m.addCounted(ctx, period, deltas, subjects, all, current, idle)
	}
	if err := m.store.RecordUsage(ctx, batch); err != nil {
		m.log.Warn("credits: writing usage failed; will retry", "rows", len(batch), "err", err)
		m.mu.Lock()
		for _, u := range batch {
			m.merge(u)
		}
		m.mu.Unlock()
	}
}

// addCounted writes what subjects without a limit spent, for one period,
// in a few statements however many subjects there are; learns their
// totals; and drops the books of those idle or finished.
func (m *Meter) addCounted(ctx context.Context, period int64, deltas map[string]int64, subjects map[subjectKey]*subject, all bool, current, idle int64) {
	totals, err := m.store.AddCreditsBatch(ctx, time.Unix(period, 0), deltas)
	for id, n := range deltas {
		k := subjectKey{id, period}
		s := subjects[k]
		s.mu.Lock()
		if err != nil {
			s.pending += n
		} else {
			s.total, s.known = totals[id], true
			if s.pending == 0 && (all || k.period != current || s.lastUsed < idle) {
				s.retired = true
				m.mu.Lock()
				delete(m.subjects, k)
				m.mu.Unlock()
			}
		}
		s.mu.Unlock()
	}
	if err != nil {
		m.log.Warn("credits: writing spending failed; will retry", "subjects", len(deltas), "err", err)
	}
}

// settled reports whether nothing is left to write.
func (m *Meter) settled() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.usage) == 0 && len(m.subjects) == 0
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
		m.log.Warn("credits: writing spending failed; will retry", "subject", k.id, "err", err)
		return
	}
	if pending != 0 || lease != 0 {
		s.total, s.known = total, true
	}
	// Drop the books if nothing came in while they were written. Lock
	// order is s.mu then m.mu here; nothing takes them the other way.
	if s.lease == 0 && s.pending == 0 && (all || k.period != current || s.lastUsed < idle) {
		s.retired = true
		m.mu.Lock()
		delete(m.subjects, k)
		m.mu.Unlock()
	}
}

// merge puts a batch row that could not be written back into the books.
// Called with m.mu held.
func (m *Meter) merge(u store.DailyUsage) {
	day, err := time.Parse(time.DateOnly, u.Day)
	if err != nil {
		return
	}
	k := usageKey{u.TokenID, day.Unix() / 86400}
	cur, ok := m.usage[k]
	if !ok {
		cp := u
		m.usage[k] = &cp
		return
	}
	cur.Requests += u.Requests
	cur.Credits += u.Credits
	if u.LastUsed.After(cur.LastUsed) {
		cur.LastUsed = u.LastUsed
	}
	for code, n := range u.Denials {
		if cur.Denials == nil {
			cur.Denials = map[string]int64{}
		}
		cur.Denials[code] += n
	}
}
