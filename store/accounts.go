package store

import (
	"context"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate/tollgate/policy"
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
		_, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO accounts (id, name, premium, credit_quota, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?)`), a.ID, a.Name, a.Premium, a.CreditQuota, a.CreatedAt, a.UpdatedAt)
		if err != nil {
			return wrapErr("insert account", err)
		}
		value, err = db.insertToken(ctx, tx, secret)
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
	var out []*policy.Account
	err := db.db.SelectContext(ctx, &out, `SELECT `+accountColumns+` FROM accounts ORDER BY created_at, id`)
	if err != nil {
		return nil, wrapErr("list accounts", err)
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
		_, err = tx.ExecContext(ctx, tx.Rebind(`UPDATE accounts SET name = ?, premium = ?, credit_quota = ?, updated_at = ? WHERE id = ?`),
			a.Name, a.Premium, a.CreditQuota, a.UpdatedAt, a.ID)
		return wrapErr("update account", err)
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

const accountColumns = `id, name, premium, credit_quota, created_at, updated_at`

func getAccount(ctx context.Context, q querier, id, lock string) (*policy.Account, error) {
	var a policy.Account
	err := sqlx.GetContext(ctx, q, &a, q.Rebind(`SELECT `+accountColumns+` FROM accounts WHERE id = ?`+lock), id)
	if err != nil {
		return nil, wrapErr(fmt.Sprintf("account %s", id), err)
	}
	a.CreatedAt, a.UpdatedAt = a.CreatedAt.UTC(), a.UpdatedAt.UTC()
	return &a, nil
}
