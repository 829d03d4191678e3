package anomaly_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/anomaly"
	"github.com/tollgate/tollgate/internal/policy"
)

var from = time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)

// old is a token created well before the learning period.
func old(kind policy.Kind) policy.TokenWindow {
	return policy.TokenWindow{TokenID: "tok_a", AccountID: "acc_a", Kind: kind, CreatedAt: from.AddDate(0, 0, -30)}
}

func kinds(fs []anomaly.Finding) []policy.FlagKind {
	var out []policy.FlagKind
	for _, f := range fs {
		out = append(out, f.Kind)
	}
	return out
}

func TestEvaluate(t *testing.T) {
	th := anomaly.DefaultThresholds() // 10m window, 24h baseline: 144 windows
	cases := map[string]struct {
		w    func() policy.TokenWindow
		want []policy.FlagKind
	}{
		"steady": {func() policy.TokenWindow {
			w := old(policy.Publishable)
			w.Requests, w.Baseline = 700, 700*144
			return w
		}, nil},
		"spike": {func() policy.TokenWindow {
			w := old(policy.Publishable)
			w.Requests, w.Baseline = 7000, 600*144
			return w
		}, []policy.FlagKind{policy.FlagSpike}},
		"spike below the minimum": {func() policy.TokenWindow {
			w := old(policy.Publishable)
			w.Requests, w.Baseline = 500, 144
			return w
		}, nil},
		"spike of a token still learning": {func() policy.TokenWindow {
			w := old(policy.Publishable)
			w.CreatedAt = from.Add(-time.Hour)
			w.Requests = 5000
			return w
		}, nil},
		"referer burst": {func() policy.TokenWindow {
			w := old(policy.Publishable)
			w.Requests, w.Baseline, w.Denied = 50, 50*144, 400
			w.Denials = map[policy.DenyCode]int64{policy.CodeRefererDenied: 380, policy.CodeIPDenied: 20}
			return w
		}, []policy.FlagKind{policy.FlagDenials}},
		"rate limited is no burst": {func() policy.TokenWindow {
			w := old(policy.Publishable)
			w.Requests, w.Baseline, w.Denied = 50, 50*144, 400
			w.Denials = map[policy.DenyCode]int64{policy.CodeRateLimited: 400}
			return w
		}, nil},
		"denials a small share": {func() policy.TokenWindow {
			w := old(policy.Publishable)
			w.Requests, w.Baseline, w.Denied = 5000, 5000*144, 150
			w.Denials = map[policy.DenyCode]int64{policy.CodeRefererDenied: 150}
			return w
		}, nil},
		"new network and site": {func() policy.TokenWindow {
			w := old(policy.Publishable)
			w.Requests, w.Baseline = 10, 1440
			w.NewNetworks, w.NewSites = []string{"198.51.100.0/24"}, []string{"copycat.example"}
			return w
		}, []policy.FlagKind{policy.FlagNewNetwork, policy.FlagNewSite}},
		"secret from a browser": {func() policy.TokenWindow {
			w := old(policy.Secret)
			w.Requests, w.Baseline, w.SecretBrowser = 10, 1440, 3
			return w
		}, []policy.FlagKind{policy.FlagSecretInBrowser}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := th.Evaluate(tc.w(), from)
			if g, w := kinds(got), tc.want; len(g) != len(w) || (len(w) > 0 && !equal(g, w)) {
				t.Fatalf("got %v, want %v", g, w)
			}
			for _, f := range got {
				var e map[string]any
				if err := json.Unmarshal(f.Evidence, &e); err != nil || e["window"] != "10m0s" {
					t.Errorf("%s evidence %s: want JSON with the window", f.Kind, f.Evidence)
				}
			}
		})
	}
}

func equal(a, b []policy.FlagKind) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
