package store

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate/tollgate/internal/policy"
)

// Reserve adds credits to subject's usage in the period starting at
// period, in one transaction: grant is told what is reserved now and
// returns how many credits to add (0 for none). It returns what was
// granted and the new total. The row is made on first use.
func (db *DB) Reserve(ctx context.Context, subject string, period time.Time, grant func(reserved int64) int64) (granted, total int64, err error) {
	period = period.UTC()
	// A credit-limited token's first request on a replica waits for this
	// transaction: its statements are prepared, so each is one round trip.
	var stmts [3]*sqlx.Stmt
	for i, q := range []string{
		`INSERT INTO credit_usage (subject, period_start, reserved, updated_at) VALUES (?, ?, 0, ?) ON CONFLICT DO NOTHING`,
		`SELECT reserved FROM credit_usage WHERE subject = ? AND period_start = ?` + db.forUpdate(),
		`UPDATE credit_usage SET reserved = ?, updated_at = ? WHERE subject = ? AND period_start = ?`,
	} {
		if stmts[i], err = db.prepared(ctx, q); err != nil {
			return 0, 0, wrapErr("prepare reserve credits", err)
		}
	}
	err = db.inTx(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.StmtxContext(ctx, stmts[0]).ExecContext(ctx, subject, period, db.now()); err != nil {
			return wrapErr("reserve credits", err)
		}
		var reserved int64
		if err := tx.StmtxContext(ctx, stmts[1]).GetContext(ctx, &reserved, subject, period); err != nil {
			return wrapErr("reserve credits", err)
		}
		granted = grant(reserved)
		total = reserved + granted
		if granted == 0 {
			return nil
		}
		_, err := tx.StmtxContext(ctx, stmts[2]).ExecContext(ctx, total, db.now(), subject, period)
		return wrapErr("reserve credits", err)
	})
	if err != nil {
		return 0, 0, err
	}
	return granted, total, nil
}

// AddCredits adds n (which may be negative, to return unspent credits) to
// subject's usage in the period and returns the new total. It never takes
// the total below zero.
func (db *DB) AddCredits(ctx context.Context, subject string, period time.Time, n int64) (int64, error) {
	_, total, err := db.Reserve(ctx, subject, period, func(reserved int64) int64 { return max(n, -reserved) })
	return total, err
}

// batchRows bounds the rows of one multi-row statement (SQLite allows
// 32,766 parameters; a row here takes up to five).
const batchRows = 500

// AddCreditsBatch adds each subject's credits to its usage in the period
// starting at period, in a few statements however many subjects there are,
// and returns the new totals. Subjects are written in sorted order, so
// replicas flushing at once do not deadlock. Deltas below 1 are skipped.
func (db *DB) AddCreditsBatch(ctx context.Context, period time.Time, deltas map[string]int64) (map[string]int64, error) {
	subjects := make([]string, 0, len(deltas))
	for s, n := range deltas {
		if n > 0 {
			subjects = append(subjects, s)
		}
	}
	slices.Sort(subjects)
	totals := make(map[string]int64, len(subjects))
	now := db.now()
	period = period.UTC()
	for chunk := range slices.Chunk(subjects, batchRows) {
		var q strings.Builder
		q.WriteString(`INSERT INTO credit_usage (subject, period_start, reserved, updated_at) VALUES `)
		args := make([]any, 0, 4*len(chunk))
		for i, s := range chunk {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?, ?, ?)")
			args = append(args, s, period, deltas[s], now)
		}
		q.WriteString(` ON CONFLICT (subject, period_start) DO UPDATE
			SET reserved = credit_usage.reserved + excluded.reserved, updated_at = excluded.updated_at
			RETURNING subject, reserved`)
		var rows []struct {
			Subject  string `db:"subject"`
			Reserved int64  `db:"reserved"`
		}
		if err := db.db.SelectContext(ctx, &rows, db.db.Rebind(q.String()), args...); err != nil {
			return totals, wrapErr("add credits", err)
		}
		for _, r := range rows {
			totals[r.Subject] = r.Reserved
		}
	}
	return totals, nil
}

// RecordUsage adds a batch of daily usage in one transaction, and moves
// the tokens' last-used times forward.
func (db *DB) RecordUsage(ctx context.Context, batch []policy.DailyUsage) error {
	if len(batch) == 0 {
		return nil
	}
	// Every writer takes its row locks in the same order, so replicas
	// flushing at the same moment wait for each other instead of deadlocking.
	batch = slices.Clone(batch)
	slices.SortFunc(batch, func(a, b policy.DailyUsage) int {
		if c := strings.Compare(a.TokenID, b.TokenID); c != 0 {
			return c
		}
		return strings.Compare(a.Day, b.Day)
	})
	return db.inTx(ctx, func(tx *sqlx.Tx) error {
		if db.dialect == Postgres {
			// This transaction moves only last_used_at on tokens: the
			// tokens trigger need not compare the rows (migration 00006).
			if _, err := tx.ExecContext(ctx, `SET LOCAL tollgate.usage_writer = 'on'`); err != nil {
				return wrapErr("record usage", err)
			}
		}
		for chunk := range slices.Chunk(batch, batchRows) {
			if err := recordChunk(ctx, tx, chunk); err != nil {
				return err
			}
		}
		return nil
	})
}

