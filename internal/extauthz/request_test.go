package extauthz_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate/internal/extauthz"
	"github.com/tollgate/tollgate/internal/policy"
)

// fakeDecider records the requests it is asked about and answers with
// DecideFn, or allows when DecideFn is nil.
type fakeDecider struct {
	DecideFn func(*policy.Request) (policy.Decision, error)

	mu   sync.Mutex
	reqs []policy.Request
}

var _ extauthz.Decider = (*fakeDecider)(nil)

func (d *fakeDecider) Decide(_ context.Context, req *policy.Request) (policy.Decision, error) {
	d.mu.Lock()
	d.reqs = append(d.reqs, *req)
	d.mu.Unlock()
	if d.DecideFn != nil {
		return d.DecideFn(req)
	}
	return policy.Decision{Allow: true, TokenID: "tok_fake", AccountID: "acc_fake", Kind: policy.Publishable, Cost: req.Cost}, nil
}

// Last returns the last request the decider saw.
func (d *fakeDecider) Last(tb testing.TB) policy.Request {
	tb.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.reqs) == 0 {
		tb.Fatal("the decider was not asked")
	}
	return d.reqs[len(d.reqs)-1]
}

// denyAll answers every request with a deny.
func denyAll(code policy.DenyCode) func(*policy.Request) (policy.Decision, error) {
	return func(*policy.Request) (policy.Decision, error) {
		return policy.Decision{Code: code, Message: "denied by the fake"}, nil
	}
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// httpReq describes a request; check renders it as Envoy would.
type httpReq struct {
	method, path string
	headers      map[string]string
	raw          bool // header_map with raw_value instead of headers
	peer         string
	ext          map[string]string
}

func (r httpReq) check() *authv3.CheckRequest {
	method := r.method
	if method == "" {
		method = "GET"
	}
	h := map[string]string{":authority": "api.example.com", ":method": method, ":path": r.path, ":scheme": "https",
		"user-agent": "curl/8.5.0", "accept": "*/*", "x-request-id": "0f5e2a8e-6d1c-4a57-9a3c-5b0e1d2f3a4b"}
	for k, v := range r.headers {
		h[k] = v
	}
	hr := &authv3.AttributeContext_HttpRequest{Id: "17", Method: method, Path: r.path, Host: "api.example.com", Scheme: "https", Protocol: "HTTP/1.1"}
	if r.raw {
		hr.HeaderMap = &corev3.HeaderMap{}
		for k, v := range h {
			hr.HeaderMap.Headers = append(hr.HeaderMap.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(v)})
		}
	} else {
		hr.Headers = h
	}
	attrs := &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: hr}, ContextExtensions: r.ext}
	if r.peer != "" {
		attrs.Source = &authv3.AttributeContext_Peer{Address: sockAddr(r.peer)}
	}
	return &authv3.CheckRequest{Attributes: attrs}
}

func sockAddr(a string) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: a, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40123}}}}
}

// seen runs Check with cfg and returns the request the decider was asked.
func seen(tb testing.TB, cfg extauthz.Config, cr *authv3.CheckRequest) policy.Request {
	tb.Helper()
	d := &fakeDecider{}
	if _, err := extauthz.NewServer(d, cfg, discard, nil).Check(context.Background(), cr); err != nil {
		tb.Fatalf("Check: %v", err)
	}
	return d.Last(tb)
}

const (
	tokA = "pk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA000000"
	tokB = "pk_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB000000"
)

