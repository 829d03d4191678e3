package credits

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
)

// Usage and the spending of subjects without a limit are written in
// bounded pieces, one transaction or statement batch each: a failure
// leaves at most one piece to retry, and a retry is never larger than the
// first try, however far behind the writer is.
const (
	// usageBatchRows is the most rows one write carries.
	usageBatchRows = 2000
	// usageRowBudget is what each row adds to a write's deadline, on top of
	// the store timeout: a full piece may take StoreTimeout + 2 s.
	usageRowBudget = time.Millisecond
)

// writeQueue holds what flushes took out of the books, sorted in the
// order it is written (so that replicas writing at once take row locks in
// the same order), and not yet written. A flush writes from its head and
// refills it only once it is empty: with a large backlog each flush costs
// the pieces it writes, not the size of the backlog.
type writeQueue struct {
	usage []policy.DailyUsage
	spend []spending
}

// spending is credits a subject without a limit spent, queued for writing.
type spending struct {
	key subjectKey
	n   int64
}

func (m *Meter) writeTimeout(rows int) time.Duration {
	return m.cfg.StoreTimeout + time.Duration(rows)*usageRowBudget
}

// budgetLeft reports whether a flush that began at start may write another
// piece: at shutdown (all) always, otherwise for one flush interval, so
// the books' other duties (heartbeats, leases) wait at most one more piece.
func (m *Meter) budgetLeft(all bool, start time.Time) bool {
	return all || time.Since(start) <= m.cfg.FlushInterval
}

// countQueued publishes the queue's length for Backlog.
func (m *Meter) countQueued() {
	m.queued.Store(int64(len(m.queue.usage) + len(m.queue.spend)))
}

// writeSpending writes queued spending, a piece (of one period) at a time,
// and gives each subject its new total. What a failed piece did not write
// stays at the head of the queue.
func (m *Meter) writeSpending(ctx context.Context, all bool, start time.Time) {
	defer m.countQueued()
	for first := true; len(m.queue.spend) > 0 && (first || m.budgetLeft(all, start)); first = false {
		period := m.queue.spend[0].key.period
		end := min(usageBatchRows, len(m.queue.spend))
		if i := slices.IndexFunc(m.queue.spend[:end], func(s spending) bool { return s.key.period != period }); i > 0 {
			end = i
		}
		piece := m.queue.spend[:end]
		deltas := make(map[string]int64, len(piece))
		for _, s := range piece {
			deltas[s.key.id] = s.n
		}
		wctx, cancel := context.WithTimeout(ctx, m.writeTimeout(len(piece)))
		totals, err := m.store.AddCreditsBatch(wctx, time.Unix(period, 0), deltas)
		cancel()
		// A piece can fail part way: the subjects with a total are written.
		var left []spending
		for _, sp := range piece {
			total, ok := totals[sp.key.id]
			if !ok {
				left = append(left, sp)
				continue
			}
			m.mu.Lock()
			s := m.subjects[sp.key]
			m.mu.Unlock()
			if s == nil {
				continue // cannot happen: books with queued spending are kept
			}
			s.mu.Lock()
			s.queued -= sp.n
			s.total, s.known = total, true
			s.mu.Unlock()
		}
		m.queue.spend = append(left, m.queue.spend[end:]...)
		if err != nil {
			m.failures.Add(1)
			m.log.Warn("credits: writing spending failed; will retry", "subjects", len(m.queue.spend), "err", err)
			return
		}
	}
}

// writeUsage writes the day's counts: the queue, else what was counted
// since the last queue was taken.
func (m *Meter) writeUsage(ctx context.Context, all bool, start time.Time) {
	defer m.countQueued()
	if len(m.queue.usage) == 0 {
		m.mu.Lock()
		rows := make([]policy.DailyUsage, 0, len(m.usage))
		for _, u := range m.usage {
			rows = append(rows, *u)
		}
		clear(m.usage)
		m.queue.usage = rows
		m.countQueued()
		m.mu.Unlock()
		slices.SortFunc(rows, func(a, b policy.DailyUsage) int {
			return cmp.Or(cmp.Compare(a.TokenID, b.TokenID), cmp.Compare(a.Day, b.Day))
		})
	}
	for first := true; len(m.queue.usage) > 0 && (first || m.budgetLeft(all, start)); first = false {
		piece := m.queue.usage[:min(usageBatchRows, len(m.queue.usage))]
		wctx, cancel := context.WithTimeout(ctx, m.writeTimeout(len(piece)))
		err := m.store.RecordUsage(wctx, piece)
		cancel()
		if err != nil {
			m.failures.Add(1)
			m.log.Warn("credits: writing usage failed; will retry", "rows", len(m.queue.usage), "err", err)
			return
		}
		m.queue.usage = m.queue.usage[len(piece):]
	}
	if len(m.queue.usage) == 0 {
		m.queue.usage = nil // let the written rows go
	}
}

// Backlog returns the rows counted and not yet written: usage rows (one
// per token and day) and queued spending. It is bounded by the tokens this
// replica has decided about since its last successful write; while the
// store is down those are at most the cached ones.
func (m *Meter) Backlog() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.usage) + int(m.queued.Load())
}

// Flushes returns how many flushes have finished, with or without
// anything to write. Two finished after a burst of traffic mean everything
// it spent is written, which is what a load test waits for.
func (m *Meter) Flushes() uint64 { return m.flushes.Load() }

// FlushErrors returns how many writes of usage or spending have failed;
// what each held stays queued for the next flush.
func (m *Meter) FlushErrors() uint64 { return m.failures.Load() }
