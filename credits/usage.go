package credits

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/tollgate/tollgate/store"
)

// The usage history is written in bounded pieces. One piece is one
// transaction: a failure puts back at most that many rows, and a retry is
// never larger than the first try, however far behind the writer is.
const (
	// usageBatchRows is the most rows one write carries.
	usageBatchRows = 2000
	// usageRowBudget is what each row adds to a write's deadline, on top of
	// the store timeout: a full piece may take StoreTimeout + 2 s.
	usageRowBudget = time.Millisecond
)

// writeTimeout is the deadline of a write of rows rows.
func (m *Meter) writeTimeout(rows int) time.Duration {
	return m.cfg.StoreTimeout + time.Duration(rows)*usageRowBudget
}

// writeUsage writes the day's counts in pieces of usageBatchRows. Outside
// shutdown (all) it stops once the flush has run for a flush interval, so
// the books' other duties (heartbeats, leases) wait at most one more
// piece; what it did not write goes back into the books for the next
// flush, as does everything after a failed piece.
func (m *Meter) writeUsage(ctx context.Context, all bool, start time.Time) {
	m.mu.Lock()
	rows := make([]store.DailyUsage, 0, len(m.usage))
	for _, u := range m.usage {
		rows = append(rows, *u)
	}
	clear(m.usage)
	m.inflight.Store(int64(len(rows)))
	m.mu.Unlock()
	defer m.inflight.Store(0)
	slices.SortFunc(rows, func(a, b store.DailyUsage) int {
		return cmp.Or(cmp.Compare(a.TokenID, b.TokenID), cmp.Compare(a.Day, b.Day))
	})

	written := 0
	for written < len(rows) {
		if !all && written > 0 && time.Since(start) > m.cfg.FlushInterval {
			break
		}
		piece := rows[written:min(written+usageBatchRows, len(rows))]
		wctx, cancel := context.WithTimeout(ctx, m.writeTimeout(len(piece)))
		err := m.store.RecordUsage(wctx, piece)
		cancel()
		if err != nil {
			m.failures.Add(1)
			m.log.Warn("credits: writing usage failed; will retry", "rows", len(rows)-written, "err", err)
			break
		}
		written += len(piece)
		m.inflight.Add(-int64(len(piece)))
	}
	if written == len(rows) {
		return
	}
	m.mu.Lock()
	for _, u := range rows[written:] {
		m.merge(u)
	}
	m.mu.Unlock()
}

// Backlog returns the usage rows (one per token and day) counted and not
// yet written, those being written included. It is bounded by the tokens
// this replica has decided about since its last successful write; while
// the store is down those are at most the cached ones.
func (m *Meter) Backlog() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.usage) + int(m.inflight.Load())
}

// Flushes returns how many flushes have finished, with or without
// anything to write. Two finished after a burst of traffic mean everything
// it spent is written, which is what a load test waits for.
func (m *Meter) Flushes() uint64 { return m.flushes.Load() }

// FlushErrors returns how many writes of usage or spending have failed;
// what each held went back into the books for the next flush.
func (m *Meter) FlushErrors() uint64 { return m.failures.Load() }

// merge puts a row that could not be written back into the books.
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