func TestCheckReadsToken(t *testing.T) {
	tests := map[string]struct {
		req      httpReq
		sources  []extauthz.TokenSource
		token    string
		conflict bool
	}{
		"query token":             {req: httpReq{path: "/v1/x?token=" + tokA}, token: tokA},
		"query api_key":           {req: httpReq{path: "/v1/x?a=1&api_key=" + tokA}, token: tokA},
		"bearer":                  {req: httpReq{path: "/v1/x", headers: map[string]string{"authorization": "Bearer " + tokA}}, token: tokA},
		"bearer mixed case":       {req: httpReq{path: "/v1/x", headers: map[string]string{"authorization": "bEaReR " + tokA}}, token: tokA},
		"bearer padded":           {req: httpReq{path: "/v1/x", headers: map[string]string{"authorization": "Bearer    " + tokA + " "}}, token: tokA},
		"bearer no space":         {req: httpReq{path: "/v1/x", headers: map[string]string{"authorization": "Bearer" + tokA}}},
		"bearer tab":              {req: httpReq{path: "/v1/x", headers: map[string]string{"authorization": "Bearer\t" + tokA}}},
		"bearer alone":            {req: httpReq{path: "/v1/x", headers: map[string]string{"authorization": "Bearer"}}},
		"bearer blank":            {req: httpReq{path: "/v1/x", headers: map[string]string{"authorization": "Bearer   "}}},
		"basic scheme":            {req: httpReq{path: "/v1/x", headers: map[string]string{"authorization": "Basic dXNlcjpwYXNz"}}},
		"token scheme":            {req: httpReq{path: "/v1/x", headers: map[string]string{"authorization": "Token " + tokA}}},
		"x-api-key":               {req: httpReq{path: "/v1/x", headers: map[string]string{"x-api-key": " " + tokA + " "}}, token: tokA},
		"raw x-api-key":           {req: httpReq{raw: true, path: "/v1/x", headers: map[string]string{"x-api-key": tokA}}, token: tokA},
		"raw bearer":              {req: httpReq{raw: true, path: "/v1/x", headers: map[string]string{"authorization": "Bearer " + tokA}}, token: tokA},
		"percent-encoded":         {req: httpReq{path: "/v1/x?token=pk%5F" + tokA[3:len(tokA)-1] + "%30"}, token: tokA},
		"plus is a space":         {req: httpReq{path: "/v1/x?token=pk+A"}, token: "pk A"},
		"empty value":             {req: httpReq{path: "/v1/x?token="}},
		"no value":                {req: httpReq{path: "/v1/x?token&api_key"}},
		"double ampersands":       {req: httpReq{path: "/v1/x?&&token=" + tokA + "&&"}, token: tokA},
		"key is case-sensitive":   {req: httpReq{path: "/v1/x?TOKEN=" + tokA}},
		"key is decoded":          {req: httpReq{path: "/v1/x?%74oken=" + tokA}, token: tokA},
		"only in path":            {req: httpReq{path: "/v1/token=" + tokA}},
		"after a fragment-ish ?":  {req: httpReq{path: "/v1/x?a=b?token=" + tokA}},
		"value with =":            {req: httpReq{path: "/v1/x?token=" + tokA + "=="}, token: tokA + "=="},
		"query and header differ": {req: httpReq{path: "/v1/x?token=" + tokA, headers: map[string]string{"x-api-key": tokB}}, token: tokA, conflict: true},
		"order decides first": {
			req:     httpReq{path: "/v1/x?token=" + tokA, headers: map[string]string{"x-api-key": tokB}},
			sources: []extauthz.TokenSource{extauthz.SourceAPIKey, extauthz.SourceQueryToken},
			token:   tokB, conflict: true,
		},
		"disabled source ignored": {
			req:     httpReq{path: "/v1/x?token=" + tokA, headers: map[string]string{"authorization": "Bearer " + tokB}},
			sources: []extauthz.TokenSource{extauthz.SourceBearer},
			token:   tokB,
		},
		"only in disabled source": {
			req:     httpReq{path: "/v1/x?api_key=" + tokA},
			sources: []extauthz.TokenSource{extauthz.SourceQueryToken, extauthz.SourceAPIKey},
		},
		"bearer and x-api-key same": {req: httpReq{path: "/v1/x", headers: map[string]string{"authorization": "Bearer " + tokA, "x-api-key": tokA}}, token: tokA},
		"all four same":             {req: httpReq{path: "/v1/x?token=" + tokA + "&api_key=" + tokA, headers: map[string]string{"authorization": "Bearer " + tokA, "x-api-key": tokA}}, token: tokA},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := seen(t, extauthz.Config{TokenSources: tc.sources, AllowUnmatchedRoutes: true}, tc.req.check())
			if got.Token != tc.token {
				t.Errorf("Token: got %q, want %q", got.Token, tc.token)
			}
			if got.TokenConflict != tc.conflict {
				t.Errorf("TokenConflict: got %v, want %v", got.TokenConflict, tc.conflict)
			}
		})
	}
}

