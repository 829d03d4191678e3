package bench

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"os/exec"
	"strings"
	"time"

	"github.com/lib/pq"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/seal"
	"github.com/tollgate/tollgate/internal/store"
)

// The benchmark's token pools, by index. Every size of database holds the
// first tokens of the same sequence, so the pools stay put as it grows.
const (
	hotEnd     = 100  // [0,100): the cache-hit mix
	creditsEnd = 200  // [100,200): a credit limit
	signedEnd  = 300  // [200,300): signed requests required
	ratedEnd   = 400  // [300,400): a rate limit
	generalAt  = 400  // [400,…): everything else (cold path, revocation)
	perAccount = 1000 // tokens per account
)

// class is a kind of seeded token.
type class int

const (
	classWeb     class = iota // allowed domains, datasets and APIs
	classWebIP                // the same, and allowed IP ranges
	classCredits              // web, with a credit limit
	classSigned               // web, requiring signed requests
	classRated                // web, with a rate limit
)

func classOf(i int) class {
	switch {
	case i >= hotEnd && i < creditsEnd:
		return classCredits
	case i >= creditsEnd && i < signedEnd:
		return classSigned
	case i >= signedEnd && i < ratedEnd:
		return classRated
	case i%2 == 1:
		return classWebIP
	}
	return classWeb
}

// Token is a seeded token and what the benchmark needs to use it.
type Token struct {
	ID, AccountID, Value string
	Hash                 policy.Hash
	Class                class
	// Secret is the signing secret in clear, for classSigned.
	Secret []byte
}

// row is a class's policy as the tokens table stores it (lists as JSON,
// exactly as the store writes them).
type row struct {
	datasets, apis, grants, domains, ips string
	creditLimit, rateRPS, rateBurst      any
	signed                               bool
}

// rowsByClass normalizes one token of each class through policy, so the
// seeded rows are what the store itself would write.
func rowsByClass() (map[class]row, error) {
	out := map[class]row{}
	for _, c := range []class{classWeb, classWebIP, classCredits, classSigned, classRated} {
		t := policy.NewToken("acc_bench", policy.Publishable)
		t.Domains = []string{"app.example.com", "*.example.org"}
		t.Datasets = map[string]policy.Actions{"prices": policy.Actions(policy.Read), "sales.*": policy.Actions(policy.Read)}
		t.APIs = []string{"data", "maps"}
		var r row
		switch c {
		case classWebIP:
			t.IPs = []string{"203.0.113.0/24", "2001:db8::/32"}
		case classCredits:
			limit := int64(1_000_000_000_000)
			t.CreditLimit = &limit
			r.creditLimit = limit
		case classSigned:
			t.Signed = true
			t.SigningSecret = []byte("sealed per token when seeded")
			r.signed = true
		case classRated:
			// The most a token may have: no benchmark load reaches it, so
			// every Check pays the limiter and none is refused.
			t.RateLimit = &policy.RateLimit{RPS: 1_000_000, Burst: 10_000_000}
			r.rateRPS, r.rateBurst = t.RateLimit.RPS, t.RateLimit.Burst
		}
		if err := t.Normalize(); err != nil {
			return nil, fmt.Errorf("normalize %v: %w", c, err)
		}
		for _, f := range []struct {
			dst *string
			v   any
			def string
		}{{&r.datasets, t.Datasets, "{}"}, {&r.apis, t.APIs, "[]"}, {&r.grants, t.Grants, "[]"}, {&r.domains, t.Domains, "[]"}, {&r.ips, t.IPs, "[]"}} {
			b, err := json.Marshal(f.v)
			if err != nil {
				return nil, err
			}
			if string(b) == "null" {
				b = []byte(f.def)
			}
			*f.dst = string(b)
		}
		out[c] = r
	}
	return out, nil
}

// accountID is the id of the n-th benchmark account: fixed, so accounts
// can be made as the database grows.
func accountID(n int) string { return fmt.Sprintf("acc_bench%011d", n) }

