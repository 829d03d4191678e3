package extauthz_test

import (
	"context"
	"encoding/json"
	"net/netip"
	"net/url"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/tollgate/tollgate/internal/extauthz"
	"github.com/tollgate/tollgate/internal/policy"
)

// expectRefused checks a deny with code, in the metadata, the body and the
// status.
func expectRefused(tb testing.TB, resp *authv3.CheckResponse, code policy.DenyCode) {
	tb.Helper()
	denied := resp.GetDeniedResponse()
	if denied == nil {
		tb.Fatalf("got %v, want a deny with %s", resp, code)
	}
	if got := policy.DenyCode(resp.GetDynamicMetadata().GetFields()["code"].GetStringValue()); got != code {
		tb.Fatalf("code: got %q, want %q", got, code)
	}
	var body struct {
		Error struct{ Code policy.DenyCode } `json:"error"`
	}
	if err := json.Unmarshal([]byte(denied.GetBody()), &body); err != nil || body.Error.Code != code {
		tb.Errorf("body %q: got code %q (%v), want %q", denied.GetBody(), body.Error.Code, err, code)
	}
	if got, want := int(denied.GetStatus().GetCode()), extauthz.DenyStatus(code); got != want {
		tb.Errorf("status: got %d, want %d", got, want)
	}
}

// readCase is a request and how Check must read it: refused with a code
// before any token is looked up, or passed to the decider as want says.
type readCase struct {
	req  httpReq
	code policy.DenyCode
	want func(tb testing.TB, r policy.Request)
}

func runReadCases(t *testing.T, cfg extauthz.Config, cases map[string]readCase) {
	t.Helper()
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			d := &fakeDecider{}
			resp, err := extauthz.NewServer(d, cfg, discard, nil).Check(context.Background(), tc.req.check())
			if err != nil {
				t.Fatalf("got gRPC error %v, want an answer", err)
			}
			if tc.code != "" {
				expectRefused(t, resp, tc.code)
				if len(d.reqs) != 0 {
					t.Errorf("the decider was asked, want a refusal before it")
				}
				return
			}
			r := d.Last(t)
			if tc.want != nil {
				tc.want(t, r)
			}
		})
	}
}

// route checks what the decider was told the request is.
func route(api, dataset string, act policy.Action) func(testing.TB, policy.Request) {
	return func(tb testing.TB, r policy.Request) {
		tb.Helper()
		if r.API != api || r.Dataset != dataset || r.Action != act {
			tb.Errorf("got api %q, dataset %q, action %v; want %q, %q, %v", r.API, r.Dataset, r.Action, api, dataset, act)
		}
	}
}

