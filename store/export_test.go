package store

import (
	"context"
	"time"
)

// Internals the external tests reach.

func (db *DB) PruneChanges(ctx context.Context, retention time.Duration) error {
	return db.pruneChanges(ctx, retention)
}

func (db *DB) ChangesSince(ctx context.Context, seq int64) ([]Change, bool, error) {
	return db.changesSince(ctx, seq, 0)
}

// Exec runs a statement written with ? placeholders.
func (db *DB) Exec(ctx context.Context, q string, args ...any) error {
	_, err := db.db.ExecContext(ctx, db.db.Rebind(q), args...)
	return err
}
