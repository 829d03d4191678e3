package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/extauthz"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/server"
	"github.com/tollgate/tollgate/internal/store"
)

// TestIEXResponseProfile: a server started with the IEX response profile
// answers, over gRPC Check and the HTTP endpoint in every dialect alike,
// with IEX Cloud's statuses, plain-text messages and usage headers, as
// docs/responses.md tabulates them; the identity for the upstream is the
// same as with the default profile.
func TestIEXResponseProfile(t *testing.T) {
	t.Parallel()
	f := MustSeed(t, store.Postgres)
	zero := int64(0)
	broke := policy.NewToken(f.Premium.ID, policy.Publishable)
	broke.CreditLimit = &zero
	brokeV, err := f.DB.CreateToken(context.Background(), broke)
	if err != nil {
		t.Fatal(err)
	}
	s := mustStartRouted(t, f, func(c *server.Config) {
		c.Listen.AuthzHTTP = "127.0.0.1:0"
		c.ExtAuthz.ResponseProfile = extauthz.ProfileIEX
	})
	V := f.V
	key := func(v string, kv ...string) map[string]string {
		return hdr(append([]string{"x-api-key", v}, kv...)...)
	}
	data := func(tier string, h map[string]string) envoyRequest {
		return envoyRequest{Path: "/v1/prices", Headers: h, Ext: ext("api", "data", "tier", tier)}
	}
	const restricted = "The requested data is marked restricted and the account does not have access."
	for name, tc := range map[string]struct {
		req    envoyRequest
		status int
		msg    string            // the body of a deny
		usage  map[string]string // headers of an allow; "" must be absent
	}{
		"core data": {req: data("core", key(V("basic"))), status: 200,
			usage: map[string]string{"iexcloud-messages-used": "1", "iexcloud-credits-used": "1", "iexcloud-premium-messages-used": "", "x-credits-cost": ""}},
		"premium data": {req: data("premium", key(V("premium"))), status: 200,
			usage: map[string]string{"iexcloud-premium-messages-used": "1", "iexcloud-premium-credits-used": "1", "iexcloud-messages-used": "", "x-credits-cost": ""}},
		"no token":        {req: data("core", nil), status: 401, msg: "An API key is required to access the requested endpoint."},
		"unknown token":   {req: data("core", key(policy.NewValue(policy.Publishable))), status: 403, msg: "The API key provided is not valid."},
		"disabled token":  {req: data("core", key(V("disabled"))), status: 403, msg: "The provided API token has been disabled"},
		"premium on core": {req: data("premium", key(V("basic"))), status: 402, msg: "The requested data is not available to your current tier."},
		"bad Referer": {req: data("core", key(V("domains"), "referer", "https://evil.example/")), status: 401,
			msg: "The referer in the request header is not allowed. Please check the associated domain(s) for this API key"},
		"dataset not granted": {req: envoyRequest{Path: "/v2/data/payroll/rows", Headers: key(V("datasets"))}, status: 401, msg: restricted},
		"credits spent": {req: data("core", key(brokeV)), status: 402,
			msg: "You have exceeded your allotted message quota and pay-as-you-go is not enabled."},
		"escaped slashes": {req: envoyRequest{Path: "/v2/data/sales.q1%2F..%2Fpayroll/rows", Headers: key(V("datasets"))}, status: 400,
			msg: "Invalid values were supplied for the API request"},
	} {
		t.Run(name, func(t *testing.T) {
			got := map[string]httpAnswer{"check": checkAnswer(t, s, tc.req)}
			for _, dia := range httpDialects {
				got[dia] = s.mustAuthorizeHTTP(t, dia, tc.req)
			}
			for via, a := range got {
				if a.status != tc.status {
					t.Errorf("%s: status got %d, want %d (%s)", via, a.status, tc.status, a.body)
					continue
				}
				if tc.status == 200 {
					for h, want := range tc.usage {
						if v := a.header.Get(h); v != want {
							t.Errorf("%s: %s got %q, want %q", via, h, v, want)
						}
					}
					continue
				}
				if a.body != tc.msg {
					t.Errorf("%s: body got %q, want %q", via, a.body, tc.msg)
				}
				if ct := a.header.Get("Content-Type"); via != "nginx" && !strings.HasPrefix(ct, "text/plain") {
					t.Errorf("%s: content type %q, want text/plain", via, ct)
				}
			}
		})
	}
}

// checkAnswer asks Check over gRPC and reads its answer as Envoy hands it
// to the caller.
func checkAnswer(t *testing.T, s *testServer, r envoyRequest) httpAnswer {
	t.Helper()
	resp := s.MustCheck(t, r.proto())
	a := httpAnswer{status: http.StatusOK, header: http.Header{}}
	if d := resp.GetDeniedResponse(); d != nil {
		a.status, a.body = int(d.GetStatus().GetCode()), d.GetBody()
		for _, h := range d.GetHeaders() {
			a.header.Set(h.GetHeader().GetKey(), h.GetHeader().GetValue())
		}
		return a
	}
	for _, h := range resp.GetOkResponse().GetResponseHeadersToAdd() {
		a.header.Set(h.GetHeader().GetKey(), h.GetHeader().GetValue())
	}
	for _, h := range resp.GetOkResponse().GetHeaders() {
		if h.GetHeader().GetKey() == extauthz.HeaderTokenID && h.GetHeader().GetValue() == "" {
			t.Errorf("Check: an allow without %s", extauthz.HeaderTokenID)
		}
	}
	return a
}
