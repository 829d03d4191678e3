package manage

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
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
	hash, err := s.hash(ctx, nu.Password)
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
// themselves, and no removal may leave the account without an admin
// (checked under the store's lock, as ChangeRole's is).
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
	return s.db.DeleteUser(ctx, id, underLock(p, policy.CheckRemoveUser))
}

// underLock is the check a change that can take an admin away runs on the
// account's users as read under their lock: the last-admin rule, then the
// acting principal's own role read again (the rule first: when both
// refuse, it says more).
func underLock(p policy.Principal, lastAdmin func(u *policy.User, admins int) error) func(*policy.User, []policy.User) error {
	return func(u *policy.User, account []policy.User) error {
		if err := lastAdmin(u, policy.Admins(account)); err != nil {
			return err
		}
		if !policy.StillManagesUsers(p, account) {
			return ErrAdminOnly
		}
		return nil
	}
}

// hash runs HashPassword in the Service's hashing pool.
func (s *Service) hash(ctx context.Context, pw string) (string, error) {
	var hash string
	var err error
	if herr := s.cfg.Hash(ctx, func() { hash, err = HashPassword(pw) }); herr != nil {
		return "", herr
	}
	return hash, err
}

// ErrWrongPassword refuses a password change whose current password is
// wrong.
var ErrWrongPassword = &policy.Error{Code: policy.EInvalid, Field: "current_password", Message: "is not your current password"}

// SetPassword changes a user's password, their current one checked first,
// and signs out every session of theirs but keep (the secret id of the
// session making the change), so that whoever knew the old password is
// out.
func (s *Service) SetPassword(ctx context.Context, p policy.Principal, userID, current, next, keep string) error {
	u, err := s.db.User(ctx, userID)
	if err != nil {
		return err
	}
	if !policy.CanSeeUsers(p, u.AccountID) {
		return fmt.Errorf("user %s: %w", userID, policy.ErrNotFound)
	}
	if !policy.CanSetPassword(p, u) {
		return &policy.Error{Code: policy.EForbidden, Message: "you may change only your own password"}
	}
	var ok bool
	if herr := s.cfg.Hash(ctx, func() {
		ok = u.PasswordHash != "" && bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(current)) == nil
	}); herr != nil {
		return herr
	}
	if !ok {
		return ErrWrongPassword
	}
	if current == next {
		return &policy.Error{Code: policy.EInvalid, Field: "new_password", Message: "is your current password: choose a new one"}
	}
	hash, err := s.hash(ctx, next)
	if err != nil {
		if pe, isPE := errors.AsType[*policy.Error](err); isPE && pe.Field == "password" {
			return &policy.Error{Code: pe.Code, Field: "new_password", Message: pe.Message}
		}
		return err
	}
	return s.db.SetPassword(ctx, u.ID, hash, keep)
}

// ChangeRole gives a teammate a role; no change may leave the account
// without an admin.
func (s *Service) ChangeRole(ctx context.Context, p policy.Principal, userID string, role policy.Role) (*policy.User, error) {
	u, err := s.db.User(ctx, userID)
	if err != nil {
		return nil, err
	}
	if !policy.CanSeeUsers(p, u.AccountID) {
		return nil, fmt.Errorf("user %s: %w", userID, policy.ErrNotFound)
	}
	if !policy.CanChangeRole(p, u) {
		return nil, ErrAdminOnly
	}
	probe := policy.User{Email: u.Email, Role: role}
	if err := probe.Validate(); err != nil {
		return nil, err
	}
	return s.db.SetRole(ctx, u.ID, role, underLock(p, func(u *policy.User, admins int) error {
		return policy.CheckLastAdmin(u, role, admins)
	}))
}