func TestCheckManyQueryParams(t *testing.T) {
	junk := strings.Repeat("a=1&", 9_999)
	tests := map[string]struct {
		path  string
		token string
	}{
		"token is the 10,000th": {"/v1/x?" + junk + "token=" + tokA, tokA},
		"token is the 10,001st": {"/v1/x?" + junk + "a=1&token=" + tokA, tokA},
		"token first of 10,001": {"/v1/x?token=" + tokA + "&" + junk + "a=1", tokA},
		"10,000 empty params":   {"/v1/x?" + strings.Repeat("&", 10_000) + "token=" + tokA, tokA},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := seen(t, extauthz.Config{AllowUnmatchedRoutes: true}, httpReq{path: tc.path}.check()).Token; got != tc.token {
				t.Errorf("Token: got %q, want %q", got, tc.token)
			}
		})
	}
}

func TestCheckReadsClientIP(t *testing.T) {
	tests := map[string]struct {
		peer string
		xff  string
		hops int
		want string // "" means unknown
	}{
		"v4 peer":                {peer: "203.0.113.5", want: "203.0.113.5"},
		"v6 peer":                {peer: "2001:db8::1", want: "2001:db8::1"},
		"v6 peer with zone":      {peer: "fe80::1%eth0", want: "fe80::1"},
		"v4-mapped peer":         {peer: "::ffff:203.0.113.5", want: "203.0.113.5"},
		"no peer":                {},
		"peer not an address":    {peer: "localhost"},
		"xff ignored by default": {peer: "10.0.0.2", xff: "203.0.113.5", want: "10.0.0.2"},
		"one hop":                {peer: "10.0.0.2", xff: "198.51.100.1, 203.0.113.5", hops: 1, want: "203.0.113.5"},
		"two hops":               {peer: "10.0.0.2", xff: "198.51.100.1, 203.0.113.5", hops: 2, want: "198.51.100.1"},
		"two hops, spoofed left": {peer: "10.0.0.2", xff: "6.6.6.6,198.51.100.1,203.0.113.5", hops: 2, want: "198.51.100.1"},
		"too few entries":        {peer: "10.0.0.2", xff: "203.0.113.5", hops: 2},
		"no xff with hops":       {peer: "10.0.0.2", hops: 1},
		"empty entry":            {peer: "10.0.0.2", xff: "203.0.113.5, ", hops: 1},
		"entry not an address":   {peer: "10.0.0.2", xff: "unknown", hops: 1},
		"v6 entry":               {peer: "10.0.0.2", xff: "2001:db8::7", hops: 1, want: "2001:db8::7"},
		"v4-mapped entry":        {peer: "10.0.0.2", xff: "::ffff:203.0.113.5", hops: 1, want: "203.0.113.5"},
		"entry with port":        {peer: "10.0.0.2", xff: "203.0.113.5:4711", hops: 1, want: "203.0.113.5"},
		"bracketed v6 with port": {peer: "10.0.0.2", xff: "[2001:db8::7]:443", hops: 1, want: "2001:db8::7"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := httpReq{path: "/", peer: tc.peer}
			if tc.xff != "" {
				r.headers = map[string]string{"x-forwarded-for": tc.xff}
			}
			got := seen(t, extauthz.Config{TrustedHops: tc.hops, AllowUnmatchedRoutes: true}, r.check()).IP
			var want netip.Addr
			if tc.want != "" {
				want = netip.MustParseAddr(tc.want)
			}
			if got != want {
				t.Errorf("IP: got %v, want %v", got, want)
			}
		})
	}
	t.Run("unix socket peer", func(t *testing.T) {
		cr := httpReq{path: "/"}.check()
		cr.Attributes.Source = &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/run/envoy.sock"}}}}
		if got := seen(t, extauthz.Config{AllowUnmatchedRoutes: true}, cr).IP; got.IsValid() {
			t.Errorf("IP: got %v, want none", got)
		}
	})
}

