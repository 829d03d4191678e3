package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate/tollgate/internal/policy"
)

// minuteRows is the most rows one statement of RecordMinutes writes.
const minuteRows = 500

// RecordMinutes adds what a replica counted per token and minute to the
// fleet's sums, and keeps the network ranges and sites seen, at most
// maxSightings per token and kind (past that a token is too diverse for
// "never seen" to mean anything, and nothing more of it is kept).
func (db *DB) RecordMinutes(ctx context.Context, batch []policy.MinuteUsage, maxSightings int) error {
	if len(batch) == 0 {
		return nil
	}
	now := db.now()
	return db.inTx(ctx, func(tx *sqlx.Tx) error {
		for chunk := range slices.Chunk(batch, minuteRows) {
			var minutes, denials strings.Builder
			var minuteArgs, denialArgs []any
			for _, u := range chunk {
				if minutes.Len() > 0 {
					minutes.WriteString(", ")
				}
				minutes.WriteString("(?, ?, ?, ?, ?, ?)")
				minuteArgs = append(minuteArgs, u.TokenID, u.AccountID, u.Minute.UTC(), u.Requests, u.Denied, u.SecretBrowser)
				for _, code := range slices.Sorted(maps.Keys(u.Denials)) {
					if denials.Len() > 0 {
						denials.WriteString(", ")
					}
					denials.WriteString("(?, ?, ?, ?)")
					denialArgs = append(denialArgs, u.TokenID, u.Minute.UTC(), string(code), u.Denials[code])
				}
			}
			_, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO usage_minutes (token_id, account_id, minute, requests, denied, secret_browser)
				VALUES `+minutes.String()+` ON CONFLICT (token_id, minute) DO UPDATE SET
				requests = usage_minutes.requests + excluded.requests, denied = usage_minutes.denied + excluded.denied,
				secret_browser = usage_minutes.secret_browser + excluded.secret_browser`), minuteArgs...)
			if err != nil {
				return wrapErr("record minutes", err)
			}
			if len(denialArgs) > 0 {
				_, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO denial_minutes (token_id, minute, code, count) VALUES `+denials.String()+`
					ON CONFLICT (token_id, minute, code) DO UPDATE SET count = denial_minutes.count + excluded.count`), denialArgs...)
				if err != nil {
					return wrapErr("record denial minutes", err)
				}
			}
		}
		return recordSightings(ctx, tx, batch, maxSightings, now)
	})
}

// sighting is a network range or site seen for a token.
type sighting struct {
	TokenID string `db:"token_id"`
	Kind    string `db:"kind"`
	Value   string `db:"value"`
}

