package extauthz_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/tollgate/tollgate/internal/extauthz"
	"github.com/tollgate/tollgate/internal/policy"
)

// badRoute reports whether context_extensions hold a value Tollgate must
// refuse as a route configuration error.
func badRoute(tier, action, cost string) bool {
	if _, ok := policy.ParseTier(tier); !ok {
		return true
	}
	if _, ok := policy.ParseAction(action); action != "" && !ok {
		return true
	}
	if cost == "" {
		return false
	}
	n, err := strconv.ParseInt(cost, 10, 64)
	return err != nil || n < 0 || n > 1_000_000
}

// refused are the codes of requests Check will not read, which it denies
// without asking the decider.
var refused = map[policy.DenyCode]bool{
	policy.CodeMethodUnknown: true, policy.CodePathInvalid: true, policy.CodeQueryInvalid: true,
	policy.CodeParamRepeated: true, policy.CodeRouteUnmatched: true, policy.CodeRequestInvalid: true,
}

// FuzzCheck feeds Check what a hostile client (path and headers), a
// confused proxy (socket address, x-forwarded-for) or a careless operator
// (context_extensions) can send. Check must not panic, must answer with a
// deny when the decider denies or the request cannot be read, and must
// deny an unusable route configuration with route_misconfigured. It never returns a gRPC error.
func FuzzCheck(f *testing.F) {
	f.Add("/v1/prices/AAPL?token="+tokA+"&range=1m", "", "", "", "", "", "203.0.113.5", "data", "prices", "core", "", "1", uint8(0), false)
	f.Add("/v1/sql?q=SELECT+*+FROM+t&api_key="+tokB, "Bearer "+tokA, tokB, "https://example.com/app", "https://example.com", "198.51.100.1, 203.0.113.5", "10.0.0.2", "sql", "", "premium", "read", "0", uint8(1), true)
	f.Add("/x?token=%zz&token=&&token", "bearer", " ", "https://example.com@evil.com/", "null", ",,, ,", "fe80::1%eth0", "", "", "", "", "", uint8(2), false)
	f.Add("/?"+strings.Repeat("a&", 50)+"token="+tokA, "Basic dXNlcjpwYXNz", "", "http://[::1]:8080/", "", "::ffff:203.0.113.5", "::ffff:10.0.0.1", "lds", "sales.*", "gold", "destroy", "-1", uint8(3), true)
	f.Add("/data/%2e%2e/secret?q=%00", "Bearer \x00"+tokA, "\xff\xfe", "https://\u00e9xample.com/", "https://xn--e1afmkfd.xn--p1ai", "[2001:db8::1]:443, 203.0.113.5:80", "not-an-ip", "import", "trash.*", "core", "delete", "1000001", uint8(255), false)
	f.Add("/v1/prices?x=1", "TOLLGATE-HMAC-SHA256 Credential="+tokA+"/20260101/tollgate_request, SignedHeaders=host;x-tollgate-date, Signature="+strings.Repeat("ab", 32), "", "", "", "", "2001:db8::1", "data", "prices", "", "", "", uint8(0), false)
	f.Add("/v1/prices", "TOLLGATE-HMAC-SHA256 Credential=tok_x/2026/tollgate_request,SignedHeaders=,Signature=", tokA, "", "", "", "", "", "", "", "", "", uint8(0), true)
	f.Add("/stable/prices?x=1", "IEX-HMAC-SHA256 Credential="+tokA+"/20260101/iex_request, SignedHeaders=host;x-iex-date, Signature="+strings.Repeat("ab", 32), "", "", "", "", "2001:db8::1", "data", "prices", "", "", "", uint8(0), false)
	f.Add("/v1/prices", "iex-hmac-sha256 Credential=pk_/20261301/iex_request,SignedHeaders=host,Signature=", tokA, "", "", "", "", "", "", "", "", "", uint8(0), true)
	f.Fuzz(func(t *testing.T, path, authorization, apiKey, referer, origin, xff, peer, api, dataset, tier, action, cost string, hops uint8, raw bool) {
		h := map[string]string{
			":authority": "api.example.com", ":method": "GET", ":path": path, ":scheme": "https",
			"authorization": authorization, "x-api-key": apiKey, "referer": referer, "origin": origin, "x-forwarded-for": xff,
		}
		hr := &authv3.AttributeContext_HttpRequest{Id: "1", Method: "GET", Path: path, Host: "api.example.com", Scheme: "https", Protocol: "HTTP/1.1"}
		if raw {
			hr.HeaderMap = &corev3.HeaderMap{}
			for k, v := range h {
				hr.HeaderMap.Headers = append(hr.HeaderMap.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(v)})
			}
		} else {
			hr.Headers = h
		}
		ext := map[string]string{"api": api, "dataset": dataset, "connection": "warehouse", "tier": tier, "action": action, "cost": cost}
		cr := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source:            &authv3.AttributeContext_Peer{Address: sockAddr(peer)},
			Request:           &authv3.AttributeContext_Request{Http: hr},
			ContextExtensions: ext,
		}}
		d := &fakeDecider{DecideFn: denyAll(policy.CodeDatasetDenied)}
		srv := extauthz.NewServer(d, extauthz.Config{TrustedHops: int(hops % 4), StripCredentials: true}, discard, nil)
		resp, err := srv.Check(context.Background(), cr)

		if err != nil {
			t.Fatalf("got gRPC error %v: every request must end in an answer", err)
		}
		denied := resp.GetDeniedResponse()
		if denied == nil || resp.GetOkResponse() != nil {
			t.Fatalf("got %v, want a deny", resp)
		}
		code := policy.DenyCode(resp.GetDynamicMetadata().GetFields()["code"].GetStringValue())
		if got, want := int(denied.GetStatus().GetCode()), extauthz.DenyStatus(code); got != want {
			t.Errorf("HTTP status: got %d, want %d for %s", got, want, code)
		}
		if !json.Valid([]byte(denied.GetBody())) {
			t.Errorf("body %q is not JSON", denied.GetBody())
		}
		if refused[code] {
			if len(d.reqs) != 0 {
				t.Errorf("%s, yet the decider was asked", code)
			}
			return
		}
		if badRoute(tier, action, cost) {
			if code != policy.CodeRouteMisconfigured {
				t.Fatalf("got %s, want %s for tier %q, action %q, cost %q", code, policy.CodeRouteMisconfigured, tier, action, cost)
			}
			return
		}
		if code != policy.CodeDatasetDenied {
			t.Fatalf("got %s, want the decider's %s", code, policy.CodeDatasetDenied)
		}
		req := d.Last(t)
		if req.TokenConflict && req.Token == "" {
			t.Errorf("a conflict without a token: %+v", req)
		}
		if req.Cost < 0 || req.Cost > 1_000_000 {
			t.Errorf("cost %d out of range", req.Cost)
		}
		if req.IP.IsValid() && req.IP.Zone() != "" || req.IP.Is4In6() {
			t.Errorf("IP %v: want no zone and no IPv4-mapped form", req.IP)
		}
		if req.Action != policy.Read && req.Action != policy.Write && req.Action != policy.Delete {
			t.Errorf("action %v: want read, write or delete", req.Action)
		}
		if req.Token != "" && !strings.Contains(path, req.Token) && !strings.Contains(authorization, req.Token) && !strings.Contains(apiKey, req.Token) && utf8.ValidString(req.Token) && !strings.ContainsAny(path, "%+") {
			t.Errorf("token %q came from nowhere", req.Token)
		}
	})
}

