package extauthz

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/tollgate/tollgate/internal/policy"
)

// ResponseProfile is the dialect Tollgate answers callers in: how a deny
// reads (status, content type, body) and what the usage headers are
// called. Both front ends, Check and the HTTP endpoint, answer through it;
// the decision is the same whatever the profile.
type ResponseProfile uint8

// The response profiles.
const (
	// ProfileTollgate answers with Tollgate's JSON errors and statuses
	// (DenyStatus) and its own credit header names.
	ProfileTollgate ResponseProfile = iota
	// ProfileIEX answers as IEX Cloud did: its statuses, its plain-text
	// messages and its iexcloud-*-used headers, for clients written
	// against IEX Cloud (docs/responses.md).
	ProfileIEX
)

// ParseResponseProfile parses "tollgate" or "iex"; "" is ProfileTollgate.
func ParseResponseProfile(s string) (ResponseProfile, error) {
	switch s {
	case "", "tollgate":
		return ProfileTollgate, nil
	case "iex":
		return ProfileIEX, nil
	}
	return 0, fmt.Errorf("response profile %q: want tollgate or iex", s)
}

func (p ResponseProfile) String() string {
	if p == ProfileIEX {
		return "iex"
	}
	return "tollgate"
}

// denial is a deny as the caller receives it.
type denial struct {
	status      int
	contentType string
	body        string
}

const (
	contentJSON = "application/json"
	contentText = "text/plain; charset=utf-8"
)

// deny is the answer to a denied decision.
func (p ResponseProfile) deny(d policy.Decision) denial {
	if p == ProfileIEX {
		a := iexAnswerTo(d.Code)
		return denial{status: a.status, contentType: contentText, body: a.message}
	}
	body, _ := json.Marshal(errorBody{Error: errorDetail{Code: d.Code, Message: d.Message}})
	return denial{status: DenyStatus(d.Code), contentType: contentJSON, body: string(body)}
}

// unavailable is the answer when Tollgate could not decide, with status
// 500 or 503: only the HTTP endpoint writes one (Check returns a gRPC
// error, and Envoy's failure_mode_allow decides).
func (p ResponseProfile) unavailable(status int) denial {
	if p == ProfileIEX {
		return denial{status: status, contentType: contentText, body: iexUnavailable}
	}
	body, _ := json.Marshal(errorBody{Error: errorDetail{Code: "unavailable", Message: "tollgate cannot decide now; retry"}})
	return denial{status: status, contentType: contentJSON, body: string(body)}
}

// usageNames are the header names one answer reports usage under; ""
// leaves a header out.
type usageNames struct {
	used, limit, remaining string
	// cost names the headers carrying the request's own cost: IEX Cloud
	// sent it twice, under the older "messages" name and the newer
	// "credits" one.
	cost [2]string
}

// usageNames names the usage headers of an answer to a request of tier.
// IEX Cloud reported only what the request itself cost, premium data
// under names of its own; the period's totals keep Tollgate's names,
// which IEX clients ignore.
func (p ResponseProfile) usageNames(base CreditHeaders, tier policy.Tier) usageNames {
	n := usageNames{used: base.Used, limit: base.Limit, remaining: base.Remaining, cost: [2]string{base.Cost}}
	if p == ProfileIEX {
		n.cost = [2]string{"iexcloud-messages-used", "iexcloud-credits-used"}
		if tier == policy.TierPremium {
			n.cost = [2]string{"iexcloud-premium-messages-used", "iexcloud-premium-credits-used"}
		}
	}
	return n
}

// count is how many usage headers a metered answer carries, limited when
// a credit limit applies (so the limit and what remains are sent too).
func (n usageNames) count(limited bool) int {
	c := 1
	for _, name := range n.cost {
		if name != "" {
			c++
		}
	}
	if limited {
		c += 2
	}
	return c
}

// iexAnswer is a deny as IEX Cloud wrote it: a status and a plain-text
// message.
type iexAnswer struct {
	status  int
	message string
}

// iexUnavailable is the IEX profile's body when Tollgate cannot decide.
// IEX Cloud's own 500 said "Something went wrong on an IEX Cloud server.";
// this is not an IEX Cloud server.
const iexUnavailable = "Something went wrong on the server. Retry later."

// iexDenied answers a code iexAnswers lacks: a code added to policy
// without an entry here is still a deny, never a crash or an allow.
// TestIEXAnswers fails until the entry is written.
var iexDenied = iexAnswer{http.StatusForbidden, "Forbidden"}