func TestCheckReadsBrowserMarks(t *testing.T) {
	tests := map[string]struct {
		headers         map[string]string
		referer, origin string
		browser         bool
	}{
		"none":           {},
		"referer only":   {headers: map[string]string{"referer": "https://a.example/"}, referer: "https://a.example/", browser: true},
		"origin":         {headers: map[string]string{"origin": "https://a.example"}, origin: "https://a.example", browser: true},
		"sec-fetch-site": {headers: map[string]string{"sec-fetch-site": "none"}, browser: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := seen(t, extauthz.Config{AllowUnmatchedRoutes: true}, httpReq{path: "/", headers: tc.headers}.check())
			if got.Referer != tc.referer || got.Origin != tc.origin || got.FromBrowser != tc.browser {
				t.Errorf("got referer %q, origin %q, browser %v; want %q, %q, %v", got.Referer, got.Origin, got.FromBrowser, tc.referer, tc.origin, tc.browser)
			}
		})
	}
}

func mustRoutes(tb testing.TB, rules ...extauthz.RouteRule) *extauthz.Routes {
	tb.Helper()
	r, err := extauthz.NewRoutes(rules)
	if err != nil {
		tb.Fatalf("NewRoutes: %v", err)
	}
	return r
}

func cost(n int64) *int64 { return &n }

// routeFields are the parts of a request that describe what it is.
type routeFields struct {
	API, Dataset, Connection, Source string
	Tier                             policy.Tier
	Action                           policy.Action
	Cost                             int64
}

func fieldsOf(r policy.Request) routeFields {
	return routeFields{API: r.API, Dataset: r.Dataset, Connection: r.Connection, Source: r.Source,
		Tier: r.Tier, Action: r.Action, Cost: r.Cost}
}