// NewTokens makes tokens [from, to) of the sequence. Signing secrets are
// sealed with box.
func NewTokens(from, to int, box *seal.Box) ([]Token, [][]byte) {
	toks := make([]Token, 0, to-from)
	sealed := make([][]byte, 0, to-from)
	for i := from; i < to; i++ {
		v := policy.NewValue(policy.Publishable)
		t := Token{ID: policy.NewID("tok"), AccountID: accountID(i / perAccount), Value: v, Hash: policy.HashValue(v), Class: classOf(i)}
		var s []byte
		if t.Class == classSigned {
			t.Secret = []byte(policy.NewSigningSecret())
			s = box.Seal(t.ID, t.Secret)
		}
		toks = append(toks, t)
		sealed = append(sealed, s)
	}
	return toks, sealed
}

// Seed writes tokens (with their sealed secrets) and any accounts they
// need that do not exist yet, with COPY, in one transaction. Triggers are
// off for it (session_replication_role = replica): no replica is running,
// and a million notifications would only fill the change log. It then
// vacuums and analyzes the tables.
func Seed(ctx context.Context, db *sql.DB, toks []Token, sealed [][]byte) error {
	classes, err := rowsByClass()
	if err != nil {
		return err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	var have []string
	rows, err := tx.QueryContext(ctx, `SELECT id FROM accounts WHERE id LIKE 'acc_bench%'`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return err
		}
		have = append(have, id)
	}
	rows.Close()
	known := map[string]bool{}
	for _, id := range have {
		known[id] = true
	}
	if err := copyRows(ctx, tx, "accounts", []string{"id", "name", "premium", "created_at", "updated_at"}, func(put func(...any) error) error {
		for _, t := range toks {
			if !known[t.AccountID] {
				known[t.AccountID] = true
				if err := put(t.AccountID, "Bench "+t.AccountID, false, now, now); err != nil {
					return err
				}
			}
		}
		return nil
	}); err != nil {
		return err
	}
	cols := []string{"id", "account_id", "kind", "nickname", "prefix", "enabled", "core", "premium", "datasets",
		"allowed_apis", "grants", "allowed_domains", "allowed_ips", "signed_requests", "credit_limit",
		"rate_limit_rps", "rate_limit_burst", "created_at", "updated_at", "signing_secret"}
	if err := copyRows(ctx, tx, "tokens", cols, func(put func(...any) error) error {
		for i, t := range toks {
			r := classes[t.Class]
			var secret any
			if sealed[i] != nil {
				secret = sealed[i]
			}
			if err := put(t.ID, t.AccountID, "publishable", "bench-"+t.ID[4:12], policy.DisplayPrefix(t.Value), true, true, false,
				r.datasets, r.apis, r.grants, r.domains, r.ips, r.signed, r.creditLimit, r.rateRPS, r.rateBurst, now, now, secret); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := copyRows(ctx, tx, "token_keys", []string{"hash", "token_id", "created_at"}, func(put func(...any) error) error {
		for _, t := range toks {
			if err := put(t.Hash[:], t.ID, now); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	// Leave the tables as a database that grew over time is, not as a bulk
	// load is: vacuumed (a million inserted rows otherwise start an
	// autovacuum that reads every page while the next phase measures cold
	// misses) and analyzed. One statement: VACUUM refuses to run inside the
	// transaction a multi-statement query is.
	_, err = db.ExecContext(ctx, `VACUUM (ANALYZE) accounts, tokens, token_keys`)
	return err
}

func copyRows(ctx context.Context, tx *sql.Tx, table string, cols []string, fill func(put func(...any) error) error) error {
	stmt, err := tx.PrepareContext(ctx, pq.CopyIn(table, cols...))
	if err != nil {
		return fmt.Errorf("copy %s: %w", table, err)
	}
	err = fill(func(v ...any) error {
		_, err := stmt.ExecContext(ctx, v...)
		return err
	})
	if err == nil {
		_, err = stmt.ExecContext(ctx)
	}
	if cerr := stmt.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy %s: %w", table, err)
	}
	return nil
}

// CreateDatabase (re)creates database name on the server at adminURL and
// returns its URL.
func CreateDatabase(ctx context.Context, adminURL, name string) (string, error) {
	db, err := sql.Open("postgres", adminURL)
	if err != nil {
		return "", err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
		return "", fmt.Errorf("drop %s (is Postgres running? see .ci/postgres.sh): %w", name, err)
	}
	if _, err := db.ExecContext(ctx, `CREATE DATABASE `+name); err != nil {
		return "", fmt.Errorf("create %s: %w", name, err)
	}
	u, err := url.Parse(adminURL)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

// runDatabase returns a database name for one run: prefix and a random
// suffix. Engineers share the machine's Postgres, and a run that
// re-created a fixed name would drop another run's database under it
// (DROP … WITH (FORCE) cuts its connections: its tokens turn unknown).
// runStore is a database of one run's own, migrated by the tollgate
// binary under test, with a store open on it and one account.
type runStore struct {
	*store.DB
	URL     string
	Account *policy.Account
	close   func()
}

// Close closes the store and drops the database.
func (r *runStore) Close() { r.close() }

// openRunStore creates a database named from prefix, migrates it with the
// tollgate binary, opens a store of maxConns connections on it and creates
// an account called account.
func openRunStore(ctx context.Context, adminURL, tollgate, prefix string, maxConns int, account string) (*runStore, error) {
	name := runDatabase(prefix)
	dbURL, err := CreateDatabase(ctx, adminURL, name)
	if err != nil {
		return nil, err
	}
	drop := func() { DropDatabase(context.Background(), adminURL, name) }
	if err := migrate(ctx, tollgate, dbURL); err != nil {
		drop()
		return nil, err
	}
	st, err := store.Open(ctx, dbURL, store.Options{MaxConns: maxConns})
	if err != nil {
		drop()
		return nil, err
	}
	r := &runStore{DB: st, URL: dbURL, Account: &policy.Account{Name: account}, close: func() { st.Close(); drop() }}
	if _, _, err := st.CreateAccount(ctx, r.Account); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// migrate brings the database at dbURL up to date with the tollgate
// binary under test, as an operator would.
func migrate(ctx context.Context, tollgate, dbURL string) error {
	if out, err := exec.CommandContext(ctx, tollgate, "migrate", "--database-url", dbURL).CombinedOutput(); err != nil {
		return fmt.Errorf("tollgate migrate: %v: %s", err, out)
	}
	return nil
}

func runDatabase(prefix string) string {
	// Lower case: Postgres folds the unquoted name, and pg_stat_activity
	// reports it folded.
	return prefix + "_" + strings.ToLower(rand.Text()[:12])
}

// DropDatabase drops database name.
func DropDatabase(ctx context.Context, adminURL, name string) error {
	db, err := sql.Open("postgres", adminURL)
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`)
	return err
}

// unknownValues returns n well-formed values no database holds.
func unknownValues(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = policy.NewValue(policy.Publishable)
	}
	return out
}

// malformedValues returns n values of a token's length whose checksum is
// wrong: Tollgate refuses them by shape alone.
func malformedValues(n int) []string {
	out := make([]string, n)
	for i := range out {
		v := []byte(policy.NewValue(policy.Publishable))
		last := &v[len(v)-1]
		if *last == 'A' {
			*last = 'B'
		} else {
			*last = 'A'
		}
		out[i] = string(v)
	}
	return out
}

// NewKey returns a fresh encryption key, base64, for TOLLGATE_ENCRYPTION_KEY.
func NewKey() (string, []byte) {
	k := make([]byte, seal.KeySize)
	rand.Read(k)
	return base64.StdEncoding.EncodeToString(k), k
}
