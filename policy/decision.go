package policy

import "time"

// Deny reasons. Each is stable: it appears in deny bodies, logs and metric
// labels, and clients match on it.
const (
	CodeTokenMissing         Code = "token_missing"
	CodeTokenMalformed       Code = "token_malformed"
	CodeTokenUnknown         Code = "token_unknown"
	CodeTokenDisabled        Code = "token_disabled"
	CodeTokenExpired         Code = "token_expired"
	CodeTokenConflict        Code = "token_conflict"
	CodeSecretTokenInBrowser Code = "secret_token_in_browser"
	CodeIPDenied             Code = "ip_denied"
	CodeRefererDenied        Code = "referer_denied"
	CodeAPIDenied            Code = "api_denied"
	CodeTierDenied           Code = "tier_denied"
	CodeDatasetDenied        Code = "dataset_denied"
	CodeSourceDenied         Code = "source_denied"
	CodeCreditsExhausted     Code = "credits_exhausted"
	CodeQuotaExhausted       Code = "quota_exhausted"
	CodeRateLimited          Code = "rate_limited"
	CodeSignatureRequired    Code = "signature_required"
	CodeSignatureInvalid     Code = "signature_invalid"
	CodeSignatureExpired     Code = "signature_expired"
	CodeSignatureReplayed    Code = "signature_replayed"
	// CodeReplayUnverifiable refuses a signed request that Tollgate cannot
	// remember, so could not refuse again if it were replayed: the token's
	// share of the replay memory, or all of it, is full until the oldest
	// signatures expire, or the replay store failed.
	CodeReplayUnverifiable Code = "signature_replay_unverifiable"
	// Codes for requests Tollgate cannot read the way the upstream would.
	CodeRouteUnmatched     Code = "route_unmatched"
	CodeRouteMisconfigured Code = "route_misconfigured"
	CodeMethodUnknown      Code = "method_unknown"
	CodePathInvalid        Code = "path_invalid"
	CodeQueryInvalid       Code = "query_invalid"
	CodeParamRepeated      Code = "param_repeated"
	CodeRequestInvalid     Code = "request_invalid"
	CodeSourceUnseen       Code = "source_unseen"
)

// DenyCodes lists every deny reason, for metrics that want a series each.
func DenyCodes() []Code {
	return []Code{
		CodeTokenMissing, CodeTokenMalformed, CodeTokenUnknown, CodeTokenDisabled, CodeTokenExpired,
		CodeTokenConflict, CodeSecretTokenInBrowser, CodeIPDenied, CodeRefererDenied, CodeAPIDenied,
		CodeTierDenied, CodeDatasetDenied, CodeSourceDenied, CodeCreditsExhausted, CodeQuotaExhausted,
		CodeRateLimited, CodeSignatureRequired, CodeSignatureInvalid, CodeSignatureExpired, CodeSignatureReplayed,
		CodeReplayUnverifiable,
		CodeRouteUnmatched, CodeRouteMisconfigured, CodeMethodUnknown, CodePathInvalid, CodeQueryInvalid,
		CodeParamRepeated, CodeRequestInvalid, CodeSourceUnseen,
	}
}

// Status returns the HTTP status that goes with a deny code: 400 when the
// request cannot be read unambiguously, 401 when the caller did not prove
// who it is, 402 when it ran out of credits, 429 when it is going too
// fast (or its signatures cannot all be remembered: the remedy is the
// same, wait and send a freshly signed request), 500 when the operator's
// route configuration is unusable, 403
// otherwise.
func (c Code) Status() int {
	switch {
	case c == CodePathInvalid || c == CodeQueryInvalid || c == CodeParamRepeated || c == CodeRequestInvalid:
		return 400
	case c == CodeRouteMisconfigured:
		return 500
	case c.Unauthenticated():
		return 401
	case c == CodeCreditsExhausted || c == CodeQuotaExhausted:
		return 402
	case c == CodeRateLimited || c == CodeReplayUnverifiable:
		return 429
	}
	return 403
}

// Unauthenticated reports whether the code means the caller did not prove
// who it is (HTTP 401), as opposed to being refused what it asked (403).
func (c Code) Unauthenticated() bool {
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
	Code Code
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

func deny(code Code, msg string) Decision { return Decision{Code: code, Message: msg} }
