package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"

	"github.com/pressly/goose/v3"

	"github.com/tollgate/tollgate/internal/policy"
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

// ErrSchemaBehind is why OpenReady refuses a Postgres schema older than
// this binary; the command line names the commands that migrate it.
var ErrSchemaBehind = errors.New("database schema behind this binary")

// OpenReady opens the store at rawURL ready for use by the server and the
// command line alike: the embedded SQLite store is migrated (it has no
// separate step), and so is Postgres when migrate is set; a Postgres schema
// older than this binary is refused with EUnavailable, before anything
// reads or writes it.
func OpenReady(ctx context.Context, rawURL string, opt Options, migrate bool) (*DB, error) {
	db, err := Open(ctx, rawURL, opt)
	if err != nil {
		return nil, err
	}
	if migrate || db.Dialect() == SQLite {
		if _, err := db.Migrate(ctx); err != nil {
			db.Close()
			return nil, err
		}
	}
	cur, latest, err := db.SchemaVersion(ctx)
	if err != nil {
		db.Close()
		return nil, err
	}
	if cur < latest {
		db.Close()
		return nil, &policy.Error{Code: policy.EUnavailable, Err: ErrSchemaBehind,
			Message: fmt.Sprintf("the database schema is at version %d and this tollgate needs %d: migrate it first", cur, latest)}
	}
	return db, nil
}
