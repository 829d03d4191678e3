package server_test

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/extauthz"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/server"
	"github.com/tollgate/tollgate/internal/store"
)

// httpDialects are the ways the HTTP endpoint is asked: what each proxy
// sends for one original request.
var httpDialects = []string{"envoy", "nginx", "forward-auth"}

// httpAnswer is what an HTTP authorization answer says.
type httpAnswer struct {
	status int
	code   policy.DenyCode // "" when allowed
	header http.Header
	body   string
}

// TestHTTPSameDecisionAsCheck is the shared table: every request gets the
// same decision (the same code, the same token, the same status) from
// Check over gRPC and from the HTTP endpoint in each proxy's dialect.
func TestHTTPSameDecisionAsCheck(t *testing.T) {
	t.Parallel()
	f := MustSeed(t, store.Postgres)
	s := mustStartRouted(t, f, func(c *server.Config) { c.Listen.AuthzHTTP = "127.0.0.1:0" })
	V := f.V
	key := func(name string, kv ...string) map[string]string {
		return hdr(append([]string{"x-api-key", V(name)}, kv...)...)
	}
	core := ext("api", "data", "tier", "core")
	data := func(path string, h map[string]string) envoyRequest {
		return envoyRequest{Path: path, Headers: h, Ext: core}
	}
	q := url.QueryEscape
	granted := "SELECT id, total FROM public.orders WHERE total > 100"
	sql := ext("api", "sql", "connection", "warehouse")

	cases := map[string]checkCase{
		"token in the query":         {req: data("/v1/prices?token="+V("basic"), nil), token: "basic"},
		"token as api_key":           {req: data("/v1/prices?api_key="+V("basic"), nil), token: "basic"},
		"token as Bearer":            {req: data("/v1/prices", hdr("authorization", "Bearer "+V("basic"))), token: "basic"},
		"token in x-api-key":         {req: data("/v1/prices", key("basic")), token: "basic"},
		"no token":                   {req: data("/v1/prices", nil), code: policy.CodeTokenMissing},
		"unknown token":              {req: data("/v1/prices?token="+policy.NewValue(policy.Publishable), nil), code: policy.CodeTokenUnknown},
		"disabled token":             {req: data("/v1/prices", key("disabled")), code: policy.CodeTokenDisabled, token: "disabled"},
		"expired token":              {req: data("/v1/prices", key("expired")), code: policy.CodeTokenExpired, token: "expired"},
		"two tokens":                 {req: data("/v1/prices?token="+V("basic"), key("datasets")), code: policy.CodeTokenConflict},
		"token twice":                {req: data("/v1/prices?token="+V("basic")+"&%74oken="+V("basic"), nil), code: policy.CodeParamRepeated},
		"premium on core token":      {req: envoyRequest{Path: "/v1/x", Headers: key("basic"), Ext: ext("api", "data", "tier", "premium")}, code: policy.CodeTierDenied, token: "basic"},
		"allowed Referer":            {req: data("/v1/prices", key("domains", "referer", "https://example.com/page")), token: "domains"},
		"bad Referer":                {req: data("/v1/prices", key("domains", "referer", "https://evil.example/")), code: policy.CodeRefererDenied, token: "domains"},
		"secret with an Origin":      {req: data("/v1/prices", key("secret", "origin", "https://app.example.com")), code: policy.CodeSecretTokenInBrowser, token: "secret"},
		"address in range":           {req: data("/v1/prices", key("ipv4", "x-forwarded-for", "198.51.100.1, 203.0.113.5")), token: "ipv4"},
		"address out of range":       {req: data("/v1/prices", key("ipv4", "x-forwarded-for", "203.0.113.5, 198.51.100.1")), code: policy.CodeIPDenied, token: "ipv4"},
		"address from the last line": {req: envoyRequest{Raw: true, Path: "/v1/prices", Ext: core, Headers: key("ipv4", "x-forwarded-for", "203.0.113.5"), Dup: [][2]string{{"x-forwarded-for", "198.51.100.1"}}}, code: policy.CodeIPDenied, token: "ipv4"},
		"route rule allows":          {req: envoyRequest{Path: "/v2/data/sales.q1/rows", Headers: key("datasets")}, token: "datasets"},
		"route rule denies dataset":  {req: envoyRequest{Path: "/v2/data/payroll/rows", Headers: key("datasets")}, code: policy.CodeDatasetDenied, token: "datasets"},
		"HEAD held to GET's rule":    {req: envoyRequest{Method: "HEAD", Path: "/v2/data/payroll/rows", Headers: key("datasets")}, code: policy.CodeDatasetDenied, token: "datasets"},
		"no route":                   {req: envoyRequest{Path: "/v1/prices", Headers: key("basic")}, code: policy.CodeRouteUnmatched},
		"no rule for DELETE":         {req: envoyRequest{Method: "DELETE", Path: "/v2/data/sales.q1/rows", Headers: key("datasets")}, code: policy.CodeRouteUnmatched},
		"escaped literal segment":    {req: envoyRequest{Path: "/v2/%64ata/payroll/rows", Headers: key("datasets")}, code: policy.CodeDatasetDenied, token: "datasets"},
		"escaped slashes":            {req: envoyRequest{Path: "/v2/data/sales.q1%2F..%2Fpayroll/rows", Headers: key("datasets")}, code: policy.CodePathInvalid},
		"escaped dot segment":        {req: envoyRequest{Path: "/v2/data/sales.q1/%2e%2e/payroll/rows", Headers: key("datasets")}, code: policy.CodePathInvalid},
		"unknown method":             {req: envoyRequest{Method: "BREW", Path: "/v2/data/payroll/rows", Headers: key("datasets")}, code: policy.CodeMethodUnknown},
		"semicolon in the query":     {req: data("/v1/prices?token="+V("basic")+";a=b", nil), code: policy.CodeQueryInvalid},
		"granted SQL":                {req: envoyRequest{Path: "/v1/sql?q=" + q(granted), Headers: key("grants"), Ext: sql}, token: "grants"},
		"second q":                   {req: envoyRequest{Path: "/v1/sql?q=" + q(granted) + "&q=x", Headers: key("grants"), Ext: sql}, code: policy.CodeParamRepeated},
		"SQL maybe in the body":      {req: envoyRequest{Method: "POST", Path: "/v1/sql?q=" + q(granted), Headers: key("grants"), Ext: sql}, code: policy.CodeSourceUnseen, token: "grants"},
		"route names unknown API":    {req: envoyRequest{Path: "/v1/admin", Headers: key("basic"), Ext: ext("api", "admin")}, code: policy.CodeAPIDenied, token: "basic"},
		"route tier unusable":        {req: envoyRequest{Path: "/v1/prices", Headers: key("basic"), Ext: ext("api", "data", "tier", "gold")}, code: policy.CodeRouteMisconfigured},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			resp := s.MustCheck(t, tc.req.proto())
			var want policy.DenyCode
			if deny := resp.GetDeniedResponse(); deny != nil {
				var b denyBody
				if err := json.Unmarshal([]byte(deny.GetBody()), &b); err != nil {
					t.Fatalf("Check deny body %q: %v", deny.GetBody(), err)
				}
				want = policy.DenyCode(b.Error.Code)
			}
			if want != tc.code {
				t.Fatalf("Check: got %q, want %q", want, tc.code)
			}
			for _, dia := range httpDialects {
				a := s.mustAuthorizeHTTP(t, dia, tc.req)
				if strings.HasPrefix(string(a.code), "status ") {
					a.code = want
				}
				if a.code != want {
					t.Errorf("%s: got %q, want %q (Check's)", dia, a.code, want)
					continue
				}
				if want == "" {
					if got, wantID := a.header.Get(extauthz.HeaderTokenID), f.Token(t, tc.token).ID; got != wantID {
						t.Errorf("%s: token id got %q, want %q", dia, got, wantID)
					}
					if a.header.Get("X-Credits-Used") == "" {
						t.Errorf("%s: no credit headers on an allow: %v", dia, a.header)
					}
					continue
				}
				if got, wantStatus := a.status, extauthz.DenyStatus(want); got != wantStatus {
					t.Errorf("%s: status got %d, want %d", dia, got, wantStatus)
				}
				if extauthz.DenyStatus(want) == http.StatusUnauthorized && a.header.Get("WWW-Authenticate") == "" {
					t.Errorf("%s: a 401 without WWW-Authenticate", dia)
				}
				for _, v := range f.Values() {
					if strings.Contains(a.body, v) {
						t.Errorf("%s: the deny body holds a token: %s", dia, a.body)
					}
				}
			}
		})
	}
}

