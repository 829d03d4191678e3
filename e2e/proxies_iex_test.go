package e2e_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
)

// The IEX Cloud names of a request's cost (docs/responses.md).
var (
	iexCoreHeaders    = []string{"Iexcloud-Messages-Used", "Iexcloud-Credits-Used"}
	iexPremiumHeaders = []string{"Iexcloud-Premium-Messages-Used", "Iexcloud-Premium-Credits-Used"}
)

// iexCase is one request through a proxy in front of a server run with
// --response-profile iex, and what an IEX Cloud client must read.
type iexCase struct {
	name   string
	path   string
	header map[string]string
	status int
	// body is IEX's plain-text message on a deny; "" is an allow.
	body string
	// cost is the request's cost under the iex headers of its tier, on an
	// allow; premium says which names.
	cost    string
	premium bool
	// limited marks a token with a credit limit, whose allows report it.
	limited bool
	// nginxOnly marks a request the shipped Caddyfile cannot route (it
	// gives every request the core dataset "prices").
	nginxOnly bool
}

// TestProxiesIEX sends requests through real nginx and Caddy, with the
// shipped configs unchanged, in front of a tollgate answering as IEX
// Cloud: the caller must get IEX's statuses, plain-text bodies and content
// type, and the request's cost under the iexcloud-* names, on allows and
// denies alike.
func TestProxiesIEX(t *testing.T) {
	t.Parallel()
	eachProxy(t, testProxyIEX)
}

func testProxyIEX(t *testing.T, proxy string) {
	db, dbURL := MustOpenDB(t)
	acc := MustCreateAccount(t, db, "IEX Co", true)
	token := func(edit func(*policy.Token)) string {
		_, v := MustCreateToken(t, db, acc.ID, func(tok *policy.Token) {
			tok.Datasets = map[string]policy.Actions{"prices": policy.Actions(policy.Read), "orderbook": policy.Actions(policy.Read)}
			tok.Premium = true
			edit(tok)
		})
		return v
	}
	basic := token(func(*policy.Token) {})
	domain := token(func(tok *policy.Token) { tok.Domains = []string{"app.example.com"} })
	credit := token(func(tok *policy.Token) { tok.CreditLimit = ptrTo[int64](1) })
	rate := token(func(tok *policy.Token) { tok.RateLimit = &policy.RateLimit{RPS: 1, Burst: 1} })

	// The shipped nginx.conf leaves every path but /v1/prices to the route
	// rules: a premium dataset there.
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte("- method: GET\n  path: \"/v1/orderbook/{symbol}\"\n  api: data\n  dataset: orderbook\n  tier: premium\n  action: read\n  cost: 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	authzAddr := freeAddr(t)
	startReplica(t, "tollgate", dbURL, "--authz-http-addr", authzAddr, "--response-profile", "iex", "--route-rules", rules)
	up := startUpstream(t)
	listen := freeAddr(t)
	switch proxy {
	case "nginx":
		startNginx(t, authzAddr, up.addr, listen)
	case "caddy":
		startCaddy(t, authzAddr, up.addr, listen)
	}

	key := func(v string) map[string]string { return map[string]string{"X-Api-Key": v} }
	cases := []iexCase{
		{name: "allowed, core", path: "/v1/prices/AAPL", header: key(basic), status: 200, cost: "1"},
		{name: "allowed, the caller's own iex header", path: "/v1/prices/AAPL", status: 200, cost: "1",
			header: map[string]string{"X-Api-Key": basic, "Iexcloud-Messages-Used": "999"}},
		{name: "allowed, premium", path: "/v1/orderbook/AAPL", header: key(basic), status: 200, cost: "5", premium: true, nginxOnly: true},
		{name: "no token", path: "/v1/prices/AAPL", status: 401,
			body: "An API key is required to access the requested endpoint."},
		{name: "unknown token", path: "/v1/prices/AAPL", header: key(unknownToken()), status: 403,
			body: "The API key provided is not valid."},
		{name: "bad Referer", path: "/v1/prices/AAPL", header: map[string]string{"X-Api-Key": domain, "Referer": "https://evil.example/"}, status: 401,
			body: "The referer in the request header is not allowed. Please check the associated domain(s) for this API key"},
		{name: "credit limit, first", path: "/v1/prices/AAPL", header: key(credit), status: 200, cost: "1", limited: true},
		{name: "credit limit, spent", path: "/v1/prices/AAPL", header: key(credit), status: 402,
			body: "You have exceeded your allotted message quota and pay-as-you-go is not enabled."},
		{name: "rate limit, first", path: "/v1/prices/AAPL", header: key(rate), status: 200, cost: "1"},
		{name: "rate limit, second", path: "/v1/prices/AAPL", header: key(rate), status: 429,
			body: "Too many requests hit the API too quickly. An exponential backoff of your requests is recommended."},
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for _, tc := range cases {
		if tc.nginxOnly && proxy != "nginx" {
			continue
		}
		resp, body := iexGet(t, client, "http://"+listen+tc.path, tc.header)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status got %d, want %d (body %q, headers %v)", tc.name, resp.StatusCode, tc.status, body, resp.Header)
			continue
		}
		if tc.body == "" {
			checkIEXAllow(t, tc, resp, body, up)
			continue
		}
		if body != tc.body {
			t.Errorf("%s: body got %q, want IEX's %q", tc.name, body, tc.body)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
			t.Errorf("%s: Content-Type got %q, want text/plain; charset=utf-8", tc.name, ct)
		}
		// What Tollgate itself answered to the same request (a deny spends
		// nothing, so asking again changes nothing): its usage headers
		// must reach the caller as they are.
		direct, _ := iexGet(t, client, "http://"+authzAddr+"/forward-auth", withForwarded(tc))
		if direct.StatusCode != tc.status {
			t.Fatalf("%s: tollgate itself answered %d, want %d", tc.name, direct.StatusCode, tc.status)
		}
		for _, h := range append(append([]string{"X-Credits-Used", "X-Credits-Limit", "X-Credits-Remaining"}, iexCoreHeaders...), iexPremiumHeaders...) {
			if got, want := resp.Header.Values(h), direct.Header.Values(h); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("%s: %s got %q, want tollgate's %q", tc.name, h, got, want)
			}
		}
		checkDenyHeaders(t, tc.name, tc.status, resp.Header)
		switch tc.status {
		case http.StatusPaymentRequired:
			// A metered deny: the usage headers are there to compare.
			if resp.Header.Get(iexCoreHeaders[0]) == "" || resp.Header.Get("X-Credits-Remaining") != "0" {
				t.Errorf("%s: usage headers got %v, want the iex cost and 0 remaining", tc.name, resp.Header)
			}
		}
	}
}