// FuzzRouteRules fuzzes route templates and the paths matched against
// them. A rule NewRoutes accepts must never make Check fail, and a captured
// field is either empty (no match) or one whole path segment.
func FuzzRouteRules(f *testing.F) {
	f.Add("GET", "/data/{dataset}/...", "{dataset}", "GET", "/data/sales.q1/rows?x=1")
	f.Add("", "/sql/{connection}", "{connection}", "POST", "/sql/warehouse")
	f.Add("post", "/v1/{a}/{b}/rows", "{b}", "POST", "/v1/x/y/rows")
	f.Add("*", "/…", "fixed", "DELETE", "/anything/at/all")
	f.Add("GET", "/", "{x}", "GET", "/")
	f.Add("GET", "/a/{x}/", "{x}", "GET", "/a/b/")
	f.Add("GET", "/a//{x}", "{x}", "GET", "/a//b")
	f.Add("GET", "/{x}/...", "{x}", "GET", "//")
	f.Fuzz(func(t *testing.T, ruleMethod, template, dataset, method, path string) {
		routes, err := extauthz.NewRoutes([]extauthz.RouteRule{{Method: ruleMethod, Path: template, API: "data", Dataset: dataset}})
		if err != nil {
			return
		}
		d := &fakeDecider{}
		cr := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Headers: map[string]string{":path": path, ":method": method},
		}}}}
		resp, err := extauthz.NewServer(d, extauthz.Config{Routes: routes, AllowUnmatchedRoutes: true}, discard, nil).Check(context.Background(), cr)
		if err != nil {
			t.Fatalf("Check: %v for rule %q %q", err, ruleMethod, template)
		}
		if code := policy.DenyCode(resp.GetDynamicMetadata().GetFields()["code"].GetStringValue()); refused[code] {
			return
		}
		got := d.Last(t)
		if got.API == "" {
			if got.Dataset != "" {
				t.Errorf("no rule matched but Dataset is %q", got.Dataset)
			}
			return
		}
		if len(dataset) >= 2 && dataset[0] == '{' && dataset[len(dataset)-1] == '}' {
			if got.Dataset == "" || got.Dataset == dataset || strings.Contains(got.Dataset, "/") {
				t.Errorf("rule %q, path %q: captured Dataset %q, want one non-empty segment", template, path, got.Dataset)
			}
		} else if got.Dataset != dataset {
			t.Errorf("Dataset: got %q, want the rule's literal %q", got.Dataset, dataset)
		}
	})
}