// TestHTTPRouteHeadersFromTheProxy covers what only the HTTP endpoint
// reads: the headers the proxy sets to say what the original request was.
func TestHTTPRouteHeadersFromTheProxy(t *testing.T) {
	t.Parallel()
	f := MustSeed(t, store.Postgres)
	s := MustStartServer(t, f.URL, func(c *server.Config) {
		c.ExtAuthz.AllowUnmatchedRoutes = false
		c.Listen.AuthzHTTP = "127.0.0.1:0"
	})
	tok := "x-api-key: " + f.V("basic") + "\r\n"
	cases := map[string]struct {
		raw    string
		status int
		code   policy.DenyCode
	}{
		"nginx without X-Original-URI": {raw: "GET /nginx HTTP/1.1\r\nHost: t\r\nX-Original-Method: GET\r\nX-Tollgate-Api: data\r\n" + tok, status: 403, code: policy.CodeRouteMisconfigured},
		"forward auth without a URI":   {raw: "GET /forward-auth HTTP/1.1\r\nHost: t\r\nX-Forwarded-Method: GET\r\nX-Tollgate-Api: data\r\n" + tok, status: 500, code: policy.CodeRouteMisconfigured},
		"route header twice":           {raw: "GET /authz/v1/prices HTTP/1.1\r\nHost: t\r\nX-Tollgate-Api: data\r\nX-Tollgate-Api: sql\r\n" + tok, status: 500, code: policy.CodeRouteMisconfigured},
		"no route header":              {raw: "GET /authz/v1/prices HTTP/1.1\r\nHost: t\r\n" + tok, status: 403, code: policy.CodeRouteUnmatched},
		"route header":                 {raw: "GET /authz/v1/prices HTTP/1.1\r\nHost: t\r\nX-Tollgate-Api: data\r\n" + tok, status: 200},
		"prefix alone":                 {raw: "GET /authz?token=" + f.V("basic") + " HTTP/1.1\r\nHost: t\r\nX-Tollgate-Api: data\r\n", status: 200},
		"invalid UTF-8 in a header":    {raw: "GET /authz/v1/prices HTTP/1.1\r\nHost: t\r\nX-Tollgate-Api: data\r\nX-Note: \xff\r\n" + tok, status: 400, code: policy.CodeRequestInvalid},
		"another path":                 {raw: "GET /other/v1/prices HTTP/1.1\r\nHost: t\r\nX-Tollgate-Api: data\r\n" + tok, status: 404},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			a := s.mustSendRaw(t, tc.raw+"\r\n", "GET")
			if a.status != tc.status || a.code != tc.code {
				t.Errorf("got %d %q, want %d %q (%s)", a.status, a.code, tc.status, tc.code, a.body)
			}
		})
	}
}

