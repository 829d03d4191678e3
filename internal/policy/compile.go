package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"
)

// Policy is a token's policy compiled for evaluation: what the cache holds,
// one per token key. It is built once, when the token is loaded, so that a
// decision only compares precomputed values. It is kept small and low in
// pointers: a million of them must not make the garbage collector's work
// grow with them. Tokens with no list restrictions (most) carry no rules at
// all.
type Policy struct {
	TokenID, AccountID string
	terms
	rules   *rules      // nil when the token has no list restrictions
	signing *signingKey // nil unless the token requires signed requests
}

// terms are the parts of a policy that hold no pointers: the cache keeps
// them as they are.
type terms struct {
	expires            int64 // unix nanoseconds; 0 means never
	creditLimit        int64 // -1 means none
	accountQuota       int64 // -1 means none
	rateRPS, rateBurst int64 // 0 means no rate limit
	accRPS, accBurst   int64 // the account's; 0 means none
	kind               Kind
	flags              policyFlags
	apis               apiSet
}

// Opener opens a sealed signing secret (seal.Box.Open).
type Opener func(tokenID string, sealed []byte) ([]byte, error)

type policyFlags uint8

const (
	flagEnabled policyFlags = 1 << iota
	flagCore
	flagPremium
	flagSigned
	flagAccountPremium
)

// apiSet is a set of the known APIs, one bit each; empty means every API
// but import.
type apiSet uint8

func apiBit(name string) apiSet {
	switch name {
	case APIData:
		return 1 << 0
	case APIMaps:
		return 1 << 1
	case APISQL:
		return 1 << 2
	case APILDS:
		return 1 << 3
	case APIImport:
		return 1 << 4
	}
	return 0
}

// rules are a token's list restrictions, compiled.
type rules struct {
	domains  []DomainPattern
	ips      IPSet
	datasets []datasetRule
	grants   []Grant
}

type datasetRule struct {
	pattern string
	actions Actions
	literal bool // no wildcard: compare with ==
}

