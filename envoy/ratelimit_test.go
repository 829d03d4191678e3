package envoy_test

import (
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// TestRateLimitExample checks the rate-limit service example: each
// descriptor is keyed on an id Tollgate writes into the ext_authz
// namespace and takes its limit from the override Tollgate writes beside
// it (extauthz.TestRateLimitMetadata checks the other side).
func TestRateLimitExample(t *testing.T) {
	hcm := ingressHCM(t, MustLoadBootstrap(t, "examples/ratelimit.yaml"))
	vhosts := hcm.GetRouteConfig().GetVirtualHosts()
	if len(vhosts) != 1 {
		t.Fatalf("virtual hosts: got %d, want 1", len(vhosts))
	}
	got := map[string]*routev3.RateLimit{}
	for _, rl := range vhosts[0].GetRateLimits() {
		if len(rl.GetActions()) != 1 {
			t.Fatalf("rate limit %v: got %d actions, want 1", rl, len(rl.GetActions()))
		}
		got[rl.GetActions()[0].GetMetadata().GetDescriptorKey()] = rl
	}
	for name, want := range map[string]struct{ key, id, limit string }{
		"a token's own limit": {"tollgate_token_id", "token_id", "rate_limit"},
		"an account's limit":  {"tollgate_account_id", "account_id", "account_rate_limit"},
	} {
		t.Run(name, func(t *testing.T) {
			rl := got[want.key]
			if rl == nil {
				t.Fatalf("no rate limit with descriptor %s", want.key)
			}
			md := rl.GetActions()[0].GetMetadata()
			if md.GetSource() != routev3.RateLimit_Action_MetaData_DYNAMIC {
				t.Errorf("%s: source got %v, want DYNAMIC", want.key, md.GetSource())
			}
			checkExtAuthzPath(t, want.key+" value", md.GetMetadataKey().GetKey(), md.GetMetadataKey().GetPath(), want.id)
			dm := rl.GetLimit().GetDynamicMetadata()
			if dm == nil {
				t.Fatalf("%s: no limit override from dynamic metadata", want.key)
			}
			checkExtAuthzPath(t, want.key+" limit", dm.GetMetadataKey().GetKey(), dm.GetMetadataKey().GetPath(), want.limit)
		})
	}
}

func checkExtAuthzPath[S interface{ GetKey() string }](t *testing.T, what, ns string, path []S, key string) {
	t.Helper()
	if ns != "envoy.filters.http.ext_authz" || len(path) != 1 || path[0].GetKey() != key {
		var keys []string
		for _, p := range path {
			keys = append(keys, p.GetKey())
		}
		t.Errorf("%s: got %s %v, want envoy.filters.http.ext_authz [%s]", what, ns, keys, key)
	}
}