// mustAuthorizeHTTP sends r to the HTTP endpoint as the proxy of dialect
// dia would, and reads the answer. In the nginx dialect the status and
// body meant for the client are read from the headers nginx's config
// hands on.
func (s *testServer) mustAuthorizeHTTP(tb testing.TB, dia string, r envoyRequest) httpAnswer {
	tb.Helper()
	method := cmp.Or(r.Method, "GET")
	peer := cmp.Or(r.Peer, defaultPeer)
	lines := map[string][]string{
		"Host":              {"api.tollgate.test"},
		"Accept":            {"application/json"},
		"User-Agent":        {"Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0"},
		"X-Forwarded-For":   {peer},
		"X-Forwarded-Proto": {"https"},
	}
	for k, v := range r.Headers {
		k = http.CanonicalHeaderKey(k)
		if v == "" {
			delete(lines, k)
		} else {
			lines[k] = []string{v}
		}
	}
	for _, kv := range r.Dup {
		k := http.CanonicalHeaderKey(kv[0])
		lines[k] = append(lines[k], kv[1])
	}
	for k, v := range r.Ext {
		lines[http.CanonicalHeaderKey("X-Tollgate-"+k)] = []string{v}
	}
	if !r.NoPeer {
		lines["X-Real-Ip"] = []string{peer}
	}
	var start string
	switch dia {
	case "envoy":
		start = method + " " + extauthz.DefaultHTTPPrefix + r.Path
	case "nginx":
		start = "GET " + extauthz.NginxPath
		lines["X-Original-Method"], lines["X-Original-Uri"] = []string{method}, []string{r.Path}
	case "forward-auth":
		start = "GET " + extauthz.ForwardAuthPath
		lines["X-Forwarded-Method"], lines["X-Forwarded-Uri"] = []string{method}, []string{r.Path}
		lines["X-Forwarded-Host"] = lines["Host"]
	}
	var b strings.Builder
	b.WriteString(start + " HTTP/1.1\r\n")
	keys := make([]string, 0, len(lines))
	for k := range lines {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range lines[k] {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	a := s.mustSendRaw(tb, b.String(), strings.Fields(start)[0])
	if dia != "nginx" || a.status == http.StatusOK {
		return a
	}
	if a.status != http.StatusUnauthorized && a.status != http.StatusForbidden {
		tb.Fatalf("nginx: got status %d, want 401 or 403", a.status)
	}
	var real httpAnswer
	real.header, real.body = a.header, a.header.Get(extauthz.HeaderBody)
	fmt.Sscan(a.header.Get(extauthz.HeaderStatus), &real.status)
	if strings.HasPrefix(real.body, "{") { // the IEX profile's bodies are plain text
		real.code = bodyCode(tb, real.body)
	}
	return real
}

// mustSendRaw writes one request as it is, bytes and all, to the HTTP
// authorization endpoint.
func (s *testServer) mustSendRaw(tb testing.TB, raw, method string) httpAnswer {
	tb.Helper()
	conn, err := net.DialTimeout("tcp", s.AuthzHTTPAddr().String(), 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		tb.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		tb.Fatalf("read answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	a := httpAnswer{status: resp.StatusCode, header: resp.Header, body: string(body)}
	switch {
	case method == http.MethodHead && resp.StatusCode != http.StatusOK:
		// An answer to HEAD has no body, for Envoy as for this test:
		// the status stands for the code.
		a.code = "status " + policy.DenyCode(resp.Status)
	case resp.StatusCode != http.StatusOK && resp.Header.Get("Content-Type") == "application/json":
		a.code = bodyCode(tb, a.body)
	}
	return a
}

func bodyCode(tb testing.TB, body string) policy.DenyCode {
	tb.Helper()
	var b denyBody
	if err := json.Unmarshal([]byte(body), &b); err != nil {
		tb.Fatalf("deny body %q: %v", body, err)
	}
	return policy.DenyCode(b.Error.Code)
}
