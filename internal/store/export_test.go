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

// MigrateTo brings the schema up (or down) to version, for tests of a
// migration over data written before it.
func (db *DB) MigrateTo(ctx context.Context, version int64) error {
	p, err := db.migrator()
	if err != nil {
		return err
	}
	cur, err := p.GetDBVersion(ctx)
	if err != nil {
		return err
	}
	if cur > version {
		_, err = p.DownTo(ctx, version)
	} else {
		_, err = p.UpTo(ctx, version)
	}
	return err
}

// KeptSighting is a row of token_sightings.
type KeptSighting struct {
	TokenID  string    `db:"token_id"`
	Kind     string    `db:"kind"`
	Value    string    `db:"value"`
	LastSeen time.Time `db:"last_seen"`
}

// Sightings returns every kept sighting, ordered.
func (db *DB) Sightings(ctx context.Context) ([]KeptSighting, error) {
	var out []KeptSighting
	err := db.db.SelectContext(ctx, &out, `SELECT token_id, kind, value, last_seen FROM token_sightings ORDER BY token_id, kind, value`)
	return out, err
}
