package store

import (
	"context"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate/tollgate/internal/policy"
)

// CreateAccount validates and stores a new account together with its secret
// token, and returns that token and its value. The value exists nowhere else:
// show it to the user once.
func (db *DB) CreateAccount(ctx context.Context, a *policy.Account) (*policy.Token, string, error) {
	if err := a.Validate(); err != nil {
		return nil, "", err
	}
	now := db.now()
	a.ID = policy.NewID("acc")
	a.CreatedAt, a.UpdatedAt = now, now
	secret := policy.NewToken(a.ID, policy.Secret)
	var value string
	err := db.inTx(ctx, func(tx *sqlx.Tx) error {
		rps, burst := rateColumns(a.RateLimit)
		_, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO accounts (id, name, premium, credit_quota, rate_limit_rps, rate_limit_burst, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`), a.ID, a.Name, a.Premium, a.CreditQuota, rps, burst, a.CreatedAt, a.UpdatedAt)
		if err != nil {
			return wrapErr("insert account", err)
		}
		value, err = db.insertToken(ctx, tx, secret, nil)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return secret, value, nil
}

// Account returns the account with the given id.
func (db *DB) Account(ctx context.Context, id string) (*policy.Account, error) {
	return getAccount(ctx, db.db, id, "")
}

// ListAccounts returns every account, oldest first.
func (db *DB) ListAccounts(ctx context.Context) ([]*policy.Account, error) {
	var rows []accountRow
	err := db.db.SelectContext(ctx, &rows, `SELECT `+accountColumns+` FROM accounts ORDER BY created_at, id`)
	if err != nil {
		return nil, wrapErr("list accounts", err)
	}
	out := make([]*policy.Account, len(rows))
	for i := range rows {
		out[i] = rows[i].account()
	}
	return out, nil
}

// UpdateAccount reads the account, lets fn change it, validates the result
// and stores it, all in one transaction: if fn or validation fails, nothing
// changes.
func (db *DB) UpdateAccount(ctx context.Context, id string, fn func(*policy.Account) error) (*policy.Account, error) {
	var a *policy.Account
	err := db.inTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		if a, err = getAccount(ctx, tx, id, db.forUpdate()); err != nil {
			return err
		}
		if err := fn(a); err != nil {
			return err
		}
		if err := a.Validate(); err != nil {
			return err
		}
		a.UpdatedAt = db.now()
		rps, burst := rateColumns(a.RateLimit)
		_, err = tx.ExecContext(ctx, tx.Rebind(`UPDATE accounts SET name = ?, premium = ?, credit_quota = ?, rate_limit_rps = ?, rate_limit_burst = ?,
			updated_at = ? WHERE id = ?`), a.Name, a.Premium, a.CreditQuota, rps, burst, a.UpdatedAt, a.ID)
		return wrapErr("update account", err)
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

const accountColumns = `id, name, premium, credit_quota, rate_limit_rps, rate_limit_burst, created_at, updated_at`

// accountRow is an accounts row: the rate limit is two nullable columns.
type accountRow struct {
	policy.Account
	RateRPS   *int64 `db:"rate_limit_rps"`
	RateBurst *int64 `db:"rate_limit_burst"`
}

func (r *accountRow) account() *policy.Account {
	a := r.Account
	a.CreatedAt, a.UpdatedAt = a.CreatedAt.UTC(), a.UpdatedAt.UTC()
	a.RateLimit = rateLimitOf(r.RateRPS, r.RateBurst)
	return &a
}

// rateLimitOf reads a rate limit from its columns.
func rateLimitOf(rps, burst *int64) *policy.RateLimit {
	if rps == nil || burst == nil {
		return nil
	}
	return &policy.RateLimit{RPS: *rps, Burst: *burst}
}

// rateColumns writes a rate limit to its columns.
func rateColumns(rl *policy.RateLimit) (rps, burst *int64) {
	if rl == nil {
		return nil, nil
	}
	return &rl.RPS, &rl.Burst
}

func getAccount(ctx context.Context, q querier, id, lock string) (*policy.Account, error) {
	var r accountRow
	err := sqlx.GetContext(ctx, q, &r, q.Rebind(`SELECT `+accountColumns+` FROM accounts WHERE id = ?`+lock), id)
	if err != nil {
		return nil, wrapErr(fmt.Sprintf("account %s", id), err)
	}
	return r.account(), nil
}