// checkIEXAllow checks an allow as an IEX client reads it: the upstream's
// answer and the request's cost under the names of its tier, one value
// each, and none of them sent on to the upstream by Tollgate.
func checkIEXAllow(t *testing.T, tc iexCase, resp *http.Response, body string, up *upstream) {
	t.Helper()
	if body != "upstream ok" {
		t.Errorf("%s: body got %q, want the upstream's", tc.name, body)
	}
	want, none := iexCoreHeaders, iexPremiumHeaders
	if tc.premium {
		want, none = none, want
	}
	for _, h := range want {
		if got := resp.Header.Values(h); len(got) != 1 || got[0] != tc.cost {
			t.Errorf("%s: %s got %q, want [%s] (headers %v)", tc.name, h, got, tc.cost, resp.Header)
		}
	}
	for _, h := range none {
		if got := resp.Header.Values(h); len(got) != 0 {
			t.Errorf("%s: %s got %q, want none for this tier", tc.name, h, got)
		}
	}
	if !tc.limited {
		// No limit applies: no limit to report, and no text in its place.
		for _, h := range []string{"X-Credits-Limit", "X-Credits-Remaining"} {
			if got := resp.Header.Values(h); len(got) != 0 {
				t.Errorf("%s: %s got %q, want none (no limit)", tc.name, h, got)
			}
		}
	}
	seen, _ := up.last()
	if v := seen.header.Values("X-Tollgate-Dry-Run-Deny"); len(v) != 0 {
		t.Errorf("%s: the upstream got X-Tollgate-Dry-Run-Deny %q outside a dry run", tc.name, v)
	}
	for _, h := range append(append([]string(nil), iexCoreHeaders...), iexPremiumHeaders...) {
		if v := seen.header.Values(h); len(v) != 0 && tc.header[h] == "" {
			t.Errorf("%s: the upstream got %s %q, meant for the caller", tc.name, h, v)
		}
	}
}

// withForwarded is the request of tc as forward_auth hands it to Tollgate,
// with the route context the shipped configs give /v1/prices.
func withForwarded(tc iexCase) map[string]string {
	h := map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Uri": tc.path, "X-Forwarded-Host": "localhost",
		"X-Real-Ip": "127.0.0.1", "X-Tollgate-Api": "data", "X-Tollgate-Dataset": "prices", "X-Tollgate-Tier": "core"}
	for k, v := range tc.header {
		h[k] = v
	}
	return h
}

func iexGet(t *testing.T, client *http.Client, url string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}