// TestRouteCatalogue: a request that no route classifies is denied, and a
// rule cannot be escaped by spelling its path or method another way.
func TestRouteCatalogue(t *testing.T) {
	routes := mustRoutes(t,
		extauthz.RouteRule{Method: "GET", Path: "/v1/x", API: "data", Dataset: "x"},
		extauthz.RouteRule{Method: "GET", Path: "/v2/data/{dataset}/...", API: "data", Dataset: "{dataset}"},
		extauthz.RouteRule{Method: "POST", Path: "/v2/data/{dataset}/rows", API: "data", Dataset: "{dataset}"},
		extauthz.RouteRule{Method: "GET", Path: "/v3/{api}/{dataset}", API: "{api}", Dataset: "{dataset}"},
	)
	key := map[string]string{"x-api-key": tokA}
	get := func(path string) httpReq { return httpReq{path: path, headers: key} }
	do := func(method, path string) httpReq { return httpReq{method: method, path: path, headers: key} }
	x := route("data", "x", policy.Read)
	cases := map[string]readCase{
		"rule":                         {req: get("/v1/x"), want: x},
		"no rule":                      {req: get("/v1/y"), code: policy.CodeRouteUnmatched},
		"no rule, deeper path":         {req: get("/v1/x/y"), code: policy.CodeRouteUnmatched},
		"rule's method only":           {req: do("POST", "/v1/x"), code: policy.CodeRouteUnmatched},
		"DELETE on a GET rule":         {req: do("DELETE", "/v2/data/sales/rows"), code: policy.CodeRouteUnmatched},
		"HEAD matches GET":             {req: do("HEAD", "/v1/x"), want: x},
		"OPTIONS is not GET":           {req: do("OPTIONS", "/v1/x"), code: policy.CodeRouteUnmatched},
		"doubled slash":                {req: get("//v1/x"), want: x},
		"doubled inner slash":          {req: get("/v1//x"), want: x},
		"dot segment":                  {req: get("/v1/./x"), want: x},
		"dot-dot segment":              {req: get("/v1/y/../x"), want: x},
		"escaped letter":               {req: get("/v1/%78"), want: x},
		"upper case":                   {req: get("/V1/x"), code: policy.CodeRouteUnmatched},
		"escaped dot-dot":              {req: get("/v2/data/%2e%2e/x"), code: policy.CodePathInvalid},
		"escaped slash":                {req: get("/v2/data/sales%2F..%2Fpayroll/rows"), code: policy.CodePathInvalid},
		"backslash":                    {req: get("/v2/data/sales\\..\\payroll"), code: policy.CodePathInvalid},
		"NUL":                          {req: get("/v2/data/sales\x00/rows"), code: policy.CodePathInvalid},
		"escaped NUL":                  {req: get("/v2/data/sales%00/rows"), code: policy.CodePathInvalid},
		"invalid escape":               {req: get("/v2/data/%zz/rows"), code: policy.CodePathInvalid},
		"invalid UTF-8":                {req: get("/v2/data/\xff/rows"), code: policy.CodePathInvalid},
		"above the root":               {req: get("/../v1/x"), code: policy.CodePathInvalid},
		"capture after merging":        {req: get("/v2/data//sales/rows"), want: route("data", "sales", policy.Read)},
		"capture decoded":              {req: get("/v2/data/s%61les/rows"), want: route("data", "sales", policy.Read)},
		"decoded API capture":          {req: get("/v3/%69mport/x"), want: route("import", "x", policy.Read)},
		"API capture keeps its case":   {req: get("/v3/Import/x"), want: route("Import", "x", policy.Read)},
		"unknown method":               {req: do("BREW", "/v1/x"), code: policy.CodeMethodUnknown},
		"lower-case method":            {req: do("get", "/v1/x"), code: policy.CodeMethodUnknown},
		"TRACE":                        {req: do("TRACE", "/v1/x"), code: policy.CodeMethodUnknown},
		"CONNECT":                      {req: do("CONNECT", "/v1/x"), code: policy.CodeMethodUnknown},
		"extensions classify":          {req: httpReq{path: "/anything", headers: key, ext: map[string]string{"api": "data"}}, want: route("data", "", policy.Read)},
		"extensions, unknown method":   {req: httpReq{method: "BREW", path: "/anything", headers: key, ext: map[string]string{"api": "data"}}, code: policy.CodeMethodUnknown},
		"extensions, ambiguous path":   {req: httpReq{path: "/a%2Fb", headers: key, ext: map[string]string{"api": "data"}}, code: policy.CodePathInvalid},
		"other extension keys only":    {req: httpReq{path: "/v1/y", headers: key, ext: map[string]string{"virtual_host": "edge"}}, code: policy.CodeRouteUnmatched},
		"unusable route configuration": {req: httpReq{path: "/v1/x", headers: key, ext: map[string]string{"tier": "gold"}}, code: policy.CodeRouteMisconfigured},
	}
	runReadCases(t, extauthz.Config{Routes: routes}, cases)

	t.Run("no rules at all", func(t *testing.T) {
		runReadCases(t, extauthz.Config{}, map[string]readCase{
			"unclassified": {req: get("/v1/x"), code: policy.CodeRouteUnmatched},
		})
	})
	t.Run("operator allows unmatched routes", func(t *testing.T) {
		runReadCases(t, extauthz.Config{Routes: routes, AllowUnmatchedRoutes: true}, map[string]readCase{
			"no rule":        {req: get("/v1/y"), want: route("", "", policy.Read)},
			"POST writes":    {req: do("POST", "/v1/y"), want: route("", "", policy.Write)},
			"DELETE deletes": {req: do("DELETE", "/v1/y"), want: route("", "", policy.Delete)},
			"still refused":  {req: get("/v1/%2e%2e/y"), code: policy.CodePathInvalid},
			"unknown method": {req: do("BREW", "/v1/y"), code: policy.CodeMethodUnknown},
		})
	})
}

