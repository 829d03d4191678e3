package policy

import (
	"context"
	"errors"
	"time"
)

// Meter charges requests against credits and rate limits. Settle is called
// for every decision about a known token: it may turn an allow into a
// deny (credits_exhausted, quota_exhausted, rate_limited) and fills in
// d.Usage. A denied request is only counted, never charged.
type Meter interface {
	// Settle returns the decision as it stands after charging, and an
	// error only when it cannot tell whether the request may spend (the
	// store is down and nothing is held locally). Policy and Decision pass
	// by value so that no Check allocates them.
	Settle(ctx context.Context, p Policy, d Decision) (Decision, error)
}

// Decider answers requests: it checks the token's shape, finds its policy in
// the cache, evaluates it and has the meter charge it.
type Decider struct {
	cache *Cache
	meter Meter
	now   func() time.Time
	opt   EvalOptions
}

// NewDecider returns a Decider over cache. meter may be nil: nothing is
// then counted or limited.
func NewDecider(cache *Cache, meter Meter, now func() time.Time, opt EvalOptions) *Decider {
	return &Decider{cache: cache, meter: meter, now: now, opt: opt}
}

// Decide returns the decision for req. A deny is a Decision, not an error:
// Decide returns an error only when Tollgate itself cannot decide (the store
// is down and the token is not cached), and never allows in that case.
func (d *Decider) Decide(ctx context.Context, req *Request) (Decision, error) {
	switch {
	case req.TokenConflict:
		return deny(CodeTokenConflict, "the request carries two different tokens; send one"), nil
	case req.Token == "":
		return deny(CodeTokenMissing, "no token: send one as ?token=, ?api_key=, Authorization: Bearer or X-API-Key"), nil
	}
	if _, err := ParseValue(req.Token); err != nil {
		return deny(CodeTokenMalformed, "the token is malformed or mistyped (its checksum does not match)"), nil
	}
	p, err := d.cache.Get(ctx, HashValue(req.Token))
	if errors.Is(err, ErrNotFound) {
		return deny(CodeTokenUnknown, "this token does not exist (it may have been deleted or rolled)"), nil
	}
	if err != nil {
		return Decision{}, err
	}
	dec := p.Evaluate(req, d.now(), d.opt)
	if d.meter != nil {
		return d.meter.Settle(ctx, p, dec)
	}
	return dec, nil
}
