package store

import (
	"context"
	"crypto/sha256"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate/tollgate/internal/policy"
)

const userColumns = `id, account_id, email, role, password_hash, created_at`

// CreateUser validates and stores a teammate. The password hash is the
// caller's (bcrypt); the store never sees a password.
func (db *DB) CreateUser(ctx context.Context, u *policy.User) error {
	if err := u.Validate(); err != nil {
		return err
	}
	u.ID = policy.NewID("usr")
	u.CreatedAt = db.now()
	return db.inTx(ctx, func(tx *sqlx.Tx) error {
		if _, err := getAccount(ctx, tx, u.AccountID, ""); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO users (`+userColumns+`) VALUES (?, ?, ?, ?, ?, ?)`),
			u.ID, u.AccountID, u.Email, u.Role, u.PasswordHash, u.CreatedAt)
		if policy.ErrorCode(wrapErr("", err)) == policy.EConflict {
			// Emails are unique per account: this says nothing about
			// other accounts.
			return &policy.Error{Code: policy.EConflict, Field: "email", Message: fmt.Sprintf("%s is already a user of this account", u.Email)}
		}
		return wrapErr("insert user", err)
	})
}

// User returns the user with the given id.
func (db *DB) User(ctx context.Context, id string) (*policy.User, error) {
	return db.getUser(ctx, `id = ?`, id)
}

// UserByEmail returns the user with the given email (lower-cased). An
// email is unique within an account, not across them: when several
// accounts have it, this is the one that added it first (sign-in without
// an account names that one).
func (db *DB) UserByEmail(ctx context.Context, email string) (*policy.User, error) {
	return db.getUser(ctx, `email = ? ORDER BY created_at, id LIMIT 1`, email)
}

// UserByAccountEmail returns the account's user with the given email
// (lower-cased).
func (db *DB) UserByAccountEmail(ctx context.Context, accountID, email string) (*policy.User, error) {
	return db.getUser(ctx, `account_id = ? AND email = ?`, accountID, email)
}

func (db *DB) getUser(ctx context.Context, where string, args ...any) (*policy.User, error) {
	var u policy.User
	if err := db.db.GetContext(ctx, &u, db.db.Rebind(`SELECT `+userColumns+` FROM users WHERE `+where), args...); err != nil {
		return nil, wrapErr("user", err)
	}
	u.CreatedAt = u.CreatedAt.UTC()
	return &u, nil
}

// ListUsers returns an account's users, oldest first.
func (db *DB) ListUsers(ctx context.Context, accountID string) ([]*policy.User, error) {
	var out []*policy.User
	if err := db.db.SelectContext(ctx, &out, db.db.Rebind(`SELECT `+userColumns+` FROM users WHERE account_id = ? ORDER BY created_at, id`), accountID); err != nil {
		return nil, wrapErr("list users", err)
	}
	for _, u := range out {
		u.CreatedAt = u.CreatedAt.UTC()
	}
	return out, nil
}

// DeleteUser removes a user once check allows it, and signs them out;
// their tokens stay, owned by the account. check sees the user and every
// user of the account under the lock SetRole takes, so that two
// admins removing each other, or a removal racing a demotion, cannot
// both pass a last-admin check.
func (db *DB) DeleteUser(ctx context.Context, id string, check func(u *policy.User, account []policy.User) error) error {
	target, err := db.User(ctx, id) // a user's account never changes
	if err != nil {
		return err
	}
	return db.inTx(ctx, func(tx *sqlx.Tx) error {
		u, account, err := db.lockUsers(ctx, tx, target.AccountID, id)
		if err != nil {
			return err
		}
		if err := check(&u, account); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, tx.Rebind(`DELETE FROM users WHERE id = ?`), id)
		return wrapErr("delete user", err)
	})
}

// SetPassword replaces a user's password hash and signs out every session
// of theirs but keep (the secret id of the session making the change; ""
// signs them all out), in one transaction.
func (db *DB) SetPassword(ctx context.Context, userID, hash, keep string) error {
	return db.inTx(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, tx.Rebind(`UPDATE users SET password_hash = ? WHERE id = ?`), hash, userID)
		if err != nil {
			return wrapErr("set password", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("user %s: %w", userID, policy.ErrNotFound)
		}
		q, args := `DELETE FROM sessions WHERE user_id = ?`, []any{userID}
		if keep != "" {
			h := sha256.Sum256([]byte(keep))
			q, args = q+` AND id_hash <> ?`, append(args, h[:])
		}
		_, err = tx.ExecContext(ctx, tx.Rebind(q), args...)
		return wrapErr("end other sessions", err)
	})
}

// SetRole gives a user a role once check allows it. check sees the user as
// it is and every user of the account, read under lockUsers: two admins
// demoting each other at once cannot both pass a last-admin check.
func (db *DB) SetRole(ctx context.Context, id string, role policy.Role, check func(u *policy.User, account []policy.User) error) (*policy.User, error) {
	target, err := db.User(ctx, id) // a user's account never changes
	if err != nil {
		return nil, err
	}
	var u policy.User
	err = db.inTx(ctx, func(tx *sqlx.Tx) error {
		var account []policy.User
		if u, account, err = db.lockUsers(ctx, tx, target.AccountID, id); err != nil {
			return err
		}
		if err := check(&u, account); err != nil {
			return err
		}
		u.Role = role
		if err := u.Validate(); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, tx.Rebind(`UPDATE users SET role = ? WHERE id = ?`), u.Role, id)
		return wrapErr("set role", err)
	})
	if err != nil {
		return nil, err
	}
	u.CreatedAt = u.CreatedAt.UTC()
	return &u, nil
}

// lockUsers locks every user of the account (in id order, so that two
// changes never deadlock; SQLite's immediate transaction holds the whole
// database) and returns the user with the given id and every user of the
// account. Every change that can take an admin away goes through it, so
// last-admin checks see each other's results, and an admin demoted
// meanwhile is seen as demoted.
func (db *DB) lockUsers(ctx context.Context, tx *sqlx.Tx, accountID, id string) (policy.User, []policy.User, error) {
	var all []policy.User
	q := `SELECT ` + userColumns + ` FROM users WHERE account_id = ? ORDER BY id` + db.forUpdate()
	if err := tx.SelectContext(ctx, &all, tx.Rebind(q), accountID); err != nil {
		return policy.User{}, nil, wrapErr("lock users", err)
	}
	for _, x := range all {
		if x.ID == id {
			return x, all, nil
		}
	}
	return policy.User{}, nil, fmt.Errorf("user %s: %w", id, policy.ErrNotFound)
}

// CreateSession stores a session under the hash of its secret id.
func (db *DB) CreateSession(ctx context.Context, id string, s policy.Session) error {
	h := sha256.Sum256([]byte(id))
	_, err := db.db.ExecContext(ctx, db.db.Rebind(`INSERT INTO sessions (id_hash, user_id, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`),
		h[:], s.UserID, s.CSRF, db.now(), s.ExpiresAt.UTC())
	return wrapErr("create session", err)
}

// SessionByID returns a live session by its secret id.
func (db *DB) SessionByID(ctx context.Context, id string) (*policy.Session, error) {
	h := sha256.Sum256([]byte(id))
	var s policy.Session
	err := db.db.GetContext(ctx, &s, db.db.Rebind(`SELECT user_id, csrf, expires_at FROM sessions WHERE id_hash = ? AND expires_at > ?`), h[:], db.now())
	if err != nil {
		return nil, wrapErr("session", err)
	}
	return &s, nil
}

// DeleteSession signs a session out.
func (db *DB) DeleteSession(ctx context.Context, id string) error {
	h := sha256.Sum256([]byte(id))
	_, err := db.db.ExecContext(ctx, db.db.Rebind(`DELETE FROM sessions WHERE id_hash = ? OR expires_at < ?`), h[:], db.now())
	return wrapErr("delete session", err)
}

// Audit records a change.
func (db *DB) Audit(ctx context.Context, e policy.AuditEntry) error {
	if e.Details == "" {
		e.Details = "{}"
	}
	_, err := db.db.ExecContext(ctx, db.db.Rebind(`INSERT INTO audit_log (account_id, actor, action, target, ip, details, at) VALUES (?, ?, ?, ?, ?, ?, ?)`),
		e.AccountID, e.Actor, e.Action, e.Target, e.IP, e.Details, db.now())
	return wrapErr("audit", err)
}

// ListAudit returns an account's audit log, newest first, before the entry
// with id before (0 for the newest).
func (db *DB) ListAudit(ctx context.Context, accountID string, before int64, limit int) ([]policy.AuditEntry, error) {
	q := `SELECT id, account_id, actor, action, target, ip, details, at FROM audit_log WHERE account_id = ?`
	args := []any{accountID}
	if before > 0 {
		q += ` AND id < ?`
		args = append(args, before)
	}
	q += fmt.Sprintf(` ORDER BY id DESC LIMIT %d`, max(1, min(limit, 1000)))
	var out []policy.AuditEntry
	if err := db.db.SelectContext(ctx, &out, db.db.Rebind(q), args...); err != nil {
		return nil, wrapErr("list audit", err)
	}
	for i := range out {
		out[i].At = out[i].At.UTC()
	}
	return out, nil
}
