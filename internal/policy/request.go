package policy

import "net/netip"

// Tier is the class of data a request reads.
type Tier uint8

// Tiers. A request that names no tier reads no tiered data.
const (
	TierNone Tier = iota
	TierCore
	TierPremium
)

// ParseTier parses "core" or "premium"; "" is TierNone.
func ParseTier(s string) (Tier, bool) {
	switch s {
	case "":
		return TierNone, true
	case "core":
		return TierCore, true
	case "premium":
		return TierPremium, true
	}
	return TierNone, false
}

// String returns the tier's name.
func (t Tier) String() string {
	switch t {
	case TierCore:
		return "core"
	case TierPremium:
		return "premium"
	}
	return ""
}

// Request is what a decision looks at, already lifted out of the transport's
// encoding. Only Token is required; empty fields are not checked.
type Request struct {
	// Token is the token value the request carried, "" if none.
	Token string
	// TokenConflict is set when the request carried two different tokens.
	TokenConflict bool
	// IP is the caller's address; invalid when it could not be determined.
	IP netip.Addr
	// Referer and Origin are the raw header values.
	Referer, Origin string
	// FromBrowser is set when the request bears a browser's marks (an
	// Origin, Referer or Sec-Fetch-Site header).
	FromBrowser bool
	// API, Dataset, Connection and Source name what the request uses.
	API, Dataset, Connection, Source string
	// Tier is the class of data read.
	Tier Tier
	// Action is what the request does to its dataset or source.
	Action Action
	// Cost is the credits the request spends when allowed.
	Cost int64
	// SourceUnseen is set when the source may be in a part of the request
	// Tollgate is not shown (a body): only a grant on all of the
	// connection's sources can then allow it.
	SourceUnseen bool

	// What a signature covers, read only for tokens that require one.
	Method, Path, RawQuery string
	// Authorization is the raw Authorization header.
	Authorization string
	// Headers gives the request's headers, by lower-case name.
	Headers Headers
	// Body is the request body, when Envoy sent it (HasBody); Partial is set
	// when Envoy sent only its start.
	Body             []byte
	HasBody, Partial bool
}

// Headers reads request headers.
type Headers interface {
	// Get returns the value of the header with the lower-case name, or "".
	Get(name string) string
}
