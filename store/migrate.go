package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/pressly/goose/v3"
)

//go:embed migrations
var migrations embed.FS

// Migrate brings the schema up to the newest version this binary knows and
// returns the versions it applied. Running it again applies nothing.
func (db *DB) Migrate(ctx context.Context) ([]int64, error) {
	p, err := db.migrator()
	if err != nil {
		return nil, err
	}
	results, err := p.Up(ctx)
	if err != nil {
		return nil, wrapErr("migrate", err)
	}
	applied := make([]int64, 0, len(results))
	for _, r := range results {
		applied = append(applied, r.Source.Version)
	}
	return applied, nil
}

// SchemaVersion returns the schema's current version and the newest one
// this binary knows, so a server can refuse to run on an old schema.
func (db *DB) SchemaVersion(ctx context.Context) (current, latest int64, err error) {
	p, err := db.migrator()
	if err != nil {
		return 0, 0, err
	}
	current, err = p.GetDBVersion(ctx)
	if err != nil {
		return 0, 0, wrapErr("read schema version", err)
	}
	srcs := p.ListSources()
	if len(srcs) > 0 {
		latest = srcs[len(srcs)-1].Version
	}
	return current, latest, nil
}

func (db *DB) migrator() (*goose.Provider, error) {
	dir, err := fs.Sub(migrations, "migrations/"+string(db.dialect))
	if err != nil {
		return nil, fmt.Errorf("migrations for %s: %w", db.dialect, err)
	}
	d := goose.DialectPostgres
	if db.dialect == SQLite {
		d = goose.DialectSQLite3
	}
	p, err := goose.NewProvider(d, db.db.DB, dir)
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	return p, nil
}
