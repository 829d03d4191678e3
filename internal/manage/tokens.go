package manage

import (
	"context"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
)

// ErrNoKey refuses signed requests when no encryption key is configured:
// without one, signing secrets cannot be kept.
var ErrNoKey = &policy.Error{Code: policy.EConflict, Field: "signed_requests",
	Message: "no encryption key is configured, so signing secrets cannot be kept"}

// ErrNotSigned refuses to roll the signing secret of a token that does not
// require signed requests.
var ErrNotSigned = &policy.Error{Code: policy.EConflict, Field: "signed_requests",
	Message: "the token does not require signed requests, so it has no signing secret to roll"}

// Issued is a token with what is shown only once: its value (after create
// and roll) and a signing secret made by the change, if any.
type Issued struct {
	Token         *policy.Token
	Value         string
	SigningSecret string
}

// CreateToken makes a token of the given kind in the account (the
// principal's own unless the operator acts), owned by the
// principal's user unless the patch names an owner (which only the
// operator may), and returns its value and any signing secret, shown once.
func (s *Service) CreateToken(ctx context.Context, p policy.Principal, accountID string, kind policy.Kind, patch *policy.TokenPatch) (Issued, error) {
	if !p.Operator {
		// Only the operator chooses an account; the others make tokens in
		// their own.
		accountID = p.AccountID
	}
	if !policy.CanCreate(p, accountID, kind) {
		return Issued{}, &policy.Error{Code: policy.EForbidden, Field: "kind", Message: "only admins may make a secret token"}
	}
	if patch.UserID != nil && !policy.CanOwn(p) {
		return Issued{}, &policy.Error{Code: policy.EInvalid, Field: "user_id", Message: "cannot be changed"}
	}
	t := policy.NewToken(accountID, kind)
	t.UserID = p.UserID
	patch.Apply(t)
	if err := policy.CheckLockout(p, t, false, s.cfg.Now(), s.cfg.Eval); err != nil {
		return Issued{}, err
	}
	secret, err := s.signingSecret(t, false)
	if err != nil {
		return Issued{}, err
	}
	value, err := s.db.CreateTokenSealed(ctx, t, s.sealValue(kind))
	if err != nil {
		return Issued{}, err
	}
	return Issued{Token: t, Value: value, SigningSecret: secret}, nil
}

// Token returns the token if the principal may see it. Anything else is
// not found, so as not to tell what exists.
func (s *Service) Token(ctx context.Context, p policy.Principal, id string) (*policy.Token, error) {
	t, err := s.db.Token(ctx, id)
	if err != nil {
		return nil, err
	}
	if !policy.CanSee(p, t) {
		return nil, fmt.Errorf("token %s: %w", id, policy.ErrNotFound)
	}
	return t, nil
}

// TokenFilter picks the tokens ListTokens returns.
type TokenFilter struct {
	// AccountID is the operator's choice; others list their own account.
	AccountID string
	// Mine lists only the principal's own tokens; without it, every token
	// the principal may see.
	Mine bool
	// After starts after this token id (for paging); Limit caps the
	// answer, 0 or less for no cap.
	After string
	Limit int
}

// ListTokens lists the tokens the principal may see, oldest first.
func (s *Service) ListTokens(ctx context.Context, p policy.Principal, f TokenFilter) ([]*policy.Token, error) {
	account, owner := f.AccountID, ""
	if !p.Operator {
		account, owner = p.AccountID, policy.ListedOwner(p)
		if f.Mine {
			owner = p.UserID
		}
	}
	if f.Mine && p.UserID == "" {
		return nil, &policy.Error{Code: policy.EInvalid, Field: "owner", Message: "owner=me needs a signed-in user, not the secret token"}
	}
	return s.db.ListUserTokens(ctx, account, owner, f.After, f.Limit)
}

// UpdateToken applies the patch in one transaction, making a signing
// secret if signing was switched on; the secret is returned once.
func (s *Service) UpdateToken(ctx context.Context, p policy.Principal, id string, patch *policy.TokenPatch) (Issued, error) {
	return s.change(ctx, p, id, patch, false)
}

// SetEnabled switches the token on or off; it takes effect on every
// replica within a second.
func (s *Service) SetEnabled(ctx context.Context, p policy.Principal, id string, enabled bool) (Issued, error) {
	return s.change(ctx, p, id, &policy.TokenPatch{Enabled: &enabled}, false)
}

// RollSigningSecret replaces the token's signing secret; the new one is
// returned once and the old one stops working.
func (s *Service) RollSigningSecret(ctx context.Context, p policy.Principal, id string) (Issued, error) {
	return s.change(ctx, p, id, &policy.TokenPatch{}, true)
}

func (s *Service) change(ctx context.Context, p policy.Principal, id string, patch *policy.TokenPatch, roll bool) (Issued, error) {
	if _, err := s.Token(ctx, p, id); err != nil {
		return Issued{}, err
	}
	var secret string
	t, err := s.db.UpdateToken(ctx, id, func(t *policy.Token) error {
		if err := s.mayChange(p, t, patch, roll); err != nil {
			return err
		}
		wasEnabled := t.Enabled
		patch.Apply(t)
		if roll && !t.Signed {
			return ErrNotSigned
		}
		if err := policy.CheckLockout(p, t, wasEnabled, s.cfg.Now(), s.cfg.Eval); err != nil {
			return err
		}
		var err error
		secret, err = s.signingSecret(t, roll)
		return err
	})
	if err != nil {
		return Issued{}, err
	}
	return Issued{Token: t, SigningSecret: secret}, nil
}

