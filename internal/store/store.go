// Package store keeps Tollgate's policy in Postgres (through sqlx and
// lib/pq) or, when no database is configured, in an embedded SQLite file
// (a pure-Go driver, so the binary stays static). Both run the same queries
// and the same test suite; where their SQL differs, the dialect says how.
package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/tollgate/tollgate/internal/policy"
)

// DefaultURL is the embedded store used when no database URL is given.
const DefaultURL = "sqlite:tollgate.db"

// Dialect names a database backend.
type Dialect string

// Dialects.
const (
	Postgres Dialect = "postgres"
	SQLite   Dialect = "sqlite"
)

// DB is a policy store. It is safe for concurrent use.
type DB struct {
	db      *sqlx.DB
	dialect Dialect
	// stmts are the statements of the request path (a cache miss, a
	// credit reservation) by query, prepared on first use (the tables may
	// not exist before Migrate), so that they neither wait for a parse
	// round trip nor have Postgres plan them again.
	stmtMu sync.Mutex
	stmts  map[string]*sqlx.Stmt
	// Now is the clock used for created/updated times; tests replace it.
	Now func() time.Time
}

// Options tune a connection pool.
type Options struct {
	// MaxConns caps open connections (Postgres); 0 means 10.
	MaxConns int
}

// Open connects to the database at rawURL ("postgres://…", "postgresql://…"
// or "sqlite:PATH"; "" means DefaultURL) and checks that it answers.
func Open(ctx context.Context, rawURL string, opt Options) (*DB, error) {
	if rawURL == "" {
		rawURL = DefaultURL
	}
	dialect, dsn, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	var db *sqlx.DB
	switch dialect {
	case Postgres:
		db, err = sqlx.Open("postgres", dsn)
		if err == nil {
			n := opt.MaxConns
			if n <= 0 {
				n = 10
			}
			db.SetMaxOpenConns(n)
			db.SetMaxIdleConns(n)
			db.SetConnMaxIdleTime(5 * time.Minute)
		}
	case SQLite:
		var sdb *sql.DB
		sdb, err = sql.Open("sqlite", dsn)
		// "sqlite3" selects sqlx's ? placeholders; modernc registers "sqlite".
		db = sqlx.NewDb(sdb, "sqlite3")
	}
	if err != nil {
		return nil, fmt.Errorf("open %s database: %w", dialect, err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := db.PingContext(pingCtx); err != nil {
		db.Close()
		return nil, &policy.Error{Code: policy.EUnavailable,
			Message: fmt.Sprintf("cannot reach the %s database at %s: %v", dialect, redact(rawURL), err)}
	}
	return &DB{db: db, dialect: dialect, Now: time.Now, stmts: map[string]*sqlx.Stmt{}}, nil
}

// parseURL turns a Tollgate database URL into a driver and its DSN.
func parseURL(raw string) (Dialect, string, error) {
	switch {
	case strings.HasPrefix(raw, "postgres://"), strings.HasPrefix(raw, "postgresql://"):
		return Postgres, raw, nil
	case strings.HasPrefix(raw, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(raw, "sqlite:"), "//")
		if path == "" {
			return "", "", policy.Errorf(policy.EInvalid, "database URL %q names no file (want sqlite:PATH)", raw)
		}
		q := url.Values{}
		q.Add("_pragma", "foreign_keys(1)")
		q.Add("_pragma", "busy_timeout(10000)")
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(NORMAL)")
		// Writers take the lock up front, so a read-then-write transaction
		// never fails half way with SQLITE_BUSY.
		q.Set("_txlock", "immediate")
		// Times as text that sorts as it should ("2006-01-02 15:04:05.999999999-07:00").
		q.Set("_time_format", "sqlite")
		return SQLite, "file:" + path + "?" + q.Encode(), nil
	}
	return "", "", policy.Errorf(policy.EInvalid, "database URL %q: want postgres://… or sqlite:PATH", redact(raw))
}

// redact hides a password in a URL, for error messages and logs.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	return u.Redacted()
}

// Dialect returns the database backend in use.
func (db *DB) Dialect() Dialect { return db.dialect }

// Close closes the connection pool.
func (db *DB) Close() error {
	db.stmtMu.Lock()
	defer db.stmtMu.Unlock()
	for q, s := range db.stmts {
		s.Close()
		delete(db.stmts, q)
	}
	return db.db.Close()
}

// prepared returns query's prepared statement, preparing it the first
// time. database/sql prepares it again on each pooled connection that
// runs it, once. A failed preparation is not kept: the next call tries
// again.
func (db *DB) prepared(ctx context.Context, query string) (*sqlx.Stmt, error) {
	db.stmtMu.Lock()
	defer db.stmtMu.Unlock()
	if s, ok := db.stmts[query]; ok {
		return s, nil
	}
	s, err := db.db.PreparexContext(ctx, db.db.Rebind(query))
	if err != nil {
		return nil, err
	}
	db.stmts[query] = s
	return s, nil
}

// now returns the clock's time in UTC at microsecond precision, the
// precision both backends keep, so a value read back equals the one written.
func (db *DB) now() time.Time { return db.Now().UTC().Truncate(time.Microsecond) }

// inTx runs fn in a transaction and commits it, or rolls it back when fn or
// the commit fails, so a failed change leaves nothing behind.
func (db *DB) inTx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	tx, err := db.db.BeginTxx(ctx, nil)
	if err != nil {
		return wrapErr("begin transaction", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return wrapErr("commit", tx.Commit())
}

// querier is what both *sqlx.DB and *sqlx.Tx offer, so a read can run
// inside or outside a transaction.
type querier interface {
	sqlx.QueryerContext
	sqlx.ExecerContext
	Rebind(query string) string
}

// forUpdate is the clause that locks a row read in a transaction. SQLite's
// immediate transactions already hold the database's write lock.
func (db *DB) forUpdate() string {
	if db.dialect == Postgres {
		return " FOR UPDATE"
	}
	return ""
}

// wrapErr gives a database error context and a domain code: not found,
// conflict (a unique or foreign key constraint), unavailable or internal.
func wrapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", op, policy.ErrNotFound)
	}
	if e, ok := errors.AsType[*policy.Error](err); ok {
		return e
	}
	code := policy.EInternal
	if pe, ok := errors.AsType[*pq.Error](err); ok {
		switch pe.Code.Class() {
		case "23": // integrity constraint violation
			code = policy.EConflict
		case "08", "57": // connection exception, operator intervention
			code = policy.EUnavailable
		}
	}
	if se, ok := errors.AsType[*sqlite.Error](err); ok {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_CONSTRAINT:
			code = policy.EConflict
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_CANTOPEN:
			code = policy.EUnavailable
		}
	}
	if unreachable(err) {
		code = policy.EUnavailable
	}
	return &policy.Error{Code: code, Message: op + ": " + err.Error(), Err: err}
}

// unreachable reports whether err means the database could not be reached
// or stopped answering, rather than that it refused the statement.
func unreachable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, sql.ErrConnDone) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	if _, ok := errors.AsType[*net.OpError](err); ok {
		return true
	}
	return false
}

// nullTime scans a nullable time that SQLite may return as text: it does
// so for computed columns (MAX(…), subqueries), which carry no declared
// type for the driver to convert by.
type nullTime struct{ Time *time.Time }

// Scan implements sql.Scanner.
func (n *nullTime) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		n.Time = nil
		return nil
	case time.Time:
		t := x.UTC()
		n.Time = &t
		return nil
	case []byte:
		v = string(x)
	}
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("store: cannot read %T as a time", v)
	}
	for _, layout := range []string{"2006-01-02 15:04:05.999999999-07:00", "2006-01-02 15:04:05.999999999", time.RFC3339Nano,
		"2006-01-02 15:04:05.999999999 -0700 MST"} {
		if t, err := time.Parse(layout, s); err == nil {
			t = t.UTC()
			n.Time = &t
			return nil
		}
	}
	return fmt.Errorf("store: cannot read %q as a time", s)
}
