package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// EvalOptions are the operator's choices that shape a decision.
type EvalOptions struct {
	// AllowSecretInBrowser lets secret tokens through when the request
	// bears a browser's marks. Off by default: a secret token seen in a
	// browser has leaked.
	AllowSecretInBrowser bool
	// GrantFreeAPIs need no grant on a connection's sources (e.g. lds,
	// whose requests name a connection but read no customer data).
	GrantFreeAPIs []string
	// Signatures shapes the checking of signed requests.
	Signatures SignatureOptions
}

// Evaluate applies the token's rules to the request, in a fixed order, and
// stops at the first that fails: enabled → not expired → signature (for
// tokens that require one) → secret token in a browser → IP →
// Referer/Origin → API → tier → dataset → source grant. It does no I/O, and
// for an unsigned request does not allocate when it allows. It does not
// look for replays, which takes memory of earlier requests: Decider.Decide
// does, once Evaluate allows.
func (p *Policy) Evaluate(req *Request, now time.Time, opt EvalOptions) Decision {
	var s signed
	d := p.evaluate(req, now, opt, &s)
	d.TokenID, d.AccountID, d.Kind = p.TokenID, p.AccountID, p.kind
	d.Rate, d.AccountRate = RateLimit{RPS: p.rateRPS, Burst: p.rateBurst}, RateLimit{RPS: p.accRPS, Burst: p.accBurst}
	if d.Code == "" {
		d.Allow, d.Cost, d.signed = true, req.Cost, s
	}
	return d
}

func (p *Policy) evaluate(req *Request, now time.Time, opt EvalOptions, s *signed) Decision {
	if !p.has(flagEnabled) {
		return deny(CodeTokenDisabled, "this token is disabled")
	}
	if p.expired(now) {
		return deny(CodeTokenExpired, "this token has expired")
	}
	if p.signing != nil {
		if d, ok := p.checkSignature(req, now, opt.Signatures, s); !ok {
			return d
		}
	}
	secret := p.kind == Secret
	if secret && req.FromBrowser && !opt.AllowSecretInBrowser {
		return deny(CodeSecretTokenInBrowser, "secret tokens must not be used from a browser; use a publishable token, and roll this secret token: it has leaked")
	}
	if r := p.rules; r != nil {
		if r.ips.Len() > 0 && !r.ips.Contains(req.IP) {
			return deny(CodeIPDenied, "requests from this IP address are not allowed for this token")
		}
		if len(r.domains) > 0 {
			if d, ok := r.checkDomains(req); !ok {
				return d
			}
		}
	}
	if req.API != "" && !secret {
		// Only a known API's canonical (lower-case) name has a bit: any
		// other name is no API a token can hold, whatever its spelling
		// means to the upstream.
		switch bit := apiBit(req.API); {
		case bit == 0:
			return deny(CodeAPIDenied, fmt.Sprintf("%.40q is not a known API", req.API))
		case p.apis == 0 && bit == apiBit(APIImport):
			return deny(CodeAPIDenied, "the import API must be granted to a token explicitly")
		case p.apis != 0 && p.apis&bit == 0:
			return deny(CodeAPIDenied, fmt.Sprintf("this token may not call the %.40s API", req.API))
		}
	}
	switch req.Tier {
	case TierPremium:
		if !p.has(flagAccountPremium) {
			return deny(CodeTierDenied, "premium data needs a premium subscription on this account")
		}
		if !p.has(flagPremium) {
			return deny(CodeTierDenied, "this token may not read premium data")
		}
	case TierCore:
		if !p.has(flagCore) {
			return deny(CodeTierDenied, "this token may not read core data")
		}
	}
	if secret {
		return Decision{}
	}
	if req.Dataset != "" {
		// A name no dataset may have is denied before any pattern sees it:
		// a wildcard would match it, and its length is the client's choice.
		if !validName(req.Dataset, false) {
			return deny(CodeDatasetDenied, fmt.Sprintf("%.100q is not a dataset name (1-128 letters, digits, '_', '-' or '.')", req.Dataset))
		}
		if !p.rules.allowsDataset(req.Dataset, req.Action) {
			return deny(CodeDatasetDenied, fmt.Sprintf("this token may not %s dataset %.100q", req.Action, req.Dataset))
		}
	}
	if req.Connection != "" && !(req.API != "" && slices.Contains(opt.GrantFreeAPIs, req.API)) {
		if req.SourceUnseen && !p.rules.allowsAllSources(req.Connection) {
			return deny(CodeSourceUnseen, fmt.Sprintf("the request may carry its source of connection %.100q where Tollgate cannot see it (a body): send it as ?q=, with GET", req.Connection))
		}
		if !p.rules.allowsSource(req.Connection, req.Source, req.Action) {
			return deny(CodeSourceDenied, fmt.Sprintf("this token has no grant for this source of connection %.100q", req.Connection))
		}
	}
	return Decision{}
}