// mayChange refuses a change the principal may not make, naming the first
// field at fault.
func (s *Service) mayChange(p policy.Principal, t *policy.Token, patch *policy.TokenPatch, roll bool) error {
	if patch.UserID != nil && !policy.CanOwn(p) {
		return &policy.Error{Code: policy.EInvalid, Field: "user_id", Message: "cannot be changed"}
	}
	if policy.CanManage(p, t) {
		return nil
	}
	if roll {
		return &policy.Error{Code: policy.EForbidden, Message: "only the token's owner may roll its signing secret"}
	}
	for _, f := range patch.Fields() {
		if f != "enabled" || !policy.CanToggle(p, t) {
			return &policy.Error{Code: policy.EForbidden, Field: f, Message: "only the token's owner may change this; admins may only enable or disable it"}
		}
	}
	return nil
}

// RollToken gives the token a new value, returned once; the old value
// keeps working for grace.
func (s *Service) RollToken(ctx context.Context, p policy.Principal, id string, grace time.Duration) (Issued, error) {
	t, err := s.Token(ctx, p, id)
	if err != nil {
		return Issued{}, err
	}
	if !policy.CanManage(p, t) {
		// The new value is shown to whoever rolls: never to anyone but
		// the owner.
		return Issued{}, &policy.Error{Code: policy.EForbidden, Message: "only the token's owner may roll it"}
	}
	t, value, err := s.db.RollTokenSealed(ctx, t.ID, grace, s.sealValue(t.Kind))
	if err != nil {
		return Issued{}, err
	}
	return Issued{Token: t, Value: value}, nil
}

// ErrSecretShownOnce refuses to show a secret token's value again: only
// its hash is kept.
var ErrSecretShownOnce = &policy.Error{Code: policy.EForbidden,
	Message: "a secret token's value is shown only once, when it is made or rolled, and only its hash is kept: roll it for a new value"}

// ErrValueNotKept refuses to show a publishable token's value again when
// the server has no encryption key.
var ErrValueNotKept = &policy.Error{Code: policy.EConflict,
	Message: "this server has no encryption key, so token values are shown only once; roll the token for a new value"}

// ErrValueNotSealed refuses to show the value of a publishable token made
// or last rolled when values were not kept.
var ErrValueNotSealed = &policy.Error{Code: policy.EConflict,
	Message: "this token's value was not kept (it was made or last rolled before this server kept publishable values, or without an encryption key): roll it, and its new value can be copied again"}

// valueOwner is what a kept value is sealed for: its token, under a name
// of its own, so that a sealed signing secret moved into the value's place
// will not open as a value.
func valueOwner(tokenID string) string { return tokenID + "#value" }

// sealValue is how a new value of a token of kind k is kept: sealed for
// publishable tokens when there is a key; otherwise not at all.
func (s *Service) sealValue(k policy.Kind) func(tokenID, value string) []byte {
	if s.cfg.Box == nil || k != policy.Publishable {
		return nil
	}
	return func(id, value string) []byte { return s.cfg.Box.Seal(valueOwner(id), []byte(value)) }
}

// RevealToken returns a publishable token's current value again, for
// whoever may see the token. Secret tokens' values are never kept.
func (s *Service) RevealToken(ctx context.Context, p policy.Principal, id string) (string, error) {
	t, err := s.Token(ctx, p, id)
	if err != nil {
		return "", err
	}
	if !policy.CanReveal(p, t) {
		return "", ErrSecretShownOnce
	}
	if s.cfg.Box == nil {
		return "", ErrValueNotKept
	}
	sealed, err := s.db.SealedValue(ctx, t.ID)
	if err != nil {
		return "", err
	}
	if sealed == nil {
		return "", ErrValueNotSealed
	}
	v, err := s.cfg.Box.Open(valueOwner(t.ID), sealed)
	if err != nil {
		// Another key, or a tampered row: never a value. Giving the
		// server the key it was sealed with as a previous key, or a roll,
		// mends it.
		return "", &policy.Error{Code: policy.EConflict, Err: err,
			Message: "this token's kept value cannot be opened with the server's current or previous encryption keys (was the key changed without keeping the old one as a previous key?): roll the token for a new value"}
	}
	return string(v), nil
}

// DeleteToken deletes the token for good.
func (s *Service) DeleteToken(ctx context.Context, p policy.Principal, id string) error {
	t, err := s.Token(ctx, p, id)
	if err != nil {
		return err
	}
	if t.Kind == policy.Secret && !policy.CanDeleteSecret(p) {
		return policy.ErrSecretLockout
	}
	if !policy.CanDelete(p, t) {
		return &policy.Error{Code: policy.EForbidden, Message: "only the token's owner or an admin may delete it"}
	}
	return s.db.DeleteToken(ctx, t.ID)
}

// signingSecret gives a token that requires signed requests a signing
// secret when it has none (or when roll asks for a new one), sealed, and
// returns it in clear, or "" when none was made. This is the one place
// signing secrets are made.
func (s *Service) signingSecret(t *policy.Token, roll bool) (string, error) {
	if !t.Signed || (len(t.SigningSecret) > 0 && !roll) {
		return "", nil
	}
	if s.cfg.Box == nil {
		return "", ErrNoKey
	}
	secret := policy.NewSigningSecret()
	t.SigningSecret = s.cfg.Box.Seal(t.ID, []byte(secret))
	return secret, nil
}