// The messages IEX Cloud documented or sent, quoted as they were; where
// they came from is in docs/responses.md.
const (
	iexNoKey         = "An API key is required to access the requested endpoint."
	iexInvalidKey    = "The API key provided is not valid."
	iexDisabledKey   = "The provided API token has been disabled"
	iexDeniedReferer = "The referer in the request header is not allowed. Please check the associated domain(s) for this API key"
	iexRestricted    = "The requested data is marked restricted and the account does not have access."
	iexTierNotAllow  = "The requested data is not available to your current tier."
	iexOverLimit     = "You have exceeded your allotted message quota and pay-as-you-go is not enabled."
	iexTooMany       = "Too many requests hit the API too quickly. An exponential backoff of your requests is recommended."
	iexHashRequired  = "Hashed token authorization is required"
	iexHashInvalid   = "Hashed token authorization is invalid."
	iexBadValues     = "Invalid values were supplied for the API request"
)

// iexAnswers is the IEX profile's table from deny codes to answers. A code
// IEX Cloud had an answer for gets IEX's status and text; one it had not
// gets the status of its nearest IEX answer, else Tollgate's, and a
// message written here in IEX's plain style. Every message is one line
// of text: the nginx dialect carries it in a header.
var iexAnswers = map[policy.DenyCode]iexAnswer{
	policy.CodeTokenMissing:   {http.StatusUnauthorized, iexNoKey},
	policy.CodeTokenMalformed: {http.StatusForbidden, iexInvalidKey},
	policy.CodeTokenUnknown:   {http.StatusForbidden, iexInvalidKey},
	policy.CodeTokenDisabled:  {http.StatusForbidden, iexDisabledKey},
	policy.CodeTokenExpired:   {http.StatusForbidden, "The provided API token has expired."},
	policy.CodeTokenConflict:  {http.StatusUnauthorized, "More than one API token was provided. Send one."},

	policy.CodeSecretTokenInBrowser: {http.StatusForbidden, "A secret API token may not be used from a browser. Use a publishable token."},
	policy.CodeIPDenied:             {http.StatusUnauthorized, "The request's IP address is not allowed due to API token restrictions."},
	policy.CodeRefererDenied:        {http.StatusUnauthorized, iexDeniedReferer},
	policy.CodeAPIDenied:            {http.StatusUnauthorized, iexRestricted},
	policy.CodeDatasetDenied:        {http.StatusUnauthorized, iexRestricted},
	policy.CodeSourceDenied:         {http.StatusUnauthorized, iexRestricted},
	policy.CodeSourceUnseen:         {http.StatusForbidden, "The query must be sent in the q parameter of a GET request."},
	policy.CodeTierDenied:           {http.StatusPaymentRequired, iexTierNotAllow},

	policy.CodeCreditsExhausted: {http.StatusPaymentRequired, iexOverLimit},
	policy.CodeQuotaExhausted:   {http.StatusPaymentRequired, iexOverLimit},
	policy.CodeRateLimited:      {http.StatusTooManyRequests, iexTooMany},

	policy.CodeSignatureRequired:  {http.StatusUnauthorized, iexHashRequired},
	policy.CodeSignatureInvalid:   {http.StatusForbidden, iexHashInvalid},
	policy.CodeSignatureExpired:   {http.StatusForbidden, "The signed request's date is too far from the server's time. Sign it again."},
	policy.CodeSignatureReplayed:  {http.StatusForbidden, "This signed request was already used. Sign each request once."},
	policy.CodeReplayUnverifiable: {http.StatusTooManyRequests, "Too many signed requests to verify now. Retry later with a newly signed request."},

	policy.CodeRouteUnmatched:     {http.StatusForbidden, "No route is configured for the requested endpoint."},
	policy.CodeRouteMisconfigured: {http.StatusInternalServerError, iexUnavailable},
	policy.CodeMethodUnknown:      {http.StatusBadRequest, iexBadValues},
	policy.CodePathInvalid:        {http.StatusBadRequest, iexBadValues},
	policy.CodeQueryInvalid:       {http.StatusBadRequest, iexBadValues},
	policy.CodeParamRepeated:      {http.StatusBadRequest, iexBadValues},
	policy.CodeRequestInvalid:     {http.StatusBadRequest, iexBadValues},
}

// iexAnswerTo returns the IEX profile's answer to code.
func iexAnswerTo(code policy.DenyCode) iexAnswer {
	if a, ok := iexAnswers[code]; ok {
		return a
	}
	return iexDenied
}
