package policy

import "time"

// DenyCode is why a request was denied. Each is stable: it appears in deny
// bodies, logs and metric labels, and clients match on it. It is a type of
// its own, apart from the error Code, because a deny is an answer and an
// error is a failure to answer; each front end maps deny codes to statuses
// in a table of its own.
type DenyCode string

// Deny reasons.
const (
	CodeTokenMissing         DenyCode = "token_missing"
	CodeTokenMalformed       DenyCode = "token_malformed"
	CodeTokenUnknown         DenyCode = "token_unknown"
	CodeTokenDisabled        DenyCode = "token_disabled"
	CodeTokenExpired         DenyCode = "token_expired"
	CodeTokenConflict        DenyCode = "token_conflict"
	CodeSecretTokenInBrowser DenyCode = "secret_token_in_browser"
	CodeIPDenied             DenyCode = "ip_denied"
	CodeRefererDenied        DenyCode = "referer_denied"
	CodeAPIDenied            DenyCode = "api_denied"
	CodeTierDenied           DenyCode = "tier_denied"
	CodeDatasetDenied        DenyCode = "dataset_denied"
	CodeSourceDenied         DenyCode = "source_denied"
	CodeCreditsExhausted     DenyCode = "credits_exhausted"
	CodeQuotaExhausted       DenyCode = "quota_exhausted"
	CodeRateLimited          DenyCode = "rate_limited"
	CodeSignatureRequired    DenyCode = "signature_required"
	CodeSignatureInvalid     DenyCode = "signature_invalid"
	CodeSignatureExpired     DenyCode = "signature_expired"
	CodeSignatureReplayed    DenyCode = "signature_replayed"
	// CodeReplayUnverifiable refuses a signed request that Tollgate cannot
	// remember, so could not refuse again if it were replayed: the token's
	// share of the replay memory, or all of it, is full until the oldest
	// signatures expire, or the replay store failed.
	CodeReplayUnverifiable DenyCode = "signature_replay_unverifiable"
	// Codes for requests Tollgate cannot read the way the upstream would.
	CodeRouteUnmatched     DenyCode = "route_unmatched"
	CodeRouteMisconfigured DenyCode = "route_misconfigured"
	CodeMethodUnknown      DenyCode = "method_unknown"
	CodePathInvalid        DenyCode = "path_invalid"
	CodeQueryInvalid       DenyCode = "query_invalid"
	CodeParamRepeated      DenyCode = "param_repeated"
	CodeRequestInvalid     DenyCode = "request_invalid"
	CodeSourceUnseen       DenyCode = "source_unseen"
)

// DenyCodes lists every deny reason, for metrics that want a series each.
func DenyCodes() []DenyCode {
	return []DenyCode{
		CodeTokenMissing, CodeTokenMalformed, CodeTokenUnknown, CodeTokenDisabled, CodeTokenExpired,
		CodeTokenConflict, CodeSecretTokenInBrowser, CodeIPDenied, CodeRefererDenied, CodeAPIDenied,
		CodeTierDenied, CodeDatasetDenied, CodeSourceDenied, CodeCreditsExhausted, CodeQuotaExhausted,
		CodeRateLimited, CodeSignatureRequired, CodeSignatureInvalid, CodeSignatureExpired, CodeSignatureReplayed,
		CodeReplayUnverifiable,
		CodeRouteUnmatched, CodeRouteMisconfigured, CodeMethodUnknown, CodePathInvalid, CodeQueryInvalid,
		CodeParamRepeated, CodeRequestInvalid, CodeSourceUnseen,
	}
}

// Unauthenticated reports whether the code means the caller did not prove
// who it is, as opposed to being refused what it asked.
func (c DenyCode) Unauthenticated() bool {
	switch c {
	case CodeTokenMissing, CodeTokenMalformed, CodeTokenUnknown, CodeTokenDisabled, CodeTokenExpired, CodeTokenConflict,
		CodeSignatureRequired, CodeSignatureInvalid, CodeSignatureExpired, CodeSignatureReplayed:
		return true
	}
	return false
}

// Decision is the answer to a Request.
type Decision struct {
	Allow bool
	// Code is the reason for a deny; "" when allowed.
	Code DenyCode
	// Message tells a developer what to fix. It never contains a token.
	Message string
	// Who asked, when the token was recognised.
	TokenID, AccountID string
	Kind               Kind
	// Cost is the credits an allowed request spends.
	Cost int64
	// Rate and AccountRate are the token's and its account's rate limits
	// (zero when none), for a rate-limit service in front of the upstream
	// to enforce them too (Envoy's, through the dynamic metadata).
	Rate, AccountRate RateLimit
	// Usage is where the token stands, when a Meter counted the request.
	Usage Usage
	// CacheMiss is set when the token's policy was not in the cache and
	// the store was asked (or a question in flight was joined), for traces.
	CacheMiss bool
	// signed is the verified signature of an allowed signed request, for
	// the Decider to remember.
	signed signed
}

// Usage tells a caller where it stands: credits this period and, when it
// is rate limited, when to come back.
type Usage struct {
	// Metered is set when the fields below were filled in.
	Metered bool
	// Used is the credits spent this period, after this request.
	Used int64
	// Limit is the limit that applies (the token's, else the account's);
	// -1 when none does.
	Limit int64
	// RateRPS and RateBurst describe the token's rate limit; 0 when none.
	RateRPS, RateBurst int64
	// RateRemaining is the requests that may still be made at once.
	RateRemaining int64
	// RetryAfter is how long to wait, for a rate-limited request.
	RetryAfter time.Duration
}

// Remaining returns the credits left under Limit, if a limit applies.
func (u Usage) Remaining() (int64, bool) {
	if u.Limit < 0 {
		return 0, false
	}
	return max(u.Limit-u.Used, 0), true
}

func deny(code DenyCode, msg string) Decision { return Decision{Code: code, Message: msg} }
