package e2e_test

import (
	"context"
	"database/sql"
	"net/url"
	"testing"
	"time"

	_ "github.com/lib/pq" // plain SQL, as an operator or a migration would write it

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// postgresAddr returns the host:port of the Postgres behind databaseURL.
func postgresAddr(tb testing.TB, databaseURL string) string {
	tb.Helper()
	u, err := url.Parse(databaseURL)
	if err != nil {
		tb.Fatalf("parse %s: %v", databaseURL, err)
	}
	return u.Host
}

// MustOpenDB returns a migrated store on a fresh Postgres database (dropped
// when tb ends) and its URL, for the replicas and the test's own writes.
func MustOpenDB(tb testing.TB) (*store.DB, string) {
	tb.Helper()
	return storetest.MustOpen(tb, store.Postgres)
}

// MustOpenSQL returns a plain database/sql handle on databaseURL.
func MustOpenSQL(tb testing.TB, databaseURL string) *sql.DB {
	tb.Helper()
	db, err := sql.Open("postgres", databaseURL)
	if err != nil {
		tb.Fatalf("open %s: %v", databaseURL, err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// mustExec runs one SQL statement and fails unless it changed want rows.
func mustExec(tb testing.TB, db *sql.DB, want int64, query string, args ...any) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := db.ExecContext(ctx, query, args...)
	if err != nil {
		tb.Fatalf("%s: %v", query, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != want {
		tb.Fatalf("%s: got %d rows (%v), want %d", query, n, err, want)
	}
}

// mustExecAny runs one SQL statement, however many rows it changes.
func mustExecAny(tb testing.TB, db *sql.DB, query string, args ...any) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, query, args...); err != nil {
		tb.Fatalf("%s: %v", query, err)
	}
}

// MustCreateAccount creates an account through the store.
func MustCreateAccount(tb testing.TB, db *store.DB, name string, premium bool) *policy.Account {
	tb.Helper()
	a := &policy.Account{Name: name, Premium: premium}
	if _, _, err := db.CreateAccount(context.Background(), a); err != nil {
		tb.Fatalf("create account: %v", err)
	}
	return a
}

// MustCreateToken creates a publishable token through the store, after
// edit (if any) shaped it, and returns it and its value.
func MustCreateToken(tb testing.TB, db *store.DB, accountID string, edit func(*policy.Token)) (*policy.Token, string) {
	tb.Helper()
	t := policy.NewToken(accountID, policy.Publishable)
	if edit != nil {
		edit(t)
	}
	value, err := db.CreateToken(context.Background(), t)
	if err != nil {
		tb.Fatalf("create token: %v", err)
	}
	return t, value
}

// MustUpdateToken changes a token through the store.
func MustUpdateToken(tb testing.TB, db *store.DB, id string, edit func(*policy.Token)) {
	tb.Helper()
	_, err := db.UpdateToken(context.Background(), id, func(t *policy.Token) error {
		edit(t)
		return nil
	})
	if err != nil {
		tb.Fatalf("update token %s: %v", id, err)
	}
}

// unknownToken returns a well-formed token value (right prefix, length and
// checksum) that no database holds.
func unknownToken() string { return policy.NewValue(policy.Publishable) }

// waitOutcome polls Check every 10 ms until cond holds and returns how long
// that took; it fails tb if that takes longer than within.
func (r *replica) waitOutcome(tb testing.TB, c call, within time.Duration, what string, cond func(outcome) bool) time.Duration {
	tb.Helper()
	start := time.Now()
	var last outcome
	for {
		last = r.check(c, 5*time.Second)
		if cond(last) {
			return time.Since(start)
		}
		if time.Since(start) > within {
			tb.Fatalf("%s: %s: not within %v; last Check got %v", r.name, what, within, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func isAllowed(o outcome) bool { return o.Bad == "" && o.Allowed }

func deniedWith(code string) func(outcome) bool {
	return func(o outcome) bool { return o.denied(code) }
}

// ageChangeLog makes the policy created so far look old to the replicas:
// it waits until each has read the change log (its watcher starts from
// the newest entry, and LISTEN connects after that), then empties the log,
// as pruning eventually does. Without it, every resync re-applies the
// last 10 s of changes and evicts those tokens again (see
// TestResyncDoesNotEvictUnchangedTokens), and a test of serving from the
// cache during an outage would find nothing cached.
func ageChangeLog(tb testing.TB, databaseURL string, replicas ...*replica) {
	tb.Helper()
	for _, r := range replicas {
		r.waitMetric(tb, "tollgate_listener_connected", 5*time.Second, func(v float64) bool { return v == 1 }, "LISTEN up")
	}
	mustExecAny(tb, MustOpenSQL(tb, databaseURL), `DELETE FROM policy_changes`)
}