// Compile builds the evaluable form of a token and its account. It fails
// only on data that validation would have refused (say, a row edited by
// hand), so that such a token is denied rather than half-enforced. The one
// exception only narrows: a stored wildcard domain over a public suffix
// matches nothing.
// A token that requires signed requests needs open to read its signing
// secret; without one, it cannot be compiled.
func Compile(t *Token, a *Account, open Opener) (Policy, error) {
	p := Policy{TokenID: t.ID, AccountID: t.AccountID, terms: terms{kind: t.Kind, creditLimit: -1, accountQuota: -1}}
	if t.Kind != Publishable && t.Kind != Secret {
		return Policy{}, fmt.Errorf("token %s: unknown kind", t.ID)
	}
	if len(t.ID) > maxTokenIDLen {
		return Policy{}, fmt.Errorf("token %.*s…: the id is longer than %d bytes", maxTokenIDLen, t.ID, maxTokenIDLen)
	}
	for _, e := range []*time.Time{t.ExpiresAt, t.KeyExpiresAt} {
		if e != nil && (p.expires == 0 || e.UnixNano() < p.expires) {
			p.expires = e.UnixNano()
		}
	}
	if t.CreditLimit != nil {
		p.creditLimit = *t.CreditLimit
	}
	if a.CreditQuota != nil {
		p.accountQuota = *a.CreditQuota
	}
	if t.RateLimit != nil {
		p.rateRPS, p.rateBurst = t.RateLimit.RPS, t.RateLimit.Burst
	}
	if a.RateLimit != nil {
		p.accRPS, p.accBurst = a.RateLimit.RPS, a.RateLimit.Burst
	}
	for _, f := range []struct {
		on   bool
		flag policyFlags
	}{{t.Enabled, flagEnabled}, {t.Core, flagCore}, {t.Premium, flagPremium}, {t.Signed, flagSigned}, {a.Premium, flagAccountPremium}} {
		if f.on {
			p.flags |= f.flag
		}
	}
	if t.Signed {
		if open == nil {
			return Policy{}, fmt.Errorf("token %s requires signed requests and this server has no encryption key to read its signing secret", t.ID)
		}
		secret, err := open(t.ID, t.SigningSecret)
		if err != nil {
			return Policy{}, fmt.Errorf("token %s: signing secret: %w", t.ID, err)
		}
		p.signing = &signingKey{secret: secret}
	}
	for _, name := range t.APIs {
		b := apiBit(name)
		if b == 0 {
			return Policy{}, fmt.Errorf("token %s: unknown API %q", t.ID, name)
		}
		p.apis |= b
	}
	if len(t.Domains)+len(t.IPs)+len(t.Datasets)+len(t.Grants) == 0 {
		return p, nil
	}
	r := &rules{datasets: make([]datasetRule, 0, len(t.Datasets)), grants: t.Grants}
	for _, d := range t.Domains {
		dp, err := ParseDomainPattern(d)
		if errors.Is(err, errPublicSuffix) {
			// Stored before such wildcards were refused, or before the
			// Public Suffix List (vendored with x/net) listed its host. It
			// now matches nothing (no parsed Origin has the zero pattern's
			// empty host) while the token stays restricted to its domains,
			// so its other patterns keep working and nothing widens.
			dp, err = DomainPattern{}, nil
		}
		if err != nil {
			return Policy{}, fmt.Errorf("token %s: %w", t.ID, err)
		}
		r.domains = append(r.domains, dp)
	}
	var err error
	if r.ips, err = ParseIPSet(t.IPs); err != nil {
		return Policy{}, fmt.Errorf("token %s: allowed IPs: %w", t.ID, err)
	}
	for _, pattern := range slices.Sorted(maps.Keys(t.Datasets)) {
		r.datasets = append(r.datasets, datasetRule{pattern: pattern, actions: t.Datasets[pattern], literal: !containsStar(pattern)})
	}
	p.rules = r
	return p, nil
}

// rulesKey is the content of a token's list restrictions: tokens with
// equal keys compile to equal rules.
func rulesKey(t *Token) string {
	ds := make([]string, 0, len(t.Datasets))
	for _, name := range slices.Sorted(maps.Keys(t.Datasets)) {
		ds = append(ds, name+"="+strconv.Itoa(int(t.Datasets[name])))
	}
	b, _ := json.Marshal([]any{t.Domains, t.IPs, ds, t.Grants})
	return string(b)
}

func containsStar(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '*' {
			return true
		}
	}
	return false
}

func (p *Policy) has(f policyFlags) bool { return p.flags&f != 0 }

// Kind returns the token's kind.
func (p *Policy) Kind() Kind { return p.kind }

// CreditLimit returns the token's credit limit per period, if it has one.
func (p *Policy) CreditLimit() (int64, bool) { return p.creditLimit, p.creditLimit >= 0 }

// AccountQuota returns the account's credit quota per period, if it has one.
func (p *Policy) AccountQuota() (int64, bool) { return p.accountQuota, p.accountQuota >= 0 }

// RateLimit returns the token's rate limit, if it has one.
func (p *Policy) RateLimit() (rps, burst int64, ok bool) {
	return p.rateRPS, p.rateBurst, p.rateRPS > 0
}

// AccountRateLimit returns the account's rate limit, shared by all its
// tokens, if it has one.
func (p *Policy) AccountRateLimit() (rps, burst int64, ok bool) {
	return p.accRPS, p.accBurst, p.accRPS > 0
}

// SignedRequests reports whether the token requires signed requests.
func (p *Policy) SignedRequests() bool { return p.has(flagSigned) }

// expired reports whether the token has expired at now.
func (p *Policy) expired(now time.Time) bool { return p.expires != 0 && now.UnixNano() >= p.expires }