// TestQueryCatalogue: Tollgate reads the query as the upstream's parser
// does, and refuses what two parsers could read differently.
func TestQueryCatalogue(t *testing.T) {
	sql := map[string]string{"api": "sql", "connection": "w"}
	q := func(query string) httpReq { return httpReq{path: "/x?" + query, ext: sql} }
	source := func(want string, unseen bool) func(testing.TB, policy.Request) {
		return func(tb testing.TB, r policy.Request) {
			tb.Helper()
			if r.Source != want || r.SourceUnseen != unseen {
				tb.Errorf("got source %q (unseen %v), want %q (unseen %v)", r.Source, r.SourceUnseen, want, unseen)
			}
		}
	}
	token := func(want string) func(testing.TB, policy.Request) {
		return func(tb testing.TB, r policy.Request) {
			tb.Helper()
			if r.Token != want || r.TokenConflict {
				tb.Errorf("got token %q (conflict %v), want %q", r.Token, r.TokenConflict, want)
			}
		}
	}
	granted, evil := url.QueryEscape("SELECT id FROM t"), url.QueryEscape("DELETE FROM t")
	cases := map[string]readCase{
		"q":                             {req: q("q=" + granted), want: source("SELECT id FROM t", false)},
		"escaped name is q":             {req: q("%71=" + evil + "&q=" + granted), code: policy.CodeParamRepeated},
		"q twice":                       {req: q("q=" + granted + "&q=" + evil), code: policy.CodeParamRepeated},
		"q twice, same":                 {req: q("q=" + granted + "&q=" + granted), code: policy.CodeParamRepeated},
		"q and an empty q":              {req: q("q=" + granted + "&q="), code: policy.CodeParamRepeated},
		"plus in the name":              {req: q("q+=" + evil + "&q=" + granted), want: source("SELECT id FROM t", false)},
		"semicolon separator":           {req: q("x=1;q=" + evil + "&q=" + granted), code: policy.CodeQueryInvalid},
		"invalid escape in a value":     {req: q("x=%zz&q=" + granted), code: policy.CodeQueryInvalid},
		"invalid escape in a name":      {req: q("%7=1&q=" + granted), code: policy.CodeQueryInvalid},
		"truncated escape":              {req: q("q=" + granted + "%2"), code: policy.CodeQueryInvalid},
		"q for another API is not read": {req: httpReq{path: "/x?q=1&q=2", ext: map[string]string{"api": "data"}}, want: source("", false)},
		"source named by the route":     {req: httpReq{path: "/x?q=1&q=2", ext: map[string]string{"api": "sql", "connection": "w", "source": "SELECT 1"}}, want: source("SELECT 1", false)},
		"POST may carry the SQL":        {req: httpReq{method: "POST", path: "/x?q=" + granted, ext: sql}, want: source("SELECT id FROM t", true)},
		"POST without q":                {req: httpReq{method: "POST", path: "/x", ext: sql}, want: source("", true)},
		"GET without q":                 {req: q(""), want: source("", false)},
		"token twice":                   {req: httpReq{path: "/x?token=" + tokA + "&token=" + tokA, ext: sql}, code: policy.CodeParamRepeated},
		"token and escaped token":       {req: httpReq{path: "/x?token=" + tokA + "&%74oken=" + tokB, ext: sql}, code: policy.CodeParamRepeated},
		"api_key twice":                 {req: httpReq{path: "/x?api_key=" + tokA + "&api_key=", ext: sql}, code: policy.CodeParamRepeated},
		"escaped token name":            {req: httpReq{path: "/x?%74%6Fken=" + tokA, ext: sql}, want: token(tokA)},
		"token beside other repeats":    {req: httpReq{path: "/x?a=1&a=2&token=" + tokA, ext: sql}, want: token(tokA)},
	}
	runReadCases(t, extauthz.Config{}, cases)
}