func TestCheckReadsRoute(t *testing.T) {
	routes := mustRoutes(t,
		extauthz.RouteRule{Method: "get", Path: "/data/{dataset}/...", API: "data", Dataset: "{dataset}", Tier: "core"},
		extauthz.RouteRule{Method: "POST", Path: "/data/{dataset}/rows", API: "data", Dataset: "{dataset}", Cost: cost(3)},
		extauthz.RouteRule{Path: "/sql/{connection}", API: "sql", Connection: "{connection}"},
		extauthz.RouteRule{Path: "/lds/{connection}/{source}/…", API: "lds", Connection: "{connection}", Source: "{source}", Action: "read"},
		extauthz.RouteRule{Method: "GET", Path: "/data/{dataset}", API: "never", Dataset: "shadowed by the first rule"},
	)
	cfg := extauthz.Config{Routes: routes, AllowUnmatchedRoutes: true}
	tests := map[string]struct {
		req  httpReq
		want routeFields
	}{
		"no route":                 {httpReq{path: "/other"}, routeFields{Action: policy.Read, Cost: 1}},
		"GET reads":                {httpReq{method: "GET", path: "/other"}, routeFields{Action: policy.Read, Cost: 1}},
		"HEAD reads":               {httpReq{method: "HEAD", path: "/other"}, routeFields{Action: policy.Read, Cost: 1}},
		"POST writes":              {httpReq{method: "POST", path: "/other"}, routeFields{Action: policy.Write, Cost: 1}},
		"PUT writes":               {httpReq{method: "PUT", path: "/other"}, routeFields{Action: policy.Write, Cost: 1}},
		"PATCH writes":             {httpReq{method: "PATCH", path: "/other"}, routeFields{Action: policy.Write, Cost: 1}},
		"DELETE deletes":           {httpReq{method: "DELETE", path: "/other"}, routeFields{Action: policy.Delete, Cost: 1}},
		"rule capture":             {httpReq{path: "/data/sales.q1/rows?x=1"}, routeFields{API: "data", Dataset: "sales.q1", Tier: policy.TierCore, Action: policy.Read, Cost: 1}},
		"rule rest empty":          {httpReq{path: "/data/sales.q1"}, routeFields{API: "data", Dataset: "sales.q1", Tier: policy.TierCore, Action: policy.Read, Cost: 1}},
		"rule merged slashes":      {httpReq{path: "/data//rows"}, routeFields{API: "data", Dataset: "rows", Tier: policy.TierCore, Action: policy.Read, Cost: 1}},
		"rule method and cost":     {httpReq{method: "POST", path: "/data/sales.q1/rows"}, routeFields{API: "data", Dataset: "sales.q1", Action: policy.Write, Cost: 3}},
		"rule method mismatch":     {httpReq{method: "DELETE", path: "/data/sales.q1/rows"}, routeFields{Action: policy.Delete, Cost: 1}},
		"rule any method":          {httpReq{method: "POST", path: "/sql/warehouse?q=SELECT%0A++1"}, routeFields{API: "sql", Connection: "warehouse", Source: "SELECT 1", Action: policy.Write, Cost: 1}},
		"rule action and ellipsis": {httpReq{method: "POST", path: "/lds/carto/geocoder/v1/run"}, routeFields{API: "lds", Connection: "carto", Source: "geocoder", Action: policy.Read, Cost: 1}},
		"extensions win": {
			httpReq{method: "DELETE", path: "/data/sales.q1/rows", ext: map[string]string{"api": "data", "dataset": "prices", "tier": "premium", "action": "read", "cost": "7"}},
			routeFields{API: "data", Dataset: "prices", Tier: policy.TierPremium, Action: policy.Read, Cost: 7},
		},
		"one route key is enough": {httpReq{path: "/data/sales.q1/rows", ext: map[string]string{"cost": "2"}}, routeFields{Action: policy.Read, Cost: 2}},
		"empty route key counts":  {httpReq{path: "/data/sales.q1/rows", ext: map[string]string{"api": ""}}, routeFields{Action: policy.Read, Cost: 1}},
		"other keys fall back":    {httpReq{path: "/data/sales.q1/rows", ext: map[string]string{"virtual_host": "edge"}}, routeFields{API: "data", Dataset: "sales.q1", Tier: policy.TierCore, Action: policy.Read, Cost: 1}},
		"cost zero":               {httpReq{path: "/x", ext: map[string]string{"cost": "0"}}, routeFields{Action: policy.Read, Cost: 0}},
		"cost max":                {httpReq{path: "/x", ext: map[string]string{"cost": "1000000"}}, routeFields{Action: policy.Read, Cost: 1_000_000}},
		"sql q normalised":        {httpReq{path: "/x?q=%20SELECT%09*%0D%0AFROM++t%20", ext: map[string]string{"api": "sql", "connection": "w"}}, routeFields{API: "sql", Connection: "w", Source: "SELECT * FROM t", Action: policy.Read, Cost: 1}},
		"sql source from route":   {httpReq{path: "/x?q=SELECT+2", ext: map[string]string{"api": "sql", "connection": "w", "source": "SELECT 1"}}, routeFields{API: "sql", Connection: "w", Source: "SELECT 1", Action: policy.Read, Cost: 1}},
		"sql q too long":          {httpReq{path: "/x?q=" + strings.Repeat("x", 64<<10+1), ext: map[string]string{"api": "sql", "connection": "w"}}, routeFields{API: "sql", Connection: "w", Action: policy.Read, Cost: 1}},
		"q only for sql":          {httpReq{path: "/x?q=SELECT+1", ext: map[string]string{"api": "data", "connection": "w"}}, routeFields{API: "data", Connection: "w", Action: policy.Read, Cost: 1}},
		"grant-free api":          {httpReq{path: "/x", ext: map[string]string{"api": "lds", "connection": "w"}}, routeFields{API: "lds", Connection: "w", Action: policy.Read, Cost: 1}},
		"api needing grants":      {httpReq{path: "/x", ext: map[string]string{"api": "maps", "connection": "w"}}, routeFields{API: "maps", Connection: "w", Action: policy.Read, Cost: 1}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := fieldsOf(seen(t, cfg, tc.req.check())); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestCheckRouteConfigError(t *testing.T) {
	tests := map[string]map[string]string{
		"tier gold":       {"tier": "gold"},
		"tier upper-case": {"tier": "Core"},
		"action unknown":  {"action": "destroy"},
		"cost negative":   {"cost": "-1"},
		"cost fraction":   {"cost": "0.5"},
		"cost too big":    {"cost": "1000001"},
		"cost overflow":   {"cost": "99999999999999999999"},
		"cost spaces":     {"cost": " 1"},
	}
	for name, ext := range tests {
		t.Run(name, func(t *testing.T) {
			d := &fakeDecider{}
			var observed policy.DenyCode
			srv := extauthz.NewServer(d, extauthz.Config{}, discard, func(d policy.Decision, _ error, _ time.Duration) { observed = d.Code })
			resp, err := srv.Check(context.Background(), httpReq{path: "/?token=" + tokA, ext: ext}.check())
			if err != nil {
				// An error is an allow under failure_mode_allow.
				t.Fatalf("got gRPC error %v, want a deny", err)
			}
			expectRefused(t, resp, policy.CodeRouteMisconfigured)
			if len(d.reqs) != 0 {
				t.Errorf("the decider was asked %d times, want none", len(d.reqs))
			}
			if observed != policy.CodeRouteMisconfigured {
				t.Errorf("the observer heard %q, want %q", observed, policy.CodeRouteMisconfigured)
			}
		})
	}
}

func TestNewRoutesRefuses(t *testing.T) {
	tests := map[string]extauthz.RouteRule{
		"relative path":        {Path: "data/{d}"},
		"doubled slash":        {Path: "/data//{d}"},
		"dot segment":          {Path: "/data/../{d}"},
		"escaped letter":       {Path: "/d%61ta/{d}"},
		"lower-case escape":    {Path: "/data%3a/{d}"},
		"escaped slash":        {Path: "/data%2F{d}"},
		"capture in a segment": {Path: "/data/x{d}"},
		"empty capture":        {Path: "/data/{}"},
		"repeated capture":     {Path: "/data/{d}/{d}"},
		"field not captured":   {Path: "/data/{d}", Dataset: "{other}"},
		"bad tier":             {Path: "/data", Tier: "gold"},
		"bad action":           {Path: "/data", Action: "nuke"},
		"negative cost":        {Path: "/data", Cost: cost(-1)},
	}
	for name, rule := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := extauthz.NewRoutes([]extauthz.RouteRule{rule}); err == nil {
				t.Errorf("got no error, want one for %+v", rule)
			}
		})
	}
}

