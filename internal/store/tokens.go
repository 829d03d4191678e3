package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/tollgate/tollgate/internal/policy"
)

// TokenByHash returns the token whose current (or still-in-grace) key has
// hash h, with its account, in one indexed query: this is Check's cache
// miss. It returns an error wrapping policy.ErrNotFound for an unknown hash.
func (db *DB) TokenByHash(ctx context.Context, h policy.Hash) (*policy.Token, *policy.Account, error) {
	stmt, err := db.prepared(ctx, byHashQuery+` WHERE k.hash = ?`+liveKey)
	if err != nil {
		return nil, nil, wrapErr("prepare token by hash", err)
	}
	var r byHashRow
	if err := stmt.GetContext(ctx, &r, h[:], db.now()); err != nil {
		return nil, nil, wrapErr("token by hash", err)
	}
	l, err := r.loaded()
	return l.Token, l.Account, err
}

// TokensByHash is TokenByHash for many hashes in one query: the cache
// batches concurrent misses through it. A hash without a live key is
// absent from the map.
func (db *DB) TokensByHash(ctx context.Context, hs []policy.Hash) (map[policy.Hash]policy.Loaded, error) {
	keys := make([][]byte, len(hs))
	for i := range hs {
		keys[i] = hs[i][:]
	}
	var rows *sqlx.Rows
	switch db.dialect {
	case Postgres:
		// One prepared statement for every batch size.
		stmt, err := db.prepared(ctx, byHashQuery+` WHERE k.hash = ANY(?)`+liveKey)
		if err != nil {
			return nil, wrapErr("prepare tokens by hash", err)
		}
		if rows, err = stmt.QueryxContext(ctx, pq.ByteaArray(keys), db.now()); err != nil {
			return nil, wrapErr("tokens by hash", err)
		}
	default:
		q, args, err := sqlx.In(byHashQuery+` WHERE k.hash IN (?)`+liveKey, keys, db.now())
		if err != nil {
			return nil, wrapErr("tokens by hash", err)
		}
		if rows, err = db.db.QueryxContext(ctx, db.db.Rebind(q), args...); err != nil {
			return nil, wrapErr("tokens by hash", err)
		}
	}
	defer rows.Close()
	// Row by row into the answer: a batch's rows are scanned into one
	// reused row (sqlx maps the columns once per query), never gathered
	// into a slice that grows by reflection.
	out := make(map[policy.Hash]policy.Loaded, len(hs))
	var r byHashRow
	for rows.Next() {
		r = byHashRow{}
		if err := rows.StructScan(&r); err != nil {
			return nil, wrapErr("tokens by hash", err)
		}
		var h policy.Hash
		if len(r.Hash) != len(h) {
			return nil, fmt.Errorf("tokens by hash: a key hash of %d bytes", len(r.Hash))
		}
		copy(h[:], r.Hash)
		l, err := r.loaded()
		if err != nil {
			return nil, err
		}
		out[h] = l
	}
	if err := rows.Err(); err != nil {
		return nil, wrapErr("tokens by hash", err)
	}
	return out, nil
}

// byHashRow is a row of byHashQuery.
type byHashRow struct {
	tokenRow
	Hash         []byte     `db:"key_hash"`
	AName        string     `db:"a_name"`
	APremium     bool       `db:"a_premium"`
	ACreditQuota *int64     `db:"a_credit_quota"`
	ARateRPS     *int64     `db:"a_rate_limit_rps"`
	ARateBurst   *int64     `db:"a_rate_limit_burst"`
	ACreatedAt   time.Time  `db:"a_created_at"`
	AUpdatedAt   time.Time  `db:"a_updated_at"`
	KeyExpiresAt *time.Time `db:"key_expires_at"`
}

func (r *byHashRow) loaded() (policy.Loaded, error) {
	t, err := r.token()
	if err != nil {
		return policy.Loaded{}, err
	}
	t.KeyExpiresAt = utcPtr(r.KeyExpiresAt)
	a := &policy.Account{ID: t.AccountID, Name: r.AName, Premium: r.APremium, CreditQuota: r.ACreditQuota,
		RateLimit: rateLimitOf(r.ARateRPS, r.ARateBurst), CreatedAt: r.ACreatedAt.UTC(), UpdatedAt: r.AUpdatedAt.UTC()}
	return policy.Loaded{Token: t, Account: a}, nil
}

