package policy

import "time"

// DailyUsage is one token's usage on one day (UTC).
type DailyUsage struct {
	TokenID   string           `json:"token_id"`
	AccountID string           `json:"account_id"`
	Day       string           `json:"day"` // YYYY-MM-DD
	Requests  int64            `json:"requests"`
	Credits   int64            `json:"credits"`
	Denials   map[string]int64 `json:"denials"` // by deny code
	LastUsed  time.Time        `json:"-"`       // of the batch: moves tokens.last_used_at
}
