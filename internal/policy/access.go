package policy

import (
	"fmt"
	"time"
)

// Principal is who a management action acts for: a signed-in user, the
// account's secret token, or the operator at the command line. The
// permission rules below are plain functions of it, so every front end (the
// CLI, the Tokens API, any later API) asks the same questions.
type Principal struct {
	AccountID string
	// UserID is the signed-in user; "" when a token or the operator acts.
	UserID string
	// TokenID is the secret token the principal authenticated with, if any.
	TokenID string
	// Admin is an account admin (the secret token counts as one).
	Admin bool
	// Operator is the trusted operator (the CLI, with the store's own
	// credentials): every account, every action, no lock-out guard.
	Operator bool
	// Request is the request as Check's policy saw it, when the secret
	// token acts: a change to that token must still allow it.
	Request *Request
}

// OperatorPrincipal is the operator: it may do everything.
func OperatorPrincipal() Principal { return Principal{Operator: true} }

// CanSee reports whether p may see the token: admins every token of the
// account, members their own.
func CanSee(p Principal, t *Token) bool {
	if p.Operator {
		return true
	}
	return t.AccountID == p.AccountID && (p.Admin || (p.UserID != "" && t.UserID == p.UserID))
}

// ListedOwner is whose tokens p sees in a list of its account's: "" for
// every token (admins, the account's secret token), else its user's own.
func ListedOwner(p Principal) string {
	if p.Admin || p.UserID == "" {
		return ""
	}
	return p.UserID
}

// CanManage reports whether p may do everything with the token (change
// any field, roll it, see a new value): its owner may, and admins may for
// tokens that belong to no one.
func CanManage(p Principal, t *Token) bool {
	switch {
	case p.Operator:
		return true
	case !CanSee(p, t):
		return false
	case t.UserID != "":
		return t.UserID == p.UserID
	}
	return p.Admin
}

// CanToggle reports whether p may enable or disable the token: whoever
// manages it, and admins for any token of the account.
func CanToggle(p Principal, t *Token) bool {
	return CanManage(p, t) || (CanSee(p, t) && p.Admin)
}

// CanDelete reports whether p may delete the token: whoever manages it, and
// admins for any token of the account. Deleting the secret token is
// further held by CanDeleteSecret.
func CanDelete(p Principal, t *Token) bool { return CanToggle(p, t) }

// CanCreate reports whether p may make a token of this kind in the
// account: only admins make secret tokens.
func CanCreate(p Principal, accountID string, k Kind) bool {
	if p.Operator {
		return true
	}
	return accountID == p.AccountID && (k != Secret || p.Admin)
}

// CanOwn reports whether p may name a token's owner (the user_id it
// belongs to): only the operator; everyone else owns what they make.
func CanOwn(p Principal) bool { return p.Operator }

// CanSeeUsers reports whether p may list the account's users: anyone in it.
func CanSeeUsers(p Principal, accountID string) bool {
	return p.Operator || accountID == p.AccountID
}

// CanManageUsers reports whether p may add or remove the account's users:
// its admins.
func CanManageUsers(p Principal, accountID string) bool {
	return p.Operator || (p.Admin && accountID == p.AccountID)
}

// StillManagesUsers reports whether p may still manage the account's
// users as account (every user of it, read under the users' lock) has
// them. A principal's Admin was read when its request began; a user
// demoted since is no longer one. The operator and a secret token hold
// their standing outside the users table.
func StillManagesUsers(p Principal, account []User) bool {
	if p.Operator || p.UserID == "" {
		return p.Operator || p.Admin
	}
	for _, u := range account {
		if u.ID == p.UserID {
			return u.Role == RoleAdmin
		}
	}
	return false
}

// Admins counts the admins among users.
func Admins(users []User) int {
	n := 0
	for _, u := range users {
		if u.Role == RoleAdmin {
			n++
		}
	}
	return n
}

// CanReadAudit reports whether p may read the account's audit log: its
// admins.
func CanReadAudit(p Principal, accountID string) bool { return CanManageUsers(p, accountID) }

