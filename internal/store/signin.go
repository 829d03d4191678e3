package store

import (
	"context"
	"crypto/sha256"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate/tollgate/internal/policy"
)

// keyHash is what is stored of a sign-in key: its SHA-256.
func keyHash(k policy.SignInKey) []byte {
	h := sha256.Sum256([]byte(k.Value))
	return h[:]
}

// SignInFailures returns how many failed sign-ins were recorded for key
// after since, and the time of the earliest of them (zero when none):
// the limit lifts a window after it.
func (db *DB) SignInFailures(ctx context.Context, key policy.SignInKey, since time.Time) (int, time.Time, error) {
	var n int
	where := ` FROM signin_failures WHERE scope = ? AND key = ? AND at > ?`
	args := []any{key.Scope, keyHash(key), since.UTC()}
	if err := db.db.GetContext(ctx, &n, db.db.Rebind(`SELECT count(*)`+where), args...); err != nil {
		return 0, time.Time{}, wrapErr("count sign-in failures", err)
	}
	if n == 0 {
		return 0, time.Time{}, nil
	}
	// A column, not min(): SQLite hands an aggregate back as text.
	var first time.Time
	if err := db.db.GetContext(ctx, &first, db.db.Rebind(`SELECT at`+where+` ORDER BY at LIMIT 1`), args...); err != nil {
		return 0, time.Time{}, wrapErr("first sign-in failure", err)
	}
	return n, first.UTC(), nil
}

// RecordSignInFailure counts a failed sign-in at at against each key, and
// drops failures recorded before prune, which no window reaches any more.
// Times keep microseconds, as both databases do (Postgres would round).
func (db *DB) RecordSignInFailure(ctx context.Context, at, prune time.Time, keys ...policy.SignInKey) error {
	return db.inTx(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, tx.Rebind(`DELETE FROM signin_failures WHERE at < ?`), prune.UTC()); err != nil {
			return wrapErr("prune sign-in failures", err)
		}
		for _, k := range keys {
			if _, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO signin_failures (scope, key, at) VALUES (?, ?, ?)`),
				k.Scope, keyHash(k), at.UTC().Truncate(time.Microsecond)); err != nil {
				return wrapErr("record sign-in failure", err)
			}
		}
		return nil
	})
}

// ClearSignInFailures forgets the failures counted against key, after a
// sign-in with the right password.
func (db *DB) ClearSignInFailures(ctx context.Context, key policy.SignInKey) error {
	_, err := db.db.ExecContext(ctx, db.db.Rebind(`DELETE FROM signin_failures WHERE scope = ? AND key = ?`), key.Scope, keyHash(key))
	return wrapErr("clear sign-in failures", err)
}
