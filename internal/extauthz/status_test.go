package extauthz_test

import (
	"testing"

	"github.com/tollgate/tollgate/internal/extauthz"
	"github.com/tollgate/tollgate/internal/policy"
)

// TestDenyStatus pins the status every deny code answers with, through
// Envoy and the HTTP front end alike; a new code must be given one here.
func TestDenyStatus(t *testing.T) {
	want := map[policy.DenyCode]int{
		policy.CodeTokenMissing: 401, policy.CodeTokenMalformed: 401, policy.CodeTokenUnknown: 401,
		policy.CodeTokenDisabled: 401, policy.CodeTokenExpired: 401, policy.CodeTokenConflict: 401,
		policy.CodeSignatureRequired: 401, policy.CodeSignatureInvalid: 401, policy.CodeSignatureExpired: 401,
		policy.CodeSignatureReplayed:    401,
		policy.CodeSecretTokenInBrowser: 403, policy.CodeIPDenied: 403, policy.CodeRefererDenied: 403,
		policy.CodeAPIDenied: 403, policy.CodeTierDenied: 403, policy.CodeDatasetDenied: 403,
		policy.CodeSourceDenied: 403, policy.CodeRouteUnmatched: 403, policy.CodeMethodUnknown: 403,
		policy.CodeSourceUnseen:     403,
		policy.CodeCreditsExhausted: 402, policy.CodeQuotaExhausted: 402,
		policy.CodeRateLimited: 429, policy.CodeReplayUnverifiable: 429,
		policy.CodePathInvalid: 400, policy.CodeQueryInvalid: 400, policy.CodeParamRepeated: 400,
		policy.CodeRequestInvalid:     400,
		policy.CodeRouteMisconfigured: 500,
	}
	for _, c := range policy.DenyCodes() {
		w, ok := want[c]
		if !ok {
			t.Errorf("deny code %q has no status in this table", c)
			continue
		}
		if got := extauthz.DenyStatus(c); got != w {
			t.Errorf("%s: got %d, want %d", c, got, w)
		}
	}
	if len(want) != len(policy.DenyCodes()) {
		t.Errorf("the table names %d codes, DenyCodes %d", len(want), len(policy.DenyCodes()))
	}
}
