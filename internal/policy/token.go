package policy

import (
	"iter"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Token is an API token's record: who it belongs to, what it may do and the
// restrictions on where it may be used from. Its value is never stored in
// clear: a Hash and a display Prefix are, and for a publishable token a
// sealed copy when the server has an encryption key (ValueKept).
type Token struct {
	ID        string     `json:"id"`
	AccountID string     `json:"account_id"`
	UserID    string     `json:"user_id,omitempty"` // "" when no user owns it
	Kind      Kind       `json:"kind"`
	Nickname  string     `json:"nickname"`
	Prefix    string     `json:"prefix"`
	Enabled   bool       `json:"enabled"`
	ExpiresAt *time.Time `json:"expires_at"`
	Permissions
	Restrictions
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	// SigningSecret is the sealed (encrypted) signing secret of a token
	// that requires signed requests; never shown after it is made.
	SigningSecret []byte `json:"-"`
	// ValueKept reports that the store keeps the value sealed, so that it
	// can be shown again: publishable tokens made or rolled while the
	// server had an encryption key. Secret tokens never.
	ValueKept bool `json:"value_kept"`
	// PreviousExpiresAt is set after a roll with a grace period: the old
	// value works until then.
	PreviousExpiresAt *time.Time `json:"previous_token_expires_at,omitempty"`
	// KeyExpiresAt is the expiry of the value a look-up by hash found (a
	// rolled value in its grace period); nil for the current value.
	KeyExpiresAt *time.Time `json:"-"`
}

// Permissions is what a token may do. Secret tokens have every permission.
type Permissions struct {
	// Core allows reading core data.
	Core bool `json:"core"`
	// Premium allows premium data, if the account subscribes to it.
	Premium bool `json:"premium"`
	// Datasets maps a dataset name or wildcard pattern ("sales.*") to the
	// actions allowed on it. A request may act on a dataset when any
	// matching pattern allows the action.
	Datasets map[string]Actions `json:"datasets"`
	// APIs lists the APIs the token may call; empty means every API but
	// import, which must be granted alone.
	APIs []string `json:"allowed_apis"`
	// Grants lists the sources of connections the token may use.
	Grants []Grant `json:"grants"`
}

// Restrictions narrow where and how often a token may be used.
type Restrictions struct {
	// Domains lists allowed Referer/Origin patterns; empty means any.
	Domains []string `json:"allowed_domains"`
	// IPs lists allowed caller ranges in CIDR form; empty means any.
	IPs []string `json:"allowed_ips"`
	// Signed requires every request to carry an HMAC signature.
	Signed bool `json:"signed_requests"`
	// CreditLimit caps the credits the token may spend per period; nil
	// means no cap beyond the account's quota.
	CreditLimit *int64 `json:"credit_limit"`
	// RateLimit caps the token's request rate; nil means no cap.
	RateLimit *RateLimit `json:"rate_limit"`
}

// RateLimit is a token bucket: RPS requests per second on average, up to
// Burst at once.
type RateLimit struct {
	RPS   int64 `json:"rps"`
	Burst int64 `json:"burst"`
}

// Limits on list sizes keep a token's policy small enough to cache a million
// of them and to evaluate in microseconds.
const (
	maxListLen     = 100
	maxNicknameLen = 100
	// maxWildcardBytes bounds the wildcard patterns of one list (datasets,
	// table grants): 100 patterns of 20 bytes, or fewer longer ones.
	maxWildcardBytes = 2 << 10
)

// NewToken returns a token of the given kind with the defaults a user
// expects: enabled, a generated nickname, core read for publishable tokens
// and every permission for secret ones.
func NewToken(accountID string, k Kind) *Token {
	t := &Token{
		ID:        NewID("tok"),
		AccountID: accountID,
		Kind:      k,
		Enabled:   true,
	}
	t.Nickname = "tk_" + t.ID[len("tok_"):len("tok_")+8]
	t.Core = true
	if k == Secret {
		t.Premium = true
	}
	return t
}

// Normalize validates every field and rewrites lists in canonical form
// (lower-cased APIs, canonical domain patterns and CIDRs, no duplicates). It
// returns an *Error naming the first field at fault; on error the token may
// be partly rewritten and must not be stored.
func (t *Token) Normalize() error {
	if t.Kind != Publishable && t.Kind != Secret {
		return fieldError("kind", "The kind must be publishable or secret.")
	}
	t.Nickname = strings.TrimSpace(t.Nickname)
	if err := checkText("nickname", "nickname", t.Nickname, maxNicknameLen); err != nil {
		return err
	}
	if t.Nickname == "" {
		return fieldError("nickname", "Give the token a nickname.")
	}
	if t.Kind == Secret {
		if len(t.Datasets) > 0 || len(t.APIs) > 0 || len(t.Grants) > 0 || !t.Core || !t.Premium {
			return fieldError("kind", "A secret token has full access to its account, so its permissions cannot be narrowed; use a publishable token for that.")
		}
	}
	if err := t.Permissions.normalize(); err != nil {
		return err
	}
	if !t.Signed {
		t.SigningSecret = nil
	} else if len(t.SigningSecret) == 0 {
		return fieldError("signed_requests", "Signed requests need a signing secret; switch them on through Tollgate, which makes one.")
	}
	return t.Restrictions.normalize()
}

func (p *Permissions) normalize() error {
	if p.Datasets == nil {
		p.Datasets = map[string]Actions{}
	}
	if len(p.Datasets) > maxListLen {
		return fieldError("datasets", "A token may name at most %d datasets.", maxListLen)
	}
	datasets := make(map[string]Actions, len(p.Datasets))
	for name, acts := range p.Datasets {
		if name == "" {
			return fieldError("datasets", "Give each dataset a name or a pattern such as sales.*.")
		}
		pattern, err := canonPattern(name)
		if err != nil {
			return fieldError("datasets", "The dataset %q %v.", name, err)
		}
		if acts == 0 || acts&^Actions(Read|Write|Delete) != 0 {
			return fieldError("datasets", "Choose at least one of read, write and delete for the dataset %q.", name)
		}
		// "a**" and "a*" are one pattern: keep the actions of both.
		datasets[pattern] |= acts
	}
	p.Datasets = datasets
	if n := wildcardBytes(maps.Keys(datasets)); n > maxWildcardBytes {
		return fieldError("datasets", "The dataset patterns with '*' may hold at most %d characters in all (these hold %d); name datasets outright, or use fewer or shorter patterns.", maxWildcardBytes, n)
	}
	if len(p.APIs) > maxListLen {
		return fieldError("allowed_apis", "A token may name at most %d APIs.", maxListLen)
	}
	if len(p.Grants) > maxListLen {
		return fieldError("grants", "A token may have at most %d grants.", maxListLen)
	}
	apis, err := normalizeAPIs(p.APIs)
	if err != nil {
		return err
	}
	p.APIs = apis
	grants := make([]Grant, 0, len(p.Grants))
	for _, g := range p.Grants {
		if err := g.normalize(); err != nil {
			return err
		}
		if !slices.Contains(grants, g) {
			grants = append(grants, g)
		}
	}
	p.Grants = grants
	tables := func(yield func(string) bool) {
		for _, g := range grants {
			if g.Type == GrantTable && !yield(g.Source) {
				return
			}
		}
	}
	if n := wildcardBytes(tables); n > maxWildcardBytes {
		return fieldError("grants", "The table patterns with '*' may hold at most %d characters in all (these hold %d); name tables outright, or use fewer or shorter patterns.", maxWildcardBytes, n)
	}
	return nil
}

// wildcardBytes returns the length of the patterns that hold a '*'. A
// check's matching work grows with it (literal names are compared whole),
// so it is capped per list at maxWildcardBytes.
func wildcardBytes(patterns iter.Seq[string]) int {
	n := 0
	for p := range patterns {
		if strings.IndexByte(p, '*') >= 0 {
			n += len(p)
		}
	}
	return n
}

func (r *Restrictions) normalize() error {
	if len(r.Domains) > maxListLen {
		return fieldError("allowed_domains", "A token may name at most %d domains.", maxListLen)
	}
	domains := make([]string, 0, len(r.Domains))
	for _, d := range r.Domains {
		p, err := ParseDomainPattern(strings.TrimSpace(d))
		if err != nil {
			return fieldError("allowed_domains", "%v", err)
		}
		if s := p.String(); !slices.Contains(domains, s) {
			domains = append(domains, s)
		}
	}
	r.Domains = domains
	if len(r.IPs) > maxListLen {
		return fieldError("allowed_ips", "A token may name at most %d IP addresses or ranges.", maxListLen)
	}
	set, err := ParseIPSet(r.IPs)
	if err != nil {
		return fieldError("allowed_ips", "%v", err)
	}
	r.IPs = make([]string, 0, set.Len())
	for _, s := range set.Strings() {
		if !slices.Contains(r.IPs, s) {
			r.IPs = append(r.IPs, s)
		}
	}
	if r.CreditLimit != nil && *r.CreditLimit < 0 {
		return fieldError("credit_limit", "The credit limit must not be negative.")
	}
	return r.RateLimit.validate()
}

// validate checks a token's or an account's rate limit (nil is none) and
// fills in the burst, which defaults to the rate.
func (rl *RateLimit) validate() error {
	if rl == nil {
		return nil
	}
	if rl.RPS < 1 || rl.RPS > 1_000_000 {
		return fieldError("rate_limit", "The rate must be from 1 to 1,000,000 requests per second.")
	}
	if rl.Burst == 0 {
		rl.Burst = rl.RPS
	}
	if rl.Burst < 1 || rl.Burst > 10_000_000 {
		return fieldError("rate_limit", "The burst must be from 1 to 10,000,000 requests.")
	}
	return nil
}

// checkText rejects over-long text, invalid UTF-8 and control characters;
// what names the field in the message.
func checkText(field, what, s string, max int) error {
	if len(s) > max {
		return fieldError(field, "The %s must be at most %d characters long.", what, max)
	}
	if !utf8.ValidString(s) {
		return fieldError(field, "The %s holds bytes that are not text (invalid UTF-8).", what)
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		return fieldError(field, "The %s must not hold control characters such as tabs or line breaks.", what)
	}
	return nil
}

// Expired reports whether the token's expiry has passed at now.
func (t *Token) Expired(now time.Time) bool {
	return t.ExpiresAt != nil && !now.Before(*t.ExpiresAt)
}

// TokenPatch is a partial update: nil fields are left alone. For the
// nullable fields (ExpiresAt, CreditLimit, RateLimit) a non-nil outer
// pointer to a nil value clears the field.
type TokenPatch struct {
	Nickname    *string
	Enabled     *bool
	ExpiresAt   **time.Time
	Core        *bool
	Premium     *bool
	Datasets    *map[string]Actions
	APIs        *[]string
	Grants      *[]Grant
	Domains     *[]string
	IPs         *[]string
	Signed      *bool
	CreditLimit **int64
	RateLimit   **RateLimit
	// UserID names the token's owner ("" for none); see CanOwn.
	UserID *string
}

// Fields names the fields the patch sets, as the API spells them, sorted:
// for audit logs and for naming the field a principal may not change.
func (p *TokenPatch) Fields() []string {
	var out []string
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"allowed_apis", p.APIs != nil}, {"allowed_domains", p.Domains != nil}, {"allowed_ips", p.IPs != nil},
		{"core", p.Core != nil}, {"credit_limit", p.CreditLimit != nil}, {"datasets", p.Datasets != nil},
		{"enabled", p.Enabled != nil}, {"expires_at", p.ExpiresAt != nil}, {"grants", p.Grants != nil},
		{"nickname", p.Nickname != nil}, {"premium", p.Premium != nil}, {"rate_limit", p.RateLimit != nil},
		{"signed_requests", p.Signed != nil}, {"user_id", p.UserID != nil},
	} {
		if f.set {
			out = append(out, f.name)
		}
	}
	return out
}

// Apply copies the patch's set fields into t. Call Normalize afterwards.
func (p *TokenPatch) Apply(t *Token) {
	set(&t.Nickname, p.Nickname)
	set(&t.Enabled, p.Enabled)
	set(&t.ExpiresAt, p.ExpiresAt)
	set(&t.Core, p.Core)
	set(&t.Premium, p.Premium)
	if p.Datasets != nil {
		t.Datasets = maps.Clone(*p.Datasets)
	}
	if p.APIs != nil {
		t.APIs = slices.Clone(*p.APIs)
	}
	if p.Grants != nil {
		t.Grants = slices.Clone(*p.Grants)
	}
	if p.Domains != nil {
		t.Domains = slices.Clone(*p.Domains)
	}
	if p.IPs != nil {
		t.IPs = slices.Clone(*p.IPs)
	}
	set(&t.Signed, p.Signed)
	set(&t.CreditLimit, p.CreditLimit)
	set(&t.RateLimit, p.RateLimit)
	set(&t.UserID, p.UserID)
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}
