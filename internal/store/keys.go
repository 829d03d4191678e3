package store

import (
	"context"

	"github.com/tollgate/tollgate/internal/policy"
)

// keysPage is how many key hashes EachTokenKey reads per query: a few
// hundred kilobytes at a time, rather than every key of a million-token
// store in one result.
const keysPage = 10_000

// CountTokenKeys returns how many token keys the store holds, expired or
// not: it sizes the membership filter.
func (db *DB) CountTokenKeys(ctx context.Context) (int, error) {
	var n int
	err := db.db.GetContext(ctx, &n, `SELECT COUNT(*) FROM token_keys`)
	return n, wrapErr("count token keys", err)
}

// EachTokenKey calls fn with the hash of every unexpired token key, in
// hash order, reading them a page at a time along the primary key. Each
// page is read in a snapshot of its own: a key created during the walk may
// be missed, so the caller must also hear of keys created since it began
// (policy.Cache.LoadFilter does, through the change notifications).
func (db *DB) EachTokenKey(ctx context.Context, fn func(policy.Hash)) error {
	const (
		first = `SELECT hash FROM token_keys WHERE (expires_at IS NULL OR expires_at > ?) ORDER BY hash LIMIT ?`
		next  = `SELECT hash FROM token_keys WHERE hash > ? AND (expires_at IS NULL OR expires_at > ?) ORDER BY hash LIMIT ?`
	)
	now := db.now()
	var after []byte
	for {
		var page [][]byte
		var err error
		if after == nil {
			err = db.db.SelectContext(ctx, &page, db.db.Rebind(first), now, keysPage)
		} else {
			err = db.db.SelectContext(ctx, &page, db.db.Rebind(next), after, now, keysPage)
		}
		if err != nil {
			return wrapErr("read token keys", err)
		}
		for _, b := range page {
			var h policy.Hash
			if len(b) != len(h) {
				continue // the schema forbids it; it could match no value

			}
			copy(h[:], b)
			fn(h)
		}
		if len(page) < keysPage {
			return nil
		}
		after = page[len(page)-1]
	}
}