// checkDomains matches the Referer, else the Origin, against the allowed
// domains.
func (r *rules) checkDomains(req *Request) (Decision, bool) {
	header := req.Referer
	if header == "" {
		header = req.Origin
	}
	if header == "" {
		return deny(CodeRefererDenied, "this token is restricted to certain domains and the request has no Referer or Origin header"), false
	}
	o, err := ParseOrigin(header)
	if err != nil {
		return deny(CodeRefererDenied, "the Referer or Origin header is not a valid http(s) URL"), false
	}
	for i := range r.domains {
		if r.domains[i].Match(o) {
			return Decision{}, true
		}
	}
	return deny(CodeRefererDenied, "this token may not be used from this domain"), false
}

// allowsDataset reports whether any dataset rule matching name allows act.
// A token with no rules has no dataset permissions. Literal rules are
// compared first; the wildcards, only when one could apply.
func (r *rules) allowsDataset(name string, act Action) bool {
	if r == nil {
		return false
	}
	wild := false
	for i := range r.datasets {
		d := &r.datasets[i]
		if d.actions.Has(act) {
			if d.literal && d.pattern == name {
				return true
			}
			wild = wild || !d.literal
		}
	}
	return wild && r.matchDataset(name, act)
}

// matchDataset reports whether a wildcard rule allowing act matches name.
// It is apart from allowsDataset so that only a check that needs the name's
// index pays for clearing it.
func (r *rules) matchDataset(name string, act Action) bool {
	var x nameIndex
	x.reset(name)
	for i := range r.datasets {
		if d := &r.datasets[i]; !d.literal && d.actions.Has(act) && x.match(d.pattern) {
			return true
		}
	}
	return false
}

// allowsAllSources reports whether a grant covers every source of conn.
func (r *rules) allowsAllSources(conn string) bool {
	if r == nil {
		return false
	}
	for _, g := range r.grants {
		if g.Connection == conn && g.Type == GrantAll {
			return true
		}
	}
	return false
}

// allowsSource reports whether a grant covers the source of connection for
// act. An all-sources grant allows any action; table and query grants allow
// reading.
func (r *rules) allowsSource(conn, source string, act Action) bool {
	if r == nil {
		return false
	}
	// Only a valid table name can match a table pattern (see allowsDataset's
	// caller); a saved query is compared whole.
	table := act == Read && validName(source, false)
	wild := false
	for _, g := range r.grants {
		if g.Connection != conn {
			continue
		}
		switch g.Type {
		case GrantAll:
			return true
		case GrantTable:
			if table && g.Source == source {
				return true
			}
			wild = wild || table && strings.IndexByte(g.Source, '*') >= 0
		case GrantQuery:
			if act == Read && source != "" && g.Source == source {
				return true
			}
		}
	}
	return wild && r.matchTable(conn, source)
}

// matchTable reports whether a table grant on conn matches the table name
// source; see matchDataset.
func (r *rules) matchTable(conn, source string) bool {
	var x nameIndex
	x.reset(source)
	for _, g := range r.grants {
		if g.Connection == conn && g.Type == GrantTable && x.match(g.Source) {
			return true
		}
	}
	return false
}
