package policy

import (
	"encoding/json"
	"time"
)

// FlagKind is a kind of unusual usage.
type FlagKind string

// The kinds of unusual usage Tollgate flags on a token.
const (
	// FlagSpike: far more requests than the token's own recent baseline.
	FlagSpike FlagKind = "spike"
	// FlagDenials: a burst of denials of one kind (say referer_denied:
	// someone using a copied publishable token from their own site).
	FlagDenials FlagKind = "denials"
	// FlagNewNetwork and FlagNewSite: traffic from a network range, or a
	// site (Referer/Origin host), never seen for the token before.
	FlagNewNetwork FlagKind = "new_network"
	FlagNewSite    FlagKind = "new_site"
	// FlagSecretInBrowser: a secret token sent from a browser.
	FlagSecretInBrowser FlagKind = "secret_in_browser"
)

// MinuteUsage is what one replica counted for one token in one minute.
type MinuteUsage struct {
	TokenID, AccountID string
	Minute             time.Time // truncated to the minute, UTC
	// Requests allowed; Denied, every denial; SecretBrowser, requests of a
	// secret token that bore a browser's marks.
	Requests, Denied, SecretBrowser int64
	// Denials by code.
	Denials map[DenyCode]int64
	// Networks and Sites seen: "203.0.113.0/24", "2001:db8:1::/48";
	// "app.example.com".
	Networks, Sites []string
}

// TokenWindow is a token's fleet-wide usage over a detection window and
// the baseline before it, as the store sums it.
type TokenWindow struct {
	TokenID, AccountID string
	Kind               Kind
	CreatedAt          time.Time
	// Requests allowed in the window; Baseline in the baseline span
	// before it.
	Requests, Baseline int64
	// Denied in the window, all codes; Denials by code.
	Denied  int64
	Denials map[DenyCode]int64
	// SecretBrowser counts a secret token's requests from a browser.
	SecretBrowser int64
	// NewNetworks and NewSites were first seen in the window, for a token
	// seen before the learning period (none while it is still learning).
	NewNetworks, NewSites []string
}

// Flag is unusual usage of a token, open until someone resolves it.
type Flag struct {
	ID        int64           `json:"id"`
	TokenID   string          `json:"token_id"`
	AccountID string          `json:"account_id"`
	Kind      FlagKind        `json:"kind"`
	Evidence  json.RawMessage `json:"evidence"`
	OpenedAt  time.Time       `json:"opened_at"`
	// SeenAt is the last detection run that still saw it.
	SeenAt     time.Time  `json:"seen_at"`
	ResolvedAt *time.Time `json:"resolved_at,omitempty"`
	ResolvedBy string     `json:"resolved_by,omitempty"`
}
