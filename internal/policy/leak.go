package policy

import "time"

// LeakAction is what Tollgate did about a reported leak of a token value.
type LeakAction string

// What a reported leak can lead to: the operator's policy picks, per kind
// of token, between disabling it, rolling it with no grace (the leaked
// value stops at once; the owner rolls again to see a new one) and only
// recording the report.
const (
	LeakDisabled        LeakAction = "disabled"
	LeakRolled          LeakAction = "rolled"
	LeakRecorded        LeakAction = "recorded"
	LeakAlreadyDisabled LeakAction = "already_disabled"
)

// Leak is one report of a token's value found in public, and what was done
// about it. The value itself is never kept.
type Leak struct {
	ID        int64      `json:"id"`
	TokenID   string     `json:"token_id"`
	AccountID string     `json:"account_id"`
	Reporter  string     `json:"reporter"`   // e.g. github
	TokenType string     `json:"token_type"` // the reporter's name for the pattern that matched
	URL       string     `json:"url"`        // where the value was found
	Source    string     `json:"source"`     // content, commit, gist, npm, …
	Action    LeakAction `json:"action"`
	At        time.Time  `json:"reported_at"`
}