// recordChunk writes up to batchRows rows of usage in three statements.
func recordChunk(ctx context.Context, tx *sqlx.Tx, chunk []policy.DailyUsage) error {
	var daily, denials strings.Builder
	var dailyArgs, denialArgs []any
	var used []string
	var lastUsed time.Time
	for _, u := range chunk {
		if u.Requests != 0 || u.Credits != 0 {
			if len(dailyArgs) > 0 {
				daily.WriteString(", ")
			}
			daily.WriteString("(?, ?, ?, ?, ?)")
			dailyArgs = append(dailyArgs, u.TokenID, u.AccountID, u.Day, u.Requests, u.Credits)
		}
		for _, code := range slices.Sorted(maps.Keys(u.Denials)) {
			if len(denialArgs) > 0 {
				denials.WriteString(", ")
			}
			denials.WriteString("(?, ?, ?, ?)")
			denialArgs = append(denialArgs, u.TokenID, u.Day, code, u.Denials[code])
		}
		if u.Requests > 0 && !u.LastUsed.IsZero() {
			used = append(used, u.TokenID)
			if u.LastUsed.After(lastUsed) {
				lastUsed = u.LastUsed
			}
		}
	}
	if len(dailyArgs) > 0 {
		_, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO usage_daily (token_id, account_id, day, requests, credits) VALUES `+daily.String()+`
			ON CONFLICT (token_id, day) DO UPDATE SET requests = usage_daily.requests + excluded.requests,
				credits = usage_daily.credits + excluded.credits`), dailyArgs...)
		if err != nil {
			return wrapErr("record usage", err)
		}
	}
	if len(denialArgs) > 0 {
		_, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO usage_denials (token_id, day, code, count) VALUES `+denials.String()+`
			ON CONFLICT (token_id, day, code) DO UPDATE SET count = usage_denials.count + excluded.count`), denialArgs...)
		if err != nil {
			return wrapErr("record usage", err)
		}
	}
	if len(used) > 0 {
		// One time for the batch: last-used is to the flush, not the request.
		q, args, err := sqlx.In(`UPDATE tokens SET last_used_at = ? WHERE id IN (?) AND (last_used_at IS NULL OR last_used_at < ?)`,
			lastUsed.UTC(), used, lastUsed.UTC())
		if err != nil {
			return fmt.Errorf("record usage: %w", err)
		}
		if _, err := tx.ExecContext(ctx, tx.Rebind(q), args...); err != nil {
			return wrapErr("record usage", err)
		}
	}
	return nil
}

// Usage returns a token's daily usage from day from to day to (inclusive,
// YYYY-MM-DD), oldest first.
func (db *DB) Usage(ctx context.Context, tokenID, from, to string) ([]policy.DailyUsage, error) {
	var rows []struct {
		AccountID string `db:"account_id"`
		Day       string `db:"day"`
		Requests  int64  `db:"requests"`
		Credits   int64  `db:"credits"`
	}
	err := db.db.SelectContext(ctx, &rows, db.db.Rebind(`SELECT account_id, CAST(day AS TEXT) AS day, requests, credits
		FROM usage_daily WHERE token_id = ? AND CAST(day AS TEXT) BETWEEN ? AND ? ORDER BY day`), tokenID, from, to)
	if err != nil {
		return nil, wrapErr("read usage", err)
	}
	var denials []struct {
		Day   string `db:"day"`
		Code  string `db:"code"`
		Count int64  `db:"count"`
	}
	err = db.db.SelectContext(ctx, &denials, db.db.Rebind(`SELECT CAST(day AS TEXT) AS day, code, count
		FROM usage_denials WHERE token_id = ? AND CAST(day AS TEXT) BETWEEN ? AND ?`), tokenID, from, to)
	if err != nil {
		return nil, wrapErr("read usage", err)
	}
	byDay := map[string]*policy.DailyUsage{}
	day := func(d string) *policy.DailyUsage {
		u, ok := byDay[d]
		if !ok {
			u = &policy.DailyUsage{TokenID: tokenID, Day: d, Denials: map[string]int64{}}
			byDay[d] = u
		}
		return u
	}
	for _, r := range rows {
		u := day(r.Day)
		u.AccountID, u.Requests, u.Credits = r.AccountID, r.Requests, r.Credits
	}
	for _, d := range denials {
		day(d.Day).Denials[d.Code] += d.Count
	}
	out := make([]policy.DailyUsage, 0, len(byDay))
	for _, u := range byDay {
		out = append(out, *u)
	}
	slices.SortFunc(out, func(a, b policy.DailyUsage) int { return strings.Compare(a.Day, b.Day) })
	return out, nil
}

