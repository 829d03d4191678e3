package policy

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
)

// DenyCodes lists every deny reason, for metrics that want a series each.
func DenyCodes() []Code {
	return []Code{
		CodeTokenMissing, CodeTokenMalformed, CodeTokenUnknown, CodeTokenDisabled, CodeTokenExpired,
		CodeTokenConflict, CodeSecretTokenInBrowser, CodeIPDenied, CodeRefererDenied, CodeAPIDenied,
		CodeTierDenied, CodeDatasetDenied, CodeSourceDenied,
	}
}

// Unauthenticated reports whether the code means the caller did not prove
// who it is (HTTP 401), as opposed to being refused what it asked (403).
func (c Code) Unauthenticated() bool {
	switch c {
	case CodeTokenMissing, CodeTokenMalformed, CodeTokenUnknown, CodeTokenDisabled, CodeTokenExpired, CodeTokenConflict:
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
}

func deny(code Code, msg string) Decision { return Decision{Code: code, Message: msg} }
