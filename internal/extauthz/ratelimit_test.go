package extauthz_test

import (
	"context"
	"testing"

	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tollgate/tollgate/internal/extauthz"
	"github.com/tollgate/tollgate/internal/policy"
)

// TestRateLimitMetadata checks the limit overrides an allow carries for
// Envoy's rate-limit filter: under rate_limit the token's, under
// account_rate_limit its account's, each as RateLimit.Override's
// dynamic_metadata wants it (an integer requests_per_unit and a unit that
// parses as envoy.type.v3.RateLimitUnit), and nothing for a limit that is
// not set.
func TestRateLimitMetadata(t *testing.T) {
	type want struct{ token, account int64 } // requests_per_unit; 0 for none
	for name, tc := range map[string]struct {
		d    policy.Decision
		want want
	}{
		"no limits":     {policy.Decision{}, want{}},
		"token limit":   {policy.Decision{Rate: policy.RateLimit{RPS: 20, Burst: 40}}, want{token: 20}},
		"account limit": {policy.Decision{AccountRate: policy.RateLimit{RPS: 100, Burst: 100}}, want{account: 100}},
		"both": {policy.Decision{Rate: policy.RateLimit{RPS: 7, Burst: 1}, AccountRate: policy.RateLimit{RPS: 1_000_000, Burst: 10_000_000}},
			want{token: 7, account: 1_000_000}},
	} {
		t.Run(name, func(t *testing.T) {
			d := tc.d
			d.Allow, d.TokenID, d.AccountID, d.Kind, d.Cost = true, "tok_1", "acc_1", policy.Publishable, 1
			fd := &fakeDecider{DecideFn: func(*policy.Request) (policy.Decision, error) { return d, nil }}
			resp, err := extauthz.NewServer(fd, extauthz.Config{AllowUnmatchedRoutes: true}, discard, nil).
				Check(context.Background(), httpReq{path: "/?token=" + tokA}.check())
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetOkResponse() == nil {
				t.Fatalf("got %v, want an allow", resp)
			}
			fields := resp.GetDynamicMetadata().GetFields()
			for key, rps := range map[string]int64{"rate_limit": tc.want.token, "account_rate_limit": tc.want.account} {
				v, ok := fields[key]
				if rps == 0 {
					if ok {
						t.Errorf("%s: got %v, want none", key, v)
					}
					continue
				}
				checkOverride(t, key, v.GetStructValue(), rps)
			}
		})
	}
}

func checkOverride(t *testing.T, key string, s *structpb.Struct, rps int64) {
	t.Helper()
	if s == nil {
		t.Fatalf("%s: got no struct, want requests_per_unit %d", key, rps)
	}
	f := s.GetFields()
	if len(f) != 2 {
		t.Errorf("%s: got fields %v, want requests_per_unit and unit only", key, f)
	}
	n := f["requests_per_unit"].GetNumberValue()
	if n != float64(rps) || n != float64(uint32(n)) {
		t.Errorf("%s: requests_per_unit got %v, want %d (an integer that fits Envoy's uint32)", key, n, rps)
	}
	unit := f["unit"].GetStringValue()
	if u, ok := typev3.RateLimitUnit_value[unit]; !ok || typev3.RateLimitUnit(u) != typev3.RateLimitUnit_SECOND {
		t.Errorf("%s: unit got %q, want SECOND (an envoy.type.v3.RateLimitUnit)", key, unit)
	}
}