// Heartbeat records that replica id is alive and returns how many
// replicas were seen within ttl, itself included.
func (db *DB) Heartbeat(ctx context.Context, id string, ttl time.Duration) (int, error) {
	now := db.now()
	if _, err := db.db.ExecContext(ctx, db.db.Rebind(`INSERT INTO replicas (id, seen_at) VALUES (?, ?)
		ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at`), id, now); err != nil {
		return 0, wrapErr("heartbeat", err)
	}
	if _, err := db.db.ExecContext(ctx, db.db.Rebind(`DELETE FROM replicas WHERE seen_at < ?`), now.Add(-10*ttl)); err != nil {
		return 0, wrapErr("heartbeat", err)
	}
	var n int
	err := db.db.GetContext(ctx, &n, db.db.Rebind(`SELECT COUNT(*) FROM replicas WHERE seen_at >= ?`), now.Add(-ttl))
	if err != nil {
		return 0, wrapErr("heartbeat", err)
	}
	return max(n, 1), nil
}

// RemoveReplica forgets a replica that is shutting down, and its demand.
func (db *DB) RemoveReplica(ctx context.Context, id string) error {
	return db.inTx(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, tx.Rebind(`DELETE FROM rate_demand WHERE replica_id = ?`), id); err != nil {
			return wrapErr(fmt.Sprintf("remove replica %s", id), err)
		}
		_, err := tx.ExecContext(ctx, tx.Rebind(`DELETE FROM replicas WHERE id = ?`), id)
		return wrapErr(fmt.Sprintf("remove replica %s", id), err)
	})
}

// ReportDemand replaces replica id's demand (requests a second, by
// subject) and returns, for each of those subjects, the demand of every
// replica seen within ttl added up, its own included. Demand of replicas
// gone for good is dropped.
func (db *DB) ReportDemand(ctx context.Context, id string, ttl time.Duration, demand map[string]float64) (map[string]float64, error) {
	subjects := slices.Sorted(maps.Keys(demand))
	totals := make(map[string]float64, len(subjects))
	err := db.inTx(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, tx.Rebind(`DELETE FROM rate_demand WHERE replica_id = ? OR replica_id NOT IN (SELECT id FROM replicas)`), id); err != nil {
			return wrapErr("report demand", err)
		}
		for chunk := range slices.Chunk(subjects, batchRows) {
			var q strings.Builder
			q.WriteString(`INSERT INTO rate_demand (replica_id, subject, demand) VALUES `)
			args := make([]any, 0, 3*len(chunk))
			for i, s := range chunk {
				if i > 0 {
					q.WriteString(", ")
				}
				q.WriteString("(?, ?, ?)")
				args = append(args, id, s, demand[s])
			}
			if _, err := tx.ExecContext(ctx, tx.Rebind(q.String()), args...); err != nil {
				return wrapErr("report demand", err)
			}
			in, inArgs, err := sqlx.In(`SELECT d.subject, SUM(d.demand) AS demand FROM rate_demand d JOIN replicas r ON r.id = d.replica_id
				WHERE r.seen_at >= ? AND d.subject IN (?) GROUP BY d.subject`, db.now().Add(-ttl), chunk)
			if err != nil {
				return fmt.Errorf("report demand: %w", err)
			}
			var rows []struct {
				Subject string  `db:"subject"`
				Demand  float64 `db:"demand"`
			}
			if err := tx.SelectContext(ctx, &rows, tx.Rebind(in), inArgs...); err != nil {
				return wrapErr("report demand", err)
			}
			for _, r := range rows {
				totals[r.Subject] = r.Demand
			}
		}
		return nil
	})
	return totals, err
}

// CreditsUsed returns what each subject (token or account id) has reserved
// in the period starting at period: spent, or leased to a replica.
func (db *DB) CreditsUsed(ctx context.Context, subjects []string, period time.Time) (map[string]int64, error) {
	out := make(map[string]int64, len(subjects))
	if len(subjects) == 0 {
		return out, nil
	}
	q, args, err := sqlx.In(`SELECT subject, reserved FROM credit_usage WHERE period_start = ? AND subject IN (?)`, period.UTC(), subjects)
	if err != nil {
		return nil, fmt.Errorf("credits used: %w", err)
	}
	var rows []struct {
		Subject  string `db:"subject"`
		Reserved int64  `db:"reserved"`
	}
	if err := db.db.SelectContext(ctx, &rows, db.db.Rebind(q), args...); err != nil {
		return nil, wrapErr("credits used", err)
	}
	for _, r := range rows {
		out[r.Subject] = r.Reserved
	}
	return out, nil
}
