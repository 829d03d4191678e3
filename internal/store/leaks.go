package store

import (
	"context"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
)

// RecordLeak keeps a reported leak of a token's value; the leak's ID and
// time are set.
func (db *DB) RecordLeak(ctx context.Context, l *policy.Leak) error {
	l.At = db.now()
	q := `INSERT INTO token_leaks (token_id, account_id, reporter, token_type, url, source, action, reported_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`
	err := db.db.QueryRowxContext(ctx, db.db.Rebind(q), l.TokenID, l.AccountID, l.Reporter, l.TokenType, l.URL, l.Source,
		string(l.Action), l.At).Scan(&l.ID)
	return wrapErr("record leak", err)
}

// Leaks returns up to limit reported leaks of an account's tokens, newest
// first: of one token (tokenID), of the tokens a user made (userID), or
// ("" for both) of every token of the account.
func (db *DB) Leaks(ctx context.Context, accountID, tokenID, userID string, limit int) ([]policy.Leak, error) {
	q := `SELECT l.id, l.token_id, l.account_id, l.reporter, l.token_type, l.url, l.source, l.action, l.reported_at
		FROM token_leaks l JOIN tokens t ON t.id = l.token_id WHERE l.account_id = ?`
	args := []any{accountID}
	if tokenID != "" {
		q += ` AND l.token_id = ?`
		args = append(args, tokenID)
	}
	if userID != "" {
		q += ` AND t.user_id = ?`
		args = append(args, userID)
	}
	q += fmt.Sprintf(` ORDER BY l.id DESC LIMIT %d`, max(1, min(limit, 1000)))
	var rows []struct {
		ID        int64     `db:"id"`
		TokenID   string    `db:"token_id"`
		AccountID string    `db:"account_id"`
		Reporter  string    `db:"reporter"`
		TokenType string    `db:"token_type"`
		URL       string    `db:"url"`
		Source    string    `db:"source"`
		Action    string    `db:"action"`
		At        time.Time `db:"reported_at"`
	}
	if err := db.db.SelectContext(ctx, &rows, db.db.Rebind(q), args...); err != nil {
		return nil, wrapErr("list leaks", err)
	}
	out := make([]policy.Leak, len(rows))
	for i, r := range rows {
		out[i] = policy.Leak{ID: r.ID, TokenID: r.TokenID, AccountID: r.AccountID, Reporter: r.Reporter, TokenType: r.TokenType,
			URL: r.URL, Source: r.Source, Action: policy.LeakAction(r.Action), At: r.At.UTC()}
	}
	return out, nil
}