// byHashQuery is a cache miss's query, without its WHERE clause.
const byHashQuery = `SELECT ` + tokenColumns + `,
		a.name AS a_name, a.premium AS a_premium, a.credit_quota AS a_credit_quota,
		a.rate_limit_rps AS a_rate_limit_rps, a.rate_limit_burst AS a_rate_limit_burst,
		a.created_at AS a_created_at, a.updated_at AS a_updated_at, k.expires_at AS key_expires_at, k.hash AS key_hash
	FROM token_keys k
	JOIN tokens t ON t.id = k.token_id
	JOIN accounts a ON a.id = t.account_id`

// liveKey keeps byHashQuery to keys that have not expired.
const liveKey = ` AND (k.expires_at IS NULL OR k.expires_at > ?)`

// CreateToken validates and stores a new token and returns its value, which
// exists nowhere else: show it to the user once. The token's ID, Prefix and
// times are set; a missing ID or nickname gets the usual default.
func (db *DB) CreateToken(ctx context.Context, t *policy.Token) (string, error) {
	return db.CreateTokenSealed(ctx, t, nil)
}

// SealFunc turns a token's new value into what the store keeps of it
// (sealed by the caller, who holds the key), or nil to keep nothing.
type SealFunc = func(tokenID, value string) []byte

// CreateTokenSealed is CreateToken keeping seal's result for the value
// (nil seal keeps nothing), in the same transaction.
func (db *DB) CreateTokenSealed(ctx context.Context, t *policy.Token, seal SealFunc) (string, error) {
	if t.ID == "" {
		def := policy.NewToken(t.AccountID, t.Kind)
		t.ID = def.ID
		if t.Nickname == "" {
			t.Nickname = def.Nickname
		}
	}
	if err := t.Normalize(); err != nil {
		return "", err
	}
	var value string
	err := db.inTx(ctx, func(tx *sqlx.Tx) error {
		if _, err := getAccount(ctx, tx, t.AccountID, ""); err != nil {
			return err
		}
		var err error
		value, err = db.insertToken(ctx, tx, t, seal)
		return err
	})
	return value, err
}

// insertToken writes a normalized token and its first key.
func (db *DB) insertToken(ctx context.Context, tx *sqlx.Tx, t *policy.Token, seal SealFunc) (string, error) {
	value := policy.NewValue(t.Kind)
	hash := policy.HashValue(value)
	now := db.now()
	t.Prefix = policy.DisplayPrefix(value)
	t.CreatedAt, t.UpdatedAt = now, now
	r, err := rowFromToken(t)
	if err != nil {
		return "", err
	}
	_, err = tx.NamedExecContext(ctx, `INSERT INTO tokens (`+tokenInsertColumns+`) VALUES (`+tokenInsertValues+`)`, r)
	if err != nil {
		if policy.ErrorCode(wrapErr("", err)) == policy.EConflict && t.Kind == policy.Secret {
			return "", policy.Errorf(policy.EConflict, "account %s already has a secret token; roll it instead", t.AccountID)
		}
		return "", wrapErr("insert token", err)
	}
	_, err = tx.ExecContext(ctx, tx.Rebind(`INSERT INTO token_keys (hash, token_id, created_at) VALUES (?, ?, ?)`), hash[:], t.ID, now)
	if err != nil {
		return "", wrapErr("insert token key", err)
	}
	if sealed := sealValue(seal, t.ID, value); sealed != nil {
		if _, err := tx.ExecContext(ctx, tx.Rebind(`UPDATE tokens SET sealed_value = ? WHERE id = ?`), sealed, t.ID); err != nil {
			return "", wrapErr("keep token value", err)
		}
		t.ValueKept = true
	}
	return value, nil
}

// Token returns the token with the given id.
func (db *DB) Token(ctx context.Context, id string) (*policy.Token, error) {
	return getToken(ctx, db.db, id, "")
}