// FuzzQuery checks readQuery against Go's url.ParseQuery: the two refuse
// the same queries and read the same values, so the upstream and Tollgate
// never see different parameters.
func FuzzQuery(f *testing.F) {
	for _, s := range []string{"q=1", "%71=1&q=2", "token=a+b&api_key=%41", "a;q=1", "q=%zz", "&&q&=&", "q=%E2%80%A8", "%=", "q+=1&q%20=2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, query string) {
		got, err := extauthz.ReadQuery(query)
		want, werr := url.ParseQuery(query)
		if (err != nil) != (werr != nil) {
			t.Fatalf("%q: readQuery says %v, url.ParseQuery says %v", query, err, werr)
		}
		if err != nil {
			return
		}
		for name, p := range got {
			vs := want[name]
			if p.N != len(vs) {
				t.Fatalf("%q: %s seen %d times, url.ParseQuery %d", query, name, p.N, len(vs))
			}
			if p.N > 0 && p.Value != vs[len(vs)-1] {
				t.Fatalf("%q: %s is %q, url.ParseQuery %q", query, name, p.Value, vs[len(vs)-1])
			}
		}
	})
}

// TestXFFEnvoyExamples is the table of x-forwarded-for examples in Envoy's
// documentation (HTTP header manipulation, x-forwarded-for). Tollgate sees
// the header after Envoy: with use_remote_address Envoy has appended its
// peer, and it reports as the source the trusted client address it
// computed. So with --xff-trusted-hops 0 (the recommended setting: Envoy
// computes) the client is Envoy's answer. Counting itself, with
// --xff-trusted-hops set to Envoy's xff_num_trusted_hops + 1, Tollgate
// gets the same answer, except where Envoy would fall back to the peer
// (fewer entries than hops): there the address is unknown (self).
func TestXFFEnvoyExamples(t *testing.T) {
	tests := map[string]struct {
		xffSeen  string // as Envoy forwards it, "" when absent
		envoyN   int    // Envoy's xff_num_trusted_hops
		envoyOut string // Envoy's trusted client address: the peer it reports
		want     string
		self     string // counting itself, when it differs from want ("-": unknown)
	}{
		"1: edge, no trusted proxy": {
			xffSeen: "203.0.113.128, 203.0.113.10, 203.0.113.1, 192.0.2.10", envoyN: 0, envoyOut: "192.0.2.10", want: "192.0.2.10"},
		"2: internal behind the edge of 1": {
			xffSeen: "203.0.113.128, 203.0.113.10, 203.0.113.1, 192.0.2.10", envoyN: 0, envoyOut: "192.0.2.10", want: "192.0.2.10"},
		"3: edge, two trusted proxies": {
			xffSeen: "203.0.113.128, 203.0.113.10, 203.0.113.1, 192.0.2.10", envoyN: 2, envoyOut: "203.0.113.10", want: "203.0.113.10"},
		"4: internal behind the edge of 3": {
			xffSeen: "203.0.113.128, 203.0.113.10, 203.0.113.1, 192.0.2.10", envoyN: 2, envoyOut: "203.0.113.10", want: "203.0.113.10"},
		"5: internal, internal client, no xff": {
			envoyN: 0, envoyOut: "10.20.30.40", want: "10.20.30.40", self: "-"},
		"6: internal, from another internal proxy": {
			xffSeen: "10.20.30.40", envoyN: 0, envoyOut: "10.20.30.40", want: "10.20.30.40"},
		// Fewer entries than trusted hops: Envoy falls back to the peer.
		// (Example 5 is the same case for Tollgate counting itself.)
		"fewer entries than hops": {
			xffSeen: "192.0.2.10", envoyN: 2, envoyOut: "192.0.2.10", want: "192.0.2.10", self: "-"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			want := netip.MustParseAddr(tc.want)
			r := httpReq{path: "/", peer: tc.envoyOut}
			if tc.xffSeen != "" {
				r.headers = map[string]string{"x-forwarded-for": tc.xffSeen}
			}
			if got := seen(t, extauthz.Config{AllowUnmatchedRoutes: true}, r.check()).IP; got != want {
				t.Errorf("Envoy computes: got %v, want %v", got, want)
			}
			// Tollgate counting itself, the peer being the last hop.
			hops := tc.envoyN + 1
			switch tc.self {
			case "-":
				want = netip.Addr{}
			case "":
			default:
				want = netip.MustParseAddr(tc.self)
			}
			if got := seen(t, extauthz.Config{TrustedHops: hops, AllowUnmatchedRoutes: true}, r.check()).IP; got != want {
				t.Errorf("--xff-trusted-hops %d: got %v, want %v", hops, got, want)
			}
		})
	}
}