// CanReveal reports whether p may see the token's value again: whoever
// may see the token, for a publishable token only. Publishable values are
// public by design (they ship in web pages and apps), so an admin who sees
// a teammate's token may copy it; a secret token's value is shown once and
// kept only as a hash.
func CanReveal(p Principal, t *Token) bool { return CanSee(p, t) && t.Kind == Publishable }

// CanSetPassword reports whether p may set u's password: u themselves,
// signed in (the secret token is no one's session).
func CanSetPassword(p Principal, u *User) bool { return p.UserID != "" && p.UserID == u.ID }

// CanChangeRole reports whether p may change u's role: the account's
// admins. CheckLastAdmin further holds the change.
func CanChangeRole(p Principal, u *User) bool { return CanManageUsers(p, u.AccountID) }

// ErrLastAdmin refuses what would leave an account without an admin, who
// alone can add teammates and read the audit log.
var ErrLastAdmin = &Error{Code: EConflict, Field: "role",
	Message: "this is the account's only admin: make another teammate an admin first"}

// CheckLastAdmin refuses giving u the role when u is the last of the
// account's admins admins and the role is not admin.
func CheckLastAdmin(u *User, role Role, admins int) error {
	if u.Role == RoleAdmin && role != RoleAdmin && admins <= 1 {
		return ErrLastAdmin
	}
	return nil
}

// ErrLastAdminRemoval refuses removing an account's only admin.
var ErrLastAdminRemoval = &Error{Code: EConflict,
	Message: "this is the account's only admin: make another teammate an admin before removing them"}

// CheckRemoveUser refuses removing u from the account when u is the last
// of its admins admins: the same rule as CheckLastAdmin, for a removal.
func CheckRemoveUser(u *User, admins int) error {
	if CheckLastAdmin(u, "", admins) != nil {
		return ErrLastAdminRemoval
	}
	return nil
}

// ErrSecretLockout refuses what would leave an account without its secret
// token.
var ErrSecretLockout = &Error{Code: EConflict,
	Message: "the account's secret token cannot be disabled or deleted through the API (that would lock the account out); roll it instead"}

// CanDeleteSecret reports whether p may delete the account's secret token
// (which would lock the account out): only the operator.
func CanDeleteSecret(p Principal) bool { return p.Operator }

// CheckLockout refuses a change to the account's secret token t that
// would leave it unusable, wasEnabled being its state before the change.
// Disabling and an expiry that has passed are refused whoever asks but the
// operator. When the token changes itself, its new policy must still allow
// the request making the change (p.Request): an IP list that leaves the
// caller out, or domains a server cannot send, would lock it out. The
// signature is left out of that check: switching signing on returns the
// new signing secret, so the caller can sign from the next request on.
func CheckLockout(p Principal, t *Token, wasEnabled bool, now time.Time, opt EvalOptions) error {
	if p.Operator || t.Kind != Secret {
		return nil
	}
	if wasEnabled && !t.Enabled {
		return ErrSecretLockout
	}
	if t.ExpiresAt != nil && !t.ExpiresAt.After(now) {
		return &Error{Code: EConflict, Field: "expires_at",
			Message: "the account's secret token cannot be given an expiry that has passed (that would lock the account out)"}
	}
	if len(t.Domains) > 0 && !opt.AllowSecretInBrowser {
		return &Error{Code: EConflict, Field: "allowed_domains",
			Message: "a secret token is refused whenever a request bears a browser's marks (Referer, Origin), so allowed domains would make it unusable"}
	}
	if p.TokenID != t.ID || p.Request == nil {
		return nil
	}
	probe := *t
	probe.Signed, probe.SigningSecret = false, nil
	pol, err := Compile(&probe, &Account{ID: t.AccountID}, nil)
	if err != nil {
		return fmt.Errorf("compile token %s: %w", t.ID, err)
	}
	if d := pol.Evaluate(p.Request, now, opt); !d.Allow {
		return &Error{Code: EConflict, Message: "this change would lock the account's secret token out of this API (the request making it would be denied: " +
			string(d.Code) + "); make it from a console session, or from an address the new settings allow"}
	}
	return nil
}
