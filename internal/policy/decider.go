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
	p, missed, err := d.cache.get(ctx, HashValue(req.Token))
	if errors.Is(err, ErrNotFound) {
		dec := deny(CodeTokenUnknown, "this token does not exist (it may have been deleted or rolled)")
		dec.CacheMiss = missed
		return dec, nil
	}
	if err != nil {
		return Decision{CacheMiss: missed}, err
	}
	dec, remembered := p.admit(ctx, req, d.now(), d.opt)
	dec.CacheMiss = missed
	if d.meter == nil {
		return dec, nil
	}
	out, err := d.meter.Settle(ctx, p, dec)
	if remembered && (err != nil || !out.Allow) {
		// The signature was not used: the client may send the request
		// again once the meter lets it. Failing to forget only makes
		// the client sign afresh.
		_ = d.opt.Signatures.Replay.Forget(ctx, p.TokenID, dec.signed.sig)
	}
	return out, err
}

// Admit evaluates req and, when a signed request is allowed, remembers its
// signature, refusing a replay. It is Decide without the cache and the
// meter, for a front end that has the token's policy already and charges
// nothing (the Tokens API).
func (p *Policy) Admit(ctx context.Context, req *Request, now time.Time, opt EvalOptions) Decision {
	dec, _ := p.admit(ctx, req, now, opt)
	return dec
}

// admit evaluates req and remembers an allowed signature; it reports
// whether it remembered one.
func (p *Policy) admit(ctx context.Context, req *Request, now time.Time, opt EvalOptions) (Decision, bool) {
	dec := p.Evaluate(req, now, opt)
	if !dec.Allow || !dec.signed.ok || opt.Signatures.Replay == nil {
		return dec, false
	}
	return remember(ctx, opt.Signatures.Replay, dec)
}

// remember records the signature of a request that every rule allows, and
// refuses the request when it was already recorded or cannot be. It comes
// after every rule, so that a refused request (a wrong IP, a dataset not
// granted) never uses up a signature or the token's share of the replay
// memory, and before the meter, so that a replay is never charged: when
// the meter refuses after all, Decide forgets the signature again. The
// store's check and insert is one atomic step, so of two copies of a
// request in flight at once, one is allowed at most.
func remember(ctx context.Context, replay ReplayStore, dec Decision) (Decision, bool) {
	fresh, err := replay.Remember(ctx, dec.TokenID, dec.signed.sig, dec.signed.until)
	switch {
	case err != nil:
		return refusedUnverifiable(dec, err), false
	case !fresh:
		dec = refused(dec, CodeSignatureReplayed, "this signed request was already used: sign every request afresh")
	default:
		return dec, true
	}
	return dec, false
}

// refused turns an allow into a deny, keeping who asked.
func refused(dec Decision, code DenyCode, msg string) Decision {
	dec.Allow, dec.Code, dec.Message, dec.Cost, dec.signed = false, code, msg, 0, signed{}
	return dec
}

// refusedUnverifiable refuses a request whose signature the replay store
// could not remember.
func refusedUnverifiable(dec Decision, err error) Decision {
	var full *ReplayFullError
	if !errors.As(err, &full) {
		dec = refused(dec, CodeReplayUnverifiable, "the replay memory cannot be reached, so this signed request cannot be checked for a replay; retry later")
		dec.Usage.RetryAfter = time.Second
		return dec
	}
	msg := "this token has sent more signed requests than this server can remember within the signature window; retry later"
	if !full.Token {
		msg = "this server cannot remember more signed requests within the signature window, so cannot refuse this one if it were replayed; retry later"
	}
	dec = refused(dec, CodeReplayUnverifiable, msg)
	dec.Usage.RetryAfter = full.RetryAfter
	return dec
}
