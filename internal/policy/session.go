package policy

import "time"

// Session is a signed-in console session.
type Session struct {
	UserID    string    `db:"user_id"`
	CSRF      string    `db:"csrf"`
	ExpiresAt time.Time `db:"expires_at"`
}

// SignInKey names what a sign-in attempt limit counts: an email or a
// client address. Stores keep only its SHA-256.
type SignInKey struct {
	Scope string // "email" or "ip"
	Value string
}

// AuditEntry is one change, as the audit log keeps it.
type AuditEntry struct {
	ID        int64     `db:"id" json:"id"`
	AccountID string    `db:"account_id" json:"account_id"`
	Actor     string    `db:"actor" json:"actor"`
	Action    string    `db:"action" json:"action"`
	Target    string    `db:"target" json:"target"`
	IP        string    `db:"ip" json:"ip"`
	Details   string    `db:"details" json:"-"`
	At        time.Time `db:"at" json:"at"`
}