// TestXFFEveryLine: with raw headers Envoy lists each x-forwarded-for line
// on its own; the entries count from the right of all of them.
func TestXFFEveryLine(t *testing.T) {
	tests := map[string]struct {
		lines []string
		hops  int
		want  string // "" means unknown
	}{
		"last line, last entry":    {lines: []string{"198.51.100.1", "203.0.113.5"}, hops: 1, want: "203.0.113.5"},
		"second from the right":    {lines: []string{"198.51.100.1", "203.0.113.5"}, hops: 2, want: "198.51.100.1"},
		"across lines with commas": {lines: []string{"6.6.6.6, 198.51.100.1", "203.0.113.5, 192.0.2.1"}, hops: 3, want: "198.51.100.1"},
		"spoofed first line":       {lines: []string{"203.0.113.5", "198.51.100.1"}, hops: 1, want: "198.51.100.1"},
		"unparseable entry":        {lines: []string{"203.0.113.5", "not-an-ip"}, hops: 1},
		"empty entry":              {lines: []string{"203.0.113.5,"}, hops: 1},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cr := httpReq{raw: true, path: "/", peer: "10.0.0.2"}.check()
			hm := cr.Attributes.Request.Http.HeaderMap
			for _, l := range tc.lines {
				hm.Headers = append(hm.Headers, rawHeader("x-forwarded-for", l))
			}
			got := seen(t, extauthz.Config{TrustedHops: tc.hops, AllowUnmatchedRoutes: true}, cr).IP
			var want netip.Addr
			if tc.want != "" {
				want = netip.MustParseAddr(tc.want)
			}
			if got != want {
				t.Errorf("IP: got %v, want %v", got, want)
			}
		})
	}
}

// TestRefererIsABrowserMark: a secret token sent with only a Referer is
// from a browser as much as one sent with Origin.
func TestRefererIsABrowserMark(t *testing.T) {
	for name, h := range map[string]map[string]string{
		"referer":        {"referer": "https://app.example.com/"},
		"origin":         {"origin": "https://app.example.com"},
		"sec-fetch-site": {"sec-fetch-site": "same-origin"},
	} {
		t.Run(name, func(t *testing.T) {
			if got := seen(t, extauthz.Config{AllowUnmatchedRoutes: true}, httpReq{path: "/", headers: h}.check()); !got.FromBrowser {
				t.Errorf("FromBrowser: got false for %v, want true", h)
			}
		})
	}
	if got := seen(t, extauthz.Config{AllowUnmatchedRoutes: true}, httpReq{path: "/"}.check()); got.FromBrowser {
		t.Errorf("FromBrowser: got true with no browser header, want false")
	}
}

func rawHeader(k, v string) *corev3.HeaderValue {
	return &corev3.HeaderValue{Key: k, RawValue: []byte(v)}
}
