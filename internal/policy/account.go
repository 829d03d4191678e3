package policy

import (
	"net/mail"
	"strings"
	"time"
)

// Account is a customer workspace: it owns users and tokens and is billed
// for their usage.
type Account struct {
	ID   string `json:"id" db:"id"`
	Name string `json:"name" db:"name"`
	// Premium says whether the account subscribes to premium data. A token's
	// premium flag has effect only when this is set.
	Premium bool `json:"premium" db:"premium"`
	// CreditQuota caps the credits the whole account may spend per period;
	// nil means no cap.
	CreditQuota *int64 `json:"credit_quota" db:"credit_quota"`
	// RateLimit caps the requests of all the account's tokens together,
	// beside each token's own; nil means no cap.
	RateLimit *RateLimit `json:"rate_limit" db:"-"`
	CreatedAt time.Time  `json:"created_at" db:"created_at"`
	UpdatedAt time.Time  `json:"updated_at" db:"updated_at"`
}

// Validate checks every field and returns an *Error naming the first bad one.
func (a *Account) Validate() error {
	a.Name = strings.TrimSpace(a.Name)
	switch {
	case a.Name == "":
		return fieldError("name", "Give the account a name.")
	case len(a.Name) > 200:
		return fieldError("name", "The account name must be at most 200 characters.")
	case a.CreditQuota != nil && *a.CreditQuota < 0:
		return fieldError("credit_quota", "The credit quota must not be negative.")
	}
	return a.RateLimit.validate()
}

// Role is what a user may do in an account.
type Role string

// Roles.
const (
	RoleAdmin  Role = "admin"  // manages every token and teammate of the account
	RoleMember Role = "member" // manages only the tokens they made
)

// User is a teammate in an account.
type User struct {
	ID        string `json:"id" db:"id"`
	AccountID string `json:"account_id" db:"account_id"`
	Email     string `json:"email" db:"email"`
	Role      Role   `json:"role" db:"role"`
	// PasswordHash is a bcrypt hash; empty until the user sets a password.
	PasswordHash string    `json:"-" db:"password_hash"`
	CreatedAt    time.Time `json:"created_at" db:"created_at"`
}

// Validate checks every field and returns an *Error naming the first bad one.
func (u *User) Validate() error {
	u.Email = strings.ToLower(strings.TrimSpace(u.Email))
	if a, err := mail.ParseAddress(u.Email); err != nil || a.Address != u.Email {
		return fieldError("email", "%q is not an email address.", u.Email)
	}
	if u.Role != RoleAdmin && u.Role != RoleMember {
		return fieldError("role", "%q is not a role: choose admin or member.", u.Role)
	}
	return nil
}
