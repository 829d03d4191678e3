package policy

import (
	"context"
	"errors"
	"time"
)

// Decider answers requests: it checks the token's shape, finds its policy in
// the cache and evaluates it.
type Decider struct {
	cache *Cache
	now   func() time.Time
	opt   EvalOptions
}

// NewDecider returns a Decider over cache.
func NewDecider(cache *Cache, now func() time.Time, opt EvalOptions) *Decider {
	return &Decider{cache: cache, now: now, opt: opt}
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
	return p.Evaluate(req, d.now(), d.opt), nil
}
