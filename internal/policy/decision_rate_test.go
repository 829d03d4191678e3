package policy_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
)

// TestDecisionRates checks that a decision carries the token's and its
// account's rate limits, allowed or not, for a rate-limit service in front
// of the upstream.
func TestDecisionRates(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	for name, tc := range map[string]struct {
		token, account *policy.RateLimit
		disabled       bool
	}{
		"none":                 {},
		"token":                {token: &policy.RateLimit{RPS: 20, Burst: 40}},
		"account":              {account: &policy.RateLimit{RPS: 100, Burst: 100}},
		"both":                 {token: &policy.RateLimit{RPS: 5, Burst: 5}, account: &policy.RateLimit{RPS: 50, Burst: 60}},
		"both, token disabled": {token: &policy.RateLimit{RPS: 5, Burst: 5}, account: &policy.RateLimit{RPS: 50, Burst: 60}, disabled: true},
	} {
		t.Run(name, func(t *testing.T) {
			tok := policy.NewToken("acc_1", policy.Publishable)
			tok.RateLimit, tok.Enabled = tc.token, !tc.disabled
			p, err := policy.Compile(tok, &policy.Account{ID: "acc_1", RateLimit: tc.account}, nil)
			if err != nil {
				t.Fatalf("compile: got %v, want nil", err)
			}
			d := p.Evaluate(&policy.Request{IP: netip.MustParseAddr("192.0.2.1")}, now, policy.EvalOptions{})
			if d.Allow == tc.disabled {
				t.Fatalf("got allow=%v code=%q, want allow=%v", d.Allow, d.Code, !tc.disabled)
			}
			for what, c := range map[string]struct {
				got  policy.RateLimit
				want *policy.RateLimit
			}{"token": {d.Rate, tc.token}, "account": {d.AccountRate, tc.account}} {
				want := policy.RateLimit{}
				if c.want != nil {
					want = *c.want
				}
				if c.got != want {
					t.Errorf("%s rate: got %+v, want %+v", what, c.got, want)
				}
			}
		})
	}
}
