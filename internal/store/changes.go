package store

import (
	"context"
	"strconv"
	"strings"

	"github.com/tollgate/tollgate/internal/policy"
)

// NotifyChannel is the Postgres channel on which every policy change is
// announced; see ParseNotification for the payload.
const NotifyChannel = "tollgate_changes"

// Change says which cached policy a write made stale: one token key (by
// hash), or every token of an account.
type Change struct {
	Seq       int64 // position in the policy_changes log; 0 for a notification
	Hash      policy.Hash
	AccountID string // set for an account change; Hash is then zero
}

// ParseChange parses a change as the database writes it: "h:<hex sha256>"
// or "a:<account id>". The text comes from the database, or from anyone
// who can NOTIFY on the channel, so it is checked, not trusted.
func ParseChange(s string) (Change, error) {
	kind, rest, ok := strings.Cut(s, ":")
	switch {
	case ok && kind == "h":
		h, err := policy.ParseHash(rest)
		if err != nil {
			return Change{}, policy.Errorf(policy.EInvalid, "change %.80q: %v", s, err)
		}
		return Change{Hash: h}, nil
	case ok && kind == "a" && rest != "" && len(rest) <= 64:
		return Change{AccountID: rest}, nil
	}
	return Change{}, policy.Errorf(policy.EInvalid, "change %.80q: want h:<hash> or a:<account id>", s)
}

// ParseNotification parses a notification's payload: the change's sequence
// number in the log, a space, and the change ("42 h:<hash>").
func ParseNotification(s string) (Change, error) {
	seq, rest, ok := strings.Cut(s, " ")
	n, err := strconv.ParseInt(seq, 10, 64)
	if !ok || err != nil || n < 1 {
		return Change{}, policy.Errorf(policy.EInvalid, "notification %.80q: want <seq> <change>", s)
	}
	c, err := ParseChange(rest)
	c.Seq = n
	return c, err
}

// changeRow is one row of the change log as read.
type changeRow struct {
	Seq    int64  `db:"seq"`
	Change string `db:"change"`
}

// changesOf parses rows of the change log. Malformed rows (written by
// hand) are skipped, not fatal.
func changesOf(rows []changeRow) []Change {
	out := make([]Change, 0, len(rows))
	for _, r := range rows {
		c, err := ParseChange(r.Change)
		if err != nil {
			continue
		}
		c.Seq = r.Seq
		out = append(out, c)
	}
	return out
}

// Changes returns up to limit changes logged after seq, oldest first.
// Malformed rows (written by hand) are skipped, not fatal.
func (db *DB) Changes(ctx context.Context, after int64, limit int) ([]Change, error) {
	var rows []changeRow
	err := db.db.SelectContext(ctx, &rows, db.db.Rebind(`SELECT seq, change FROM policy_changes WHERE seq > ? ORDER BY seq LIMIT ?`), after, limit)
	if err != nil {
		return nil, wrapErr("read changes", err)
	}
	return changesOf(rows), nil
}

// LastChange returns the sequence number of the newest logged change, or 0.
func (db *DB) LastChange(ctx context.Context) (int64, error) {
	var seq int64
	err := db.db.GetContext(ctx, &seq, `SELECT COALESCE(MAX(seq), 0) FROM policy_changes`)
	return seq, wrapErr("read last change", err)
}
