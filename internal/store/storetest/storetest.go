// Package storetest gives tests a fresh, migrated policy store on each
// backend: a new Postgres database per call (dropped when the test ends) or
// a new SQLite file in the test's temporary directory.
//
// Postgres is found at TOLLGATE_TEST_DATABASE_URL, by default
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable. The tests
// need it: .ci/postgres.sh installs and starts it on a fresh machine.
package storetest

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/lib/pq" // the postgres driver, for creating test databases

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/store"
)

// DefaultAdminURL is where tests find Postgres when
// TOLLGATE_TEST_DATABASE_URL is unset.
const DefaultAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Dialects lists the backends every store test runs against.
func Dialects() []store.Dialect { return []store.Dialect{store.SQLite, store.Postgres} }

// URL returns the URL of a new, empty database of the given dialect, which
// is dropped when tb ends.
func URL(tb testing.TB, d store.Dialect) string {
	tb.Helper()
	if d == store.SQLite {
		return "sqlite:" + filepath.Join(tb.TempDir(), "tollgate.db")
	}
	admin := os.Getenv("TOLLGATE_TEST_DATABASE_URL")
	if admin == "" {
		admin = DefaultAdminURL
	}
	db, err := sql.Open("postgres", admin)
	if err != nil {
		tb.Fatalf("open %s: %v", admin, err)
	}
	defer db.Close()
	name := strings.ToLower(fmt.Sprintf("tollgate_test_%s", policy.NewID("db")[3:]))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, `CREATE DATABASE `+name); err != nil {
		tb.Fatalf("create test database (is Postgres running? see .ci/postgres.sh): %v", err)
	}
	tb.Cleanup(func() {
		db, err := sql.Open("postgres", admin)
		if err != nil {
			tb.Errorf("drop test database: %v", err)
			return
		}
		defer db.Close()
		if _, err := db.Exec(`DROP DATABASE IF EXISTS ` + name + ` WITH (FORCE)`); err != nil {
			tb.Errorf("drop test database %s: %v", name, err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		tb.Fatalf("parse %s: %v", admin, err)
	}
	u.Path = "/" + name
	return u.String()
}

// MustOpen returns a migrated store on a new database of the given dialect,
// closed and dropped when tb ends.
func MustOpen(tb testing.TB, d store.Dialect) (*store.DB, string) {
	tb.Helper()
	u := URL(tb, d)
	ctx := context.Background()
	db, err := store.Open(ctx, u, store.Options{})
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(ctx); err != nil {
		tb.Fatalf("migrate: %v", err)
	}
	return db, u
}