// With encode_raw_headers Envoy sends a repeated header as separate
// header_map entries: a second, different token in another x-api-key or
// authorization entry is a conflict.
func TestCheckRepeatedRawHeaderConflict(t *testing.T) {
	for _, name := range []string{"x-api-key", "authorization"} {
		t.Run(name, func(t *testing.T) {
			prefix := ""
			if name == "authorization" {
				prefix = "Bearer "
			}
			cr := httpReq{raw: true, path: "/v1/x", headers: map[string]string{name: prefix + tokA}}.check()
			hm := cr.Attributes.Request.Http.HeaderMap
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: name, RawValue: []byte(prefix + tokB)})
			if got := seen(t, extauthz.Config{AllowUnmatchedRoutes: true}, cr); !got.TokenConflict {
				t.Errorf("TokenConflict: got false with %s %q and %q, want true", name, prefix+tokA, prefix+tokB)
			}
		})
	}
}

// TestRouteRuleTooManyCaptures: a rule with more captures than matching
// keeps is refused up front, rather than a capture going missing.
func TestRouteRuleTooManyCaptures(t *testing.T) {
	_, err := extauthz.NewRoutes([]extauthz.RouteRule{{Path: "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}", API: "data", Dataset: "{i}"}})
	if err == nil || !strings.Contains(err.Error(), "at most 8") {
		t.Errorf("NewRoutes with 9 captures: got %v, want an error naming the limit", err)
	}
}

func TestCheckEmptyRequests(t *testing.T) {
	tests := map[string]*authv3.CheckRequest{
		"nil":                    nil,
		"empty":                  {},
		"attributes only":        {Attributes: &authv3.AttributeContext{}},
		"request without http":   {Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{}}},
		"http without anything":  {Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{}}}},
		"source without address": {Attributes: &authv3.AttributeContext{Source: &authv3.AttributeContext_Peer{}}},
		"empty header map":       {Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{nil, {}}}}}}},
	}
	for name, cr := range tests {
		t.Run(name, func(t *testing.T) {
			d := &fakeDecider{DecideFn: denyAll(policy.CodeTokenMissing)}
			srv := extauthz.NewServer(d, extauthz.Config{StripCredentials: true, Routes: mustRoutes(t, extauthz.RouteRule{Path: "/..."})}, discard, nil)
			resp, err := srv.Check(context.Background(), cr)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			// No method and no path: nothing Envoy sends, refused before
			// any token is looked for.
			expectRefused(t, resp, policy.CodeMethodUnknown)
			if len(d.reqs) != 0 {
				t.Errorf("the decider was asked %d times, want none", len(d.reqs))
			}
		})
	}
}

