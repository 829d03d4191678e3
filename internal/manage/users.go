package manage

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"

	"golang.org/x/crypto/bcrypt"

	"github.com/tollgate/tollgate/internal/policy"
)

// NewUser is a user to add. An empty Role is a member.
type NewUser struct {
	AccountID string
	Email     string
	Role      policy.Role
	Password  string
	// MakePassword makes a first password up instead, returned once for
	// the inviter to pass on.
	MakePassword bool
}

// HashPassword returns the bcrypt hash the store keeps for a password.
func HashPassword(pw string) (string, error) {
	if len(pw) < 10 || len(pw) > 72 {
		return "", &policy.Error{Code: policy.EInvalid, Field: "password", Message: "must be 10 to 72 characters"}
	}
	b, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(b), nil
}

// CreateUser adds a user to the account (the principal's, unless the
// operator names another) and returns it with the password it made, if
// it made one.
func (s *Service) CreateUser(ctx context.Context, p policy.Principal, nu NewUser) (*policy.User, string, error) {
	if !p.Operator && nu.AccountID == "" {
		nu.AccountID = p.AccountID
	}
	if !policy.CanManageUsers(p, nu.AccountID) {
		return nil, "", ErrAdminOnly
	}
	if nu.Role == "" {
		nu.Role = policy.RoleMember
	}
	generated := ""
	if nu.MakePassword {
		b := make([]byte, 15)
		rand.Read(b) // never returns an error (crypto/rand's contract)
		generated = base64.RawURLEncoding.EncodeToString(b)
		nu.Password = generated
	}
	var hash string
	var err error
	if herr := s.cfg.Hash(ctx, func() { hash, err = HashPassword(nu.Password) }); herr != nil {
		return nil, "", herr
	}
	if err != nil {
		return nil, "", err
	}
	u := &policy.User{AccountID: nu.AccountID, Email: nu.Email, Role: nu.Role, PasswordHash: hash}
	if err := s.db.CreateUser(ctx, u); err != nil {
		return nil, "", err
	}
	return u, generated, nil
}

// ErrAdminOnly refuses what only an account's admins may do.
var ErrAdminOnly = &policy.Error{Code: policy.EForbidden, Message: "only an admin may do this"}

// ListUsers lists the account's users (the principal's, unless the
// operator names another).
func (s *Service) ListUsers(ctx context.Context, p policy.Principal, accountID string) ([]*policy.User, error) {
	if !p.Operator && accountID == "" {
		accountID = p.AccountID
	}
	if !policy.CanSeeUsers(p, accountID) {
		return nil, policy.ErrNotFound
	}
	return s.db.ListUsers(ctx, accountID)
}

// DeleteUser removes a user from their account. No one removes
// themselves, so that an account keeps an admin who can.
func (s *Service) DeleteUser(ctx context.Context, p policy.Principal, id string) error {
	if !policy.CanManageUsers(p, p.AccountID) {
		return ErrAdminOnly
	}
	u, err := s.db.User(ctx, id)
	if err != nil {
		return err
	}
	if !policy.CanSeeUsers(p, u.AccountID) {
		return fmt.Errorf("user %s: %w", id, policy.ErrNotFound)
	}
	if u.ID == p.UserID {
		return &policy.Error{Code: policy.EConflict, Message: "you cannot remove yourself; ask another admin"}
	}
	return s.db.DeleteUser(ctx, id)
}
