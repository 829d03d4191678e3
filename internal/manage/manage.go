// Package manage is the one home of token and user management: every front
// end (the CLI, the Tokens API, any later API) calls a Service with the
// principal it authenticated, and the Service asks policy's permission
// rules (CanSee, CanManage, CheckLockout, …) before it changes the store.
// No front end re-implements a rule.
package manage

import (
	"context"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/seal"
)

// Store is what the Service keeps tokens and users in. Methods return
// policy.ErrNotFound (wrapped) for a missing record and a *policy.Error for
// a value validation refuses.
type Store interface {
	// CreateTokenSealed validates and stores t, filling in its
	// ID-derived fields, and returns its value; it keeps what seal makes
	// of the value (nil keeps nothing).
	CreateTokenSealed(ctx context.Context, t *policy.Token, seal func(tokenID, value string) []byte) (string, error)
	Token(ctx context.Context, id string) (*policy.Token, error)
	// ListUserTokens lists an account's tokens oldest first after the
	// token with id after, those of userID only unless it is ""; a limit
	// of 0 or less means no limit.
	ListUserTokens(ctx context.Context, accountID, userID, after string, limit int) ([]*policy.Token, error)
	// UpdateToken runs fn on the token and stores the result, in one
	// transaction; nothing changes if fn or validation fails.
	UpdateToken(ctx context.Context, id string, fn func(*policy.Token) error) (*policy.Token, error)
	// RollTokenSealed gives the token a new value, keeping what seal
	// makes of it in place of the old one's; the old value works for grace.
	RollTokenSealed(ctx context.Context, id string, grace time.Duration, seal func(tokenID, value string) []byte) (*policy.Token, string, error)
	// SealedValue returns what is kept of the token's value, nil if
	// nothing is.
	SealedValue(ctx context.Context, id string) ([]byte, error)
	DeleteToken(ctx context.Context, id string) error

	// CreateUser validates and stores u (with its password hash).
	CreateUser(ctx context.Context, u *policy.User) error
	User(ctx context.Context, id string) (*policy.User, error)
	ListUsers(ctx context.Context, accountID string) ([]*policy.User, error)
	// DeleteUser removes the user once check, seeing the user and every
	// user of the account under the lock SetRole takes, allows it.
	DeleteUser(ctx context.Context, id string, check func(u *policy.User, account []policy.User) error) error
	// SetPassword replaces the user's password hash and ends every session
	// of theirs but keep (a session's secret id).
	SetPassword(ctx context.Context, userID, hash, keep string) error
	// SetRole gives the user the role once check, seeing the user and every
	// user of the account under lock, allows it.
	SetRole(ctx context.Context, id string, role policy.Role, check func(u *policy.User, account []policy.User) error) (*policy.User, error)
}

// Config shapes the Service.
type Config struct {
	// Box seals the signing secrets of tokens with signed requests on,
	// and the values of publishable tokens so they can be shown again,
	// under its current key, and opens them with it or a previous key;
	// nil refuses to switch signing on (ErrNoKey) and keeps no value.
	Box *seal.Box
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// Eval is the operator's choices Check decides with: the lock-out
	// guard holds the secret token to them.
	Eval policy.EvalOptions
	// Hash runs a password hash (bcrypt, tens of milliseconds of CPU), so
	// that a server can bound how many run at once; nil runs it at once.
	Hash func(ctx context.Context, fn func()) error
}

// Service manages tokens and users for a principal.
type Service struct {
	db  Store
	cfg Config
}

// New returns the Service.
func New(db Store, cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Hash == nil {
		cfg.Hash = func(_ context.Context, fn func()) error { fn(); return nil }
	}
	return &Service{db: db, cfg: cfg}
}