// recordSightings keeps the batch's network ranges and sites: a value
// already kept only moves last_seen, a new one is kept while its token
// has room for its kind, and once a token is full nothing of that kind
// moves. It reads what the batch's tokens keep and writes in one upsert
// per minuteRows values, not one statement per value: a replica warming
// up sees every token for the first time, and a round trip per value
// was most of what its usage cost to write. Replicas adding at once can
// pass the bound by what each adds in one flush.
func recordSightings(ctx context.Context, tx *sqlx.Tx, batch []policy.MinuteUsage, maxSightings int, now time.Time) error {
	type tokenKind struct{ token, kind string }
	kept := map[sighting]bool{}
	counts := map[tokenKind]int{}
	ids := map[string]bool{}
	for _, u := range batch {
		if len(u.Networks)+len(u.Sites) > 0 {
			ids[u.TokenID] = true
		}
	}
	for chunk := range slices.Chunk(slices.Sorted(maps.Keys(ids)), minuteRows) {
		q, args, err := sqlx.In(`SELECT token_id, kind, value FROM token_sightings WHERE token_id IN (?)`, chunk)
		if err != nil {
			return wrapErr("read sightings", err)
		}
		var have []sighting
		if err := tx.SelectContext(ctx, &have, tx.Rebind(q), args...); err != nil {
			return wrapErr("read sightings", err)
		}
		for _, s := range have {
			kept[s] = true
			counts[tokenKind{s.TokenID, s.Kind}]++
		}
	}
	var write []sighting
	writing := map[sighting]bool{}
	for _, u := range batch {
		for _, k := range [...]struct {
			kind   string
			values []string
		}{{"network", u.Networks}, {"site", u.Sites}} {
			for _, v := range k.values {
				tk, s := tokenKind{u.TokenID, k.kind}, sighting{u.TokenID, k.kind, v}
				if counts[tk] >= maxSightings || writing[s] {
					continue
				}
				writing[s] = true
				write = append(write, s)
				if !kept[s] {
					kept[s] = true
					counts[tk]++
				}
			}
		}
	}
	for chunk := range slices.Chunk(write, minuteRows) {
		var values strings.Builder
		args := make([]any, 0, 5*len(chunk))
		for i, s := range chunk {
			if i > 0 {
				values.WriteString(", ")
			}
			values.WriteString("(?, ?, ?, ?, ?)")
			args = append(args, s.TokenID, s.Kind, s.Value, now, now)
		}
		if _, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO token_sightings (token_id, kind, value, first_seen, last_seen)
			VALUES `+values.String()+` ON CONFLICT (token_id, kind, value) DO UPDATE SET last_seen = excluded.last_seen`), args...); err != nil {
			return wrapErr("record sightings", err)
		}
	}
	return nil
}

// UsageWindows sums, per token used in [from, to), the fleet's usage in
// that window and in the baseline [baselineFrom, from), and lists the
// network ranges and sites first seen in the window for tokens already
// seen before learnedBefore.
func (db *DB) UsageWindows(ctx context.Context, baselineFrom, from, to, learnedBefore time.Time) ([]policy.TokenWindow, error) {
	var rows []struct {
		TokenID       string    `db:"token_id"`
		AccountID     string    `db:"account_id"`
		Kind          string    `db:"kind"`
		CreatedAt     time.Time `db:"created_at"`
		Requests      int64     `db:"requests"`
		Denied        int64     `db:"denied"`
		SecretBrowser int64     `db:"secret_browser"`
		Baseline      int64     `db:"baseline"`
	}
	err := db.db.SelectContext(ctx, &rows, db.db.Rebind(`SELECT w.token_id, w.account_id, t.kind, t.created_at,
			w.requests, w.denied, w.secret_browser,
			COALESCE((SELECT SUM(b.requests) FROM usage_minutes b WHERE b.token_id = w.token_id AND b.minute >= ? AND b.minute < ?), 0) AS baseline
		FROM (SELECT token_id, account_id, SUM(requests) AS requests, SUM(denied) AS denied, SUM(secret_browser) AS secret_browser
			FROM usage_minutes WHERE minute >= ? AND minute < ? GROUP BY token_id, account_id) w
		JOIN tokens t ON t.id = w.token_id
		ORDER BY w.token_id`), baselineFrom.UTC(), from.UTC(), from.UTC(), to.UTC())
	if err != nil {
		return nil, wrapErr("usage windows", err)
	}
	out := make([]policy.TokenWindow, 0, len(rows))
	index := make(map[string]int, len(rows))
	for _, r := range rows {
		kind, err := policy.ParseKind(r.Kind)
		if err != nil {
			return nil, fmt.Errorf("token %s in the database: %w", r.TokenID, err)
		}
		index[r.TokenID] = len(out)
		out = append(out, policy.TokenWindow{TokenID: r.TokenID, AccountID: r.AccountID, Kind: kind, CreatedAt: r.CreatedAt.UTC(),
			Requests: r.Requests, Baseline: r.Baseline, Denied: r.Denied, SecretBrowser: r.SecretBrowser})
	}
	var denials []struct {
		TokenID string `db:"token_id"`
		Code    string `db:"code"`
		Count   int64  `db:"count"`
	}
	err = db.db.SelectContext(ctx, &denials, db.db.Rebind(`SELECT token_id, code, SUM(count) AS count FROM denial_minutes
		WHERE minute >= ? AND minute < ? GROUP BY token_id, code`), from.UTC(), to.UTC())
	if err != nil {
		return nil, wrapErr("denial windows", err)
	}
	for _, d := range denials {
		if i, ok := index[d.TokenID]; ok {
			w := &out[i]
			if w.Denials == nil {
				w.Denials = map[policy.DenyCode]int64{}
			}
			w.Denials[policy.DenyCode(d.Code)] = d.Count
		}
	}
	var sightings []struct {
		TokenID string `db:"token_id"`
		Kind    string `db:"kind"`
		Value   string `db:"value"`
	}
	err = db.db.SelectContext(ctx, &sightings, db.db.Rebind(`SELECT s.token_id, s.kind, s.value FROM token_sightings s
		WHERE s.first_seen >= ? AND s.first_seen < ?
		  AND EXISTS (SELECT 1 FROM token_sightings o WHERE o.token_id = s.token_id AND o.kind = s.kind AND o.first_seen < ?)
		ORDER BY s.token_id, s.kind, s.value`), from.UTC(), to.UTC(), learnedBefore.UTC())
	if err != nil {
		return nil, wrapErr("new sightings", err)
	}
	for _, s := range sightings {
		i, ok := index[s.TokenID]
		if !ok {
			continue
		}
		if s.Kind == "network" {
			out[i].NewNetworks = append(out[i].NewNetworks, s.Value)
		} else {
			out[i].NewSites = append(out[i].NewSites, s.Value)
		}
	}
	return out, nil
}

// OpenFlag opens a flag, or refreshes the open one of its token and kind
// (its evidence and seen time). A flag of the kind resolved after
// quietSince is not opened again: the person who resolved it has seen
// what the window still holds. It reports whether a flag was newly
// opened; f's ID and times are set when it was opened or refreshed.
func (db *DB) OpenFlag(ctx context.Context, f *policy.Flag, quietSince time.Time) (bool, error) {
	now := db.now()
	var quiet int
	err := db.db.GetContext(ctx, &quiet, db.db.Rebind(`SELECT COUNT(*) FROM token_flags
		WHERE token_id = ? AND kind = ? AND resolved_at IS NOT NULL AND resolved_at > ?`), f.TokenID, string(f.Kind), quietSince.UTC())
	if err != nil {
		return false, wrapErr("open flag", err)
	}
	if quiet > 0 {
		return false, nil
	}
	evidence := string(f.Evidence)
	if evidence == "" {
		evidence = "{}"
	}
	// Insert, else refresh: two runs racing (on SQLite, which has no
	// detector lock) open the flag once, and only the opener reports it.
	var ids []int64
	err = db.db.SelectContext(ctx, &ids, db.db.Rebind(`INSERT INTO token_flags (token_id, account_id, kind, evidence, opened_at, seen_at)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (token_id, kind) WHERE resolved_at IS NULL DO NOTHING RETURNING id`),
		f.TokenID, f.AccountID, string(f.Kind), evidence, now, now)
	if err != nil {
		return false, wrapErr("open flag", err)
	}
	if len(ids) == 1 {
		f.ID, f.OpenedAt, f.SeenAt = ids[0], now, now
		return true, nil
	}
	var r struct {
		ID       int64     `db:"id"`
		OpenedAt time.Time `db:"opened_at"`
	}
	err = db.db.GetContext(ctx, &r, db.db.Rebind(`UPDATE token_flags SET evidence = ?, seen_at = ?
		WHERE token_id = ? AND kind = ? AND resolved_at IS NULL RETURNING id, opened_at`), evidence, now, f.TokenID, string(f.Kind))
	if err != nil {
		return false, wrapErr("refresh flag", err)
	}
	f.ID, f.OpenedAt, f.SeenAt = r.ID, r.OpenedAt.UTC(), now
	return false, nil
}

// flagRow is a flag as token_flags holds it.
type flagRow struct {
	ID         int64          `db:"id"`
	TokenID    string         `db:"token_id"`
	AccountID  string         `db:"account_id"`
	Kind       string         `db:"kind"`
	Evidence   string         `db:"evidence"`
	OpenedAt   time.Time      `db:"opened_at"`
	SeenAt     time.Time      `db:"seen_at"`
	ResolvedAt *time.Time     `db:"resolved_at"`
	ResolvedBy sql.NullString `db:"resolved_by"`
}

func (r flagRow) flag() policy.Flag {
	return policy.Flag{ID: r.ID, TokenID: r.TokenID, AccountID: r.AccountID, Kind: policy.FlagKind(r.Kind),
		Evidence: []byte(r.Evidence), OpenedAt: r.OpenedAt.UTC(), SeenAt: r.SeenAt.UTC(), ResolvedAt: utcPtr(r.ResolvedAt),
		ResolvedBy: r.ResolvedBy.String}
}

const flagColumns = `f.id, f.token_id, f.account_id, f.kind, f.evidence, f.opened_at, f.seen_at, f.resolved_at, f.resolved_by`

// Flags returns up to limit flags of an account's tokens, newest first:
// of one token (tokenID), of the tokens a user made (userID), or ("" for
// both) of every token; only open ones when open is set.
func (db *DB) Flags(ctx context.Context, accountID, tokenID, userID string, open bool, limit int) ([]policy.Flag, error) {
	q := `SELECT ` + flagColumns + ` FROM token_flags f JOIN tokens t ON t.id = f.token_id WHERE f.account_id = ?`
	args := []any{accountID}
	if tokenID != "" {
		q += ` AND f.token_id = ?`
		args = append(args, tokenID)
	}
	if userID != "" {
		q += ` AND t.user_id = ?`
		args = append(args, userID)
	}
	if open {
		q += ` AND f.resolved_at IS NULL`
	}
	q += fmt.Sprintf(` ORDER BY f.id DESC LIMIT %d`, max(1, min(limit, 1000)))
	var rows []flagRow
	if err := db.db.SelectContext(ctx, &rows, db.db.Rebind(q), args...); err != nil {
		return nil, wrapErr("list flags", err)
	}
	out := make([]policy.Flag, len(rows))
	for i, r := range rows {
		out[i] = r.flag()
	}
	return out, nil
}

// Flag returns one flag.
func (db *DB) Flag(ctx context.Context, id int64) (*policy.Flag, error) {
	var r flagRow
	if err := db.db.GetContext(ctx, &r, db.db.Rebind(`SELECT `+flagColumns+` FROM token_flags f WHERE f.id = ?`), id); err != nil {
		return nil, wrapErr(fmt.Sprintf("flag %d", id), err)
	}
	f := r.flag()
	return &f, nil
}

// ResolveFlag closes an open flag; it returns a policy.EConflict error for
// a flag already resolved.
func (db *DB) ResolveFlag(ctx context.Context, id int64, by string) (*policy.Flag, error) {
	res, err := db.db.ExecContext(ctx, db.db.Rebind(`UPDATE token_flags SET resolved_at = ?, resolved_by = ? WHERE id = ? AND resolved_at IS NULL`),
		db.now(), by, id)
	if err != nil {
		return nil, wrapErr("resolve flag", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		if _, err := db.Flag(ctx, id); err != nil {
			return nil, err
		}
		return nil, policy.Errorf(policy.EConflict, "flag %d is already resolved", id)
	}
	return db.Flag(ctx, id)
}

// OpenFlagCounts counts the open flags of the whole fleet by kind.
func (db *DB) OpenFlagCounts(ctx context.Context) (map[policy.FlagKind]int64, error) {
	var rows []struct {
		Kind  string `db:"kind"`
		Count int64  `db:"count"`
	}
	if err := db.db.SelectContext(ctx, &rows, `SELECT kind, COUNT(*) AS count FROM token_flags WHERE resolved_at IS NULL GROUP BY kind`); err != nil {
		return nil, wrapErr("count open flags", err)
	}
	out := make(map[policy.FlagKind]int64, len(rows))
	for _, r := range rows {
		out[policy.FlagKind(r.Kind)] = r.Count
	}
	return out, nil
}

// PruneMinutes drops the minutes before before, and sightings last seen
// before sightingsBefore.
func (db *DB) PruneMinutes(ctx context.Context, before, sightingsBefore time.Time) error {
	for _, q := range []struct {
		sql string
		at  time.Time
	}{
		{`DELETE FROM usage_minutes WHERE minute < ?`, before},
		{`DELETE FROM denial_minutes WHERE minute < ?`, before},
		{`DELETE FROM token_sightings WHERE last_seen < ?`, sightingsBefore},
	} {
		if _, err := db.db.ExecContext(ctx, db.db.Rebind(q.sql), q.at.UTC()); err != nil {
			return wrapErr("prune minutes", err)
		}
	}
	return nil
}

// anomalyLock is the advisory lock key of the anomaly detector: "tgflag".
const anomalyLock = 0x7467666c6167

// errLockBusy stops a transaction whose lock another replica holds.
var errLockBusy = errors.New("lock busy")

// WithDetectorLock runs fn while this replica holds the fleet's anomaly
// detector lock (a Postgres advisory lock held by a transaction), so that
// one replica at a time reads the sums and opens flags. It reports whether
// fn ran; when another replica holds the lock, it returns at once. SQLite
// serves one process, which always holds it.
func (db *DB) WithDetectorLock(ctx context.Context, fn func(ctx context.Context) error) (bool, error) {
	if db.dialect != Postgres {
		return true, fn(ctx)
	}
	ran := false
	err := db.inTx(ctx, func(tx *sqlx.Tx) error {
		var got bool
		if err := tx.GetContext(ctx, &got, `SELECT pg_try_advisory_xact_lock($1)`, anomalyLock); err != nil {
			return wrapErr("detector lock", err)
		}
		if !got {
			return errLockBusy
		}
		ran = true
		return fn(ctx)
	})
	if errors.Is(err, errLockBusy) {
		return false, nil
	}
	return ran, err
}