// ListTokens returns up to limit tokens of an account, oldest first,
// starting after the token with id after ("" for the first page). A limit
// of 0 or less means no limit.
func (db *DB) ListTokens(ctx context.Context, accountID, after string, limit int) ([]*policy.Token, error) {
	return db.ListUserTokens(ctx, accountID, "", after, limit)
}

// ListUserTokens is ListTokens limited to the tokens a user made; "" for
// every token of the account.
func (db *DB) ListUserTokens(ctx context.Context, accountID, userID, after string, limit int) ([]*policy.Token, error) {
	if _, err := db.Account(ctx, accountID); err != nil {
		return nil, err
	}
	q := `SELECT ` + tokenColumns + ` FROM tokens t WHERE t.account_id = ?`
	args := []any{accountID}
	if userID != "" {
		q += ` AND t.user_id = ?`
		args = append(args, userID)
	}
	if after != "" {
		q += ` AND (t.created_at, t.id) > (SELECT created_at, id FROM tokens WHERE id = ?)`
		args = append(args, after)
	}
	q += ` ORDER BY t.created_at, t.id`
	if limit > 0 {
		q += fmt.Sprintf(` LIMIT %d`, limit)
	}
	var rows []tokenRow
	if err := db.db.SelectContext(ctx, &rows, db.db.Rebind(q), args...); err != nil {
		return nil, wrapErr("list tokens", err)
	}
	out := make([]*policy.Token, 0, len(rows))
	for i := range rows {
		t, err := rows[i].token()
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// UpdateToken reads the token, lets fn change it, normalizes the result and
// stores it, all in one transaction: if fn or validation fails, nothing
// changes. Every replica hears of the change through the policy_changes
// trigger.
func (db *DB) UpdateToken(ctx context.Context, id string, fn func(*policy.Token) error) (*policy.Token, error) {
	var t *policy.Token
	err := db.inTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		if t, err = getToken(ctx, tx, id, db.forUpdate()); err != nil {
			return err
		}
		if err := fn(t); err != nil {
			return err
		}
		if err := t.Normalize(); err != nil {
			return err
		}
		t.UpdatedAt = db.now()
		r, err := rowFromToken(t)
		if err != nil {
			return err
		}
		_, err = tx.NamedExecContext(ctx, `UPDATE tokens SET `+tokenUpdateSet+` WHERE id = :id`, r)
		return wrapErr("update token", err)
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// DeleteToken deletes a token and its keys for good.
func (db *DB) DeleteToken(ctx context.Context, id string) error {
	res, err := db.db.ExecContext(ctx, db.db.Rebind(`DELETE FROM tokens WHERE id = ?`), id)
	if err != nil {
		return wrapErr("delete token", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("token %s: %w", id, policy.ErrNotFound)
	}
	return nil
}

func getToken(ctx context.Context, q querier, id, lock string) (*policy.Token, error) {
	var r tokenRow
	err := sqlx.GetContext(ctx, q, &r, q.Rebind(`SELECT `+tokenColumns+` FROM tokens t WHERE t.id = ?`+lock), id)
	if err != nil {
		return nil, wrapErr("token "+id, err)
	}
	return r.token()
}

// tokenRow is a token as the tokens table holds it: lists as JSON.
type tokenRow struct {
	ID             string         `db:"id"`
	AccountID      string         `db:"account_id"`
	UserID         sql.NullString `db:"user_id"`
	Kind           string         `db:"kind"`
	Nickname       string         `db:"nickname"`
	Prefix         string         `db:"prefix"`
	Enabled        bool           `db:"enabled"`
	ExpiresAt      *time.Time     `db:"expires_at"`
	Core           bool           `db:"core"`
	Premium        bool           `db:"premium"`
	Datasets       string         `db:"datasets"`
	APIs           string         `db:"allowed_apis"`
	Grants         string         `db:"grants"`
	Domains        string         `db:"allowed_domains"`
	IPs            string         `db:"allowed_ips"`
	Signed         bool           `db:"signed_requests"`
	CreditLimit    *int64         `db:"credit_limit"`
	RateLimitRPS   *int64         `db:"rate_limit_rps"`
	RateLimitBurst *int64         `db:"rate_limit_burst"`
	CreatedAt      time.Time      `db:"created_at"`
	UpdatedAt      time.Time      `db:"updated_at"`
	LastUsedAt     *time.Time     `db:"last_used_at"`
	SigningSecret  []byte         `db:"signing_secret"`
	// ValueKept: the sealed value itself is read only by SealedValue.
	ValueKept bool `db:"value_kept"`
	// PreviousExpiresAt is read, never written: see tokenColumns.
	PreviousExpiresAt nullTime `db:"previous_expires_at"`
}

const tokenColumns = `t.id, t.account_id, t.user_id, t.kind, t.nickname, t.prefix, t.enabled, t.expires_at,
	t.core, t.premium, t.datasets, t.allowed_apis, t.grants, t.allowed_domains, t.allowed_ips,
	t.signed_requests, t.credit_limit, t.rate_limit_rps, t.rate_limit_burst,
	t.created_at, t.updated_at, t.last_used_at, t.signing_secret, t.sealed_value IS NOT NULL AS value_kept,
	(SELECT MAX(pk.expires_at) FROM token_keys pk WHERE pk.token_id = t.id) AS previous_expires_at`

const tokenInsertColumns = `id, account_id, user_id, kind, nickname, prefix, enabled, expires_at,
	core, premium, datasets, allowed_apis, grants, allowed_domains, allowed_ips,
	signed_requests, credit_limit, rate_limit_rps, rate_limit_burst, created_at, updated_at, signing_secret`

const tokenInsertValues = `:id, :account_id, :user_id, :kind, :nickname, :prefix, :enabled, :expires_at,
	:core, :premium, :datasets, :allowed_apis, :grants, :allowed_domains, :allowed_ips,
	:signed_requests, :credit_limit, :rate_limit_rps, :rate_limit_burst, :created_at, :updated_at, :signing_secret`

// The account, kind and creation time of a token never change.
const tokenUpdateSet = `user_id = :user_id, nickname = :nickname, enabled = :enabled, expires_at = :expires_at,
	core = :core, premium = :premium, datasets = :datasets, allowed_apis = :allowed_apis, grants = :grants,
	allowed_domains = :allowed_domains, allowed_ips = :allowed_ips, signed_requests = :signed_requests,
	credit_limit = :credit_limit, rate_limit_rps = :rate_limit_rps, rate_limit_burst = :rate_limit_burst,
	signing_secret = :signing_secret, updated_at = :updated_at`

func rowFromToken(t *policy.Token) (*tokenRow, error) {
	r := &tokenRow{
		ID: t.ID, AccountID: t.AccountID, UserID: sql.NullString{String: t.UserID, Valid: t.UserID != ""},
		Kind: t.Kind.String(), Nickname: t.Nickname, Prefix: t.Prefix, Enabled: t.Enabled,
		ExpiresAt: utcPtr(t.ExpiresAt), Core: t.Core, Premium: t.Premium, Signed: t.Signed,
		CreditLimit: t.CreditLimit, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt, LastUsedAt: utcPtr(t.LastUsedAt),
		SigningSecret: t.SigningSecret,
	}
	if rl := t.RateLimit; rl != nil {
		r.RateLimitRPS, r.RateLimitBurst = &rl.RPS, &rl.Burst
	}
	for _, f := range []struct {
		dst *string
		v   any
		def string
	}{
		{&r.Datasets, t.Datasets, "{}"}, {&r.APIs, t.APIs, "[]"}, {&r.Grants, t.Grants, "[]"},
		{&r.Domains, t.Domains, "[]"}, {&r.IPs, t.IPs, "[]"},
	} {
		b, err := json.Marshal(f.v)
		if err != nil {
			return nil, fmt.Errorf("encode token %s: %w", t.ID, err)
		}
		if string(b) == "null" {
			b = []byte(f.def)
		}
		*f.dst = string(b)
	}
	return r, nil
}

func (r *tokenRow) token() (*policy.Token, error) {
	kind, err := policy.ParseKind(r.Kind)
	if err != nil {
		return nil, fmt.Errorf("token %s in the database: %w", r.ID, err)
	}
	t := &policy.Token{
		ID: r.ID, AccountID: r.AccountID, UserID: r.UserID.String, Kind: kind, Nickname: r.Nickname,
		Prefix: r.Prefix, Enabled: r.Enabled, ExpiresAt: utcPtr(r.ExpiresAt),
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(), LastUsedAt: utcPtr(r.LastUsedAt),
	}
	t.Core, t.Premium, t.Signed, t.CreditLimit = r.Core, r.Premium, r.Signed, r.CreditLimit
	t.SigningSecret, t.ValueKept = r.SigningSecret, r.ValueKept
	t.PreviousExpiresAt = utcPtr(r.PreviousExpiresAt.Time)
	if r.RateLimitRPS != nil {
		t.RateLimit = &policy.RateLimit{RPS: *r.RateLimitRPS}
		if r.RateLimitBurst != nil {
			t.RateLimit.Burst = *r.RateLimitBurst
		}
	}
	for _, f := range []struct {
		src string
		dst any
	}{
		{r.Datasets, &t.Datasets}, {r.APIs, &t.APIs}, {r.Grants, &t.Grants}, {r.Domains, &t.Domains}, {r.IPs, &t.IPs},
	} {
		if err := json.Unmarshal([]byte(f.src), f.dst); err != nil {
			return nil, fmt.Errorf("token %s in the database: %w", r.ID, err)
		}
	}
	return t, nil
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC().Truncate(time.Microsecond)
	return &u
}

// RollToken gives a token a new value and returns it: like creation, the
// only time it is shown. The old value keeps working for grace (at once
// stops when grace is 0), and shows as expiring meanwhile.
func (db *DB) RollToken(ctx context.Context, id string, grace time.Duration) (*policy.Token, string, error) {
	return db.RollTokenSealed(ctx, id, grace, nil)
}

// RollTokenSealed is RollToken keeping seal's result for the new value in
// place of what was kept of the old one (nil seal keeps nothing), in the
// same transaction.
func (db *DB) RollTokenSealed(ctx context.Context, id string, grace time.Duration, seal SealFunc) (*policy.Token, string, error) {
	if grace < 0 || grace > 30*24*time.Hour {
		return nil, "", &policy.Error{Code: policy.EInvalid, Field: "grace_period", Message: "must be between 0 and 720h"}
	}
	var t *policy.Token
	var value string
	err := db.inTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		if t, err = getToken(ctx, tx, id, db.forUpdate()); err != nil {
			return err
		}
		now := db.now()
		value = policy.NewValue(t.Kind)
		hash := policy.HashValue(value)
		if grace == 0 {
			_, err = tx.ExecContext(ctx, tx.Rebind(`DELETE FROM token_keys WHERE token_id = ?`), id)
		} else {
			// Cap, never extend, the grace of values rolled before.
			until := now.Add(grace)
			_, err = tx.ExecContext(ctx, tx.Rebind(`UPDATE token_keys SET expires_at = ?
				WHERE token_id = ? AND (expires_at IS NULL OR expires_at > ?)`), until, id, until)
		}
		if err != nil {
			return wrapErr("roll token", err)
		}
		if _, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO token_keys (hash, token_id, created_at) VALUES (?, ?, ?)`), hash[:], id, now); err != nil {
			return wrapErr("roll token", err)
		}
		t.Prefix, t.UpdatedAt = policy.DisplayPrefix(value), now
		if _, err := tx.ExecContext(ctx, tx.Rebind(`UPDATE tokens SET prefix = ?, updated_at = ?, sealed_value = ? WHERE id = ?`),
			t.Prefix, now, sealValue(seal, id, value), id); err != nil {
			return wrapErr("roll token", err)
		}
		t, err = getToken(ctx, tx, id, "")
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return t, value, nil
}

func sealValue(seal SealFunc, id, value string) []byte {
	if seal == nil {
		return nil
	}
	return seal(id, value)
}

// SealedValue returns what is kept of the token's current value (see
// CreateTokenSealed), nil when nothing is.
func (db *DB) SealedValue(ctx context.Context, id string) ([]byte, error) {
	var b []byte
	err := db.db.GetContext(ctx, &b, db.db.Rebind(`SELECT sealed_value FROM tokens WHERE id = ?`), id)
	if err != nil {
		return nil, wrapErr("token "+id, err)
	}
	return b, nil
}