func TestCheckAnswers(t *testing.T) {
	for _, code := range policy.DenyCodes() {
		t.Run(string(code), func(t *testing.T) {
			d := &fakeDecider{DecideFn: func(*policy.Request) (policy.Decision, error) {
				return policy.Decision{Code: code, Message: `say "no" <politely>`, TokenID: "tok_1"}, nil
			}}
			resp, err := extauthz.NewServer(d, extauthz.Config{AllowUnmatchedRoutes: true}, discard, nil).Check(context.Background(), httpReq{path: "/?token=" + tokA}.check())
			if err != nil {
				t.Fatal(err)
			}
			denied := resp.GetDeniedResponse()
			if got, want := int(denied.GetStatus().GetCode()), extauthz.DenyStatus(code); got != want {
				t.Errorf("HTTP status: got %d, want %d", got, want)
			}
			var body struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if err := json.Unmarshal([]byte(denied.GetBody()), &body); err != nil {
				t.Fatalf("body %q: %v", denied.GetBody(), err)
			}
			if body.Error.Code != string(code) || body.Error.Message != `say "no" <politely>` {
				t.Errorf("body: got %+v, want code %s and the message", body.Error, code)
			}
			if strings.Contains(denied.GetBody(), tokA) {
				t.Errorf("body %q repeats the token", denied.GetBody())
			}
		})
	}
	t.Run("dry run", func(t *testing.T) {
		d := &fakeDecider{DecideFn: denyAll(policy.CodeDatasetDenied)}
		resp, err := extauthz.NewServer(d, extauthz.Config{DryRun: true, AllowUnmatchedRoutes: true}, discard, nil).Check(context.Background(), httpReq{path: "/"}.check())
		if err != nil {
			t.Fatal(err)
		}
		var mark string
		for _, h := range resp.GetOkResponse().GetHeaders() {
			if h.GetHeader().GetKey() == extauthz.HeaderDryRun {
				mark = h.GetHeader().GetValue()
			}
		}
		if mark != string(policy.CodeDatasetDenied) {
			t.Errorf("%s: got %q, want %q", extauthz.HeaderDryRun, mark, policy.CodeDatasetDenied)
		}
	})
}

func TestCheckCannotDecide(t *testing.T) {
	tests := map[string]struct {
		err  error
		want codes.Code
	}{
		"store unavailable": {&policy.Error{Code: policy.EUnavailable, Message: "down"}, codes.Unavailable},
		"cancelled lookup":  {&policy.Error{Code: policy.EUnavailable, Message: "abandoned", Err: context.Canceled}, codes.Unavailable},
		"deadline":          {context.DeadlineExceeded, codes.Unavailable},
		"internal":          {errors.New("boom"), codes.Internal},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			d := &fakeDecider{DecideFn: func(*policy.Request) (policy.Decision, error) { return policy.Decision{Allow: true}, tc.err }}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			resp, err := extauthz.NewServer(d, extauthz.Config{AllowUnmatchedRoutes: true}, discard, nil).Check(ctx, httpReq{path: "/?token=" + tokA}.check())
			if got := status.Code(err); got != tc.want {
				t.Errorf("got %v (response %v), want %v", err, resp, tc.want)
			}
		})
	}
}

func TestCheckLogsNoToken(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d := &fakeDecider{DecideFn: denyAll(policy.CodeTokenUnknown)}
	srv := extauthz.NewServer(d, extauthz.Config{DenyLogLevel: slog.LevelWarn, AllowUnmatchedRoutes: true}, log, nil)
	for _, r := range []httpReq{
		{path: "/v1/x?token=" + tokA},
		{path: "/v1/x", headers: map[string]string{"authorization": "Bearer " + tokA, "referer": "https://e.example/?token=" + tokA}},
		{path: "/v1/x", headers: map[string]string{"x-api-key": tokA}, ext: map[string]string{"tier": "bogus"}},
	} {
		srv.Check(context.Background(), r.check())
	}
	if !strings.Contains(logs.String(), `"level":"WARN","msg":"deny"`) {
		t.Errorf("logs %q: want a deny line at the configured level", logs.String())
	}
	if strings.Contains(logs.String(), tokA[3:]) {
		t.Errorf("logs %q hold the token", logs.String())
	}
}
