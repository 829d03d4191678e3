package server_test

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/server"
	"github.com/tollgate/tollgate/internal/store"
)

// failClosedRules adds to routeRulesYAML a rule whose API is a path
// capture, chosen by the caller.
const failClosedRules = routeRulesYAML + `- method: GET
  path: /v3/{api}/{dataset}
  api: "{api}"
  dataset: "{dataset}"
`

// mustStartRouted starts a server that classifies requests by
// failClosedRules alone (unclassified ones denied) behind one trusted
// proxy, configured further by configure when it is not nil.
func mustStartRouted(t *testing.T, f *fixture, configure func(*server.Config)) *testServer {
	t.Helper()
	rules := filepath.Join(t.TempDir(), "routes.yaml")
	if err := os.WriteFile(rules, []byte(failClosedRules), 0o600); err != nil {
		t.Fatal(err)
	}
	return MustStartServer(t, f.URL, func(c *server.Config) {
		c.RouteRules, c.ExtAuthz.AllowUnmatchedRoutes, c.ExtAuthz.TrustedHops = rules, false, 1
		if configure != nil {
			configure(c)
		}
	})
}

// TestFailClosed is the catalogue of issue 12's wrong allows on how a
// request is read, one table per class, through the real gRPC server with
// the default configuration: every case here was an allow (or a gRPC
// error, an allow under failure_mode_allow) before the fix.
func TestFailClosed(t *testing.T) {
	t.Parallel()
	f := MustSeed(t, store.Postgres)
	s := mustStartRouted(t, f, nil)
	V := f.V
	key := func(name string, kv ...string) map[string]string {
		return hdr(append([]string{"x-api-key", V(name)}, kv...)...)
	}
	ds := key("datasets") // may read prices, read and write sales.*, delete trash.*
	req := func(method, path string) envoyRequest {
		return envoyRequest{Method: method, Path: path, Headers: ds, Peer: "10.0.0.2"}
	}
	granted := "SELECT id, total FROM public.orders WHERE total > 100"
	sql := ext("api", "sql", "connection", "warehouse")
	sqlReq := func(method, query string) envoyRequest {
		return envoyRequest{Method: method, Path: "/v1/sql?" + query, Headers: key("grants"), Ext: sql}
	}
	q := url.QueryEscape
	coreExt := ext("api", "data", "tier", "core")

	classes := map[string]map[string]checkCase{
		// 1: a request no route describes is denied; a rule cannot be
		// escaped by another spelling of its path or method.
		"routes": {
			"rule allows":                {req: req("GET", "/v2/data/sales.q1/rows"), token: "datasets"},
			"HEAD reads like GET":        {req: req("HEAD", "/v2/data/sales.q1/rows"), token: "datasets"},
			"HEAD is held to GET's rule": {req: req("HEAD", "/v2/data/payroll/rows"), code: policy.CodeDatasetDenied, token: "datasets"},
			"no rule for DELETE":         {req: req("DELETE", "/v2/data/sales.q1/rows"), code: policy.CodeRouteUnmatched},
			"no rule for the path":       {req: req("POST", "/v2/data/payroll/x"), code: policy.CodeRouteUnmatched},
			"no route at all":            {req: envoyRequest{Path: "/v1/prices", Headers: key("basic")}, code: policy.CodeRouteUnmatched},
			"doubled slash":              {req: req("GET", "//v2/data/payroll/rows"), code: policy.CodeDatasetDenied, token: "datasets"},
			"escaped literal segment":    {req: req("GET", "/v2/%64ata/payroll/rows"), code: policy.CodeDatasetDenied, token: "datasets"},
			"letter case":                {req: req("GET", "/V2/data/payroll/rows"), code: policy.CodeRouteUnmatched},
			"escaped slashes":            {req: req("GET", "/v2/data/sales.q1%2F..%2F..%2Fpayroll/rows"), code: policy.CodePathInvalid},
			"escaped dot segment":        {req: req("GET", "/v2/data/sales.q1/%2e%2e/%2e%2e/payroll/rows"), code: policy.CodePathInvalid},
			"backslash":                  {req: req("GET", "/v2/data/sales.q1\\..\\payroll/rows"), code: policy.CodePathInvalid},
			"unknown method":             {req: req("BREW", "/v2/data/payroll/rows"), code: policy.CodeMethodUnknown},
		},
		// 2: the query is read as the upstream reads it.
		"query": {
			"granted query":            {req: sqlReq("GET", "q="+q(granted)), token: "grants"},
			"escaped name before":      {req: sqlReq("GET", "%71="+q("DELETE FROM orders")+"&q="+q(granted)), code: policy.CodeParamRepeated},
			"second q":                 {req: sqlReq("GET", "q="+q(granted)+"&q="+q("DELETE FROM orders")), code: policy.CodeParamRepeated},
			"semicolon separator":      {req: sqlReq("GET", "q="+q(granted)+";q=x"), code: policy.CodeQueryInvalid},
			"SQL maybe in the body":    {req: sqlReq("POST", "q="+q(granted)), code: policy.CodeSourceUnseen, token: "grants"},
			"NBSP is not a space":      {req: sqlReq("GET", "q="+q(strings.Replace(granted, " ", "\u00a0", 1))), code: policy.CodeSourceDenied, token: "grants"},
			"all-sources grant, POST":  {req: envoyRequest{Method: "POST", Path: "/v1/sql", Headers: key("grants"), Ext: ext("api", "sql", "connection", "lake")}, token: "grants"},
			"token twice":              {req: envoyRequest{Path: "/v1/prices?token=" + V("basic") + "&token=" + V("basic"), Ext: dataExt("prices")}, code: policy.CodeParamRepeated},
			"escaped token name twice": {req: envoyRequest{Path: "/v1/prices?token=" + V("basic") + "&%74oken=" + V("datasets"), Ext: dataExt("prices")}, code: policy.CodeParamRepeated},
		},
		// 4: only a known API's canonical name reaches a token's APIs.
		"api names": {
			"route names Import":   {req: envoyRequest{Path: "/v1/import", Headers: key("basic"), Ext: ext("api", "Import")}, code: policy.CodeAPIDenied, token: "basic"},
			"route names unknown":  {req: envoyRequest{Path: "/v1/admin", Headers: key("basic"), Ext: ext("api", "admin")}, code: policy.CodeAPIDenied, token: "basic"},
			"capture %69mport":     {req: envoyRequest{Path: "/v3/%69mport/x", Headers: key("basic")}, code: policy.CodeAPIDenied, token: "basic"},
			"capture Import":       {req: envoyRequest{Path: "/v3/Import/x", Headers: key("basic")}, code: policy.CodeAPIDenied, token: "basic"},
			"capture known API":    {req: envoyRequest{Path: "/v3/maps/prices", Headers: key("datasets")}, token: "datasets"},
			"capture, listed APIs": {req: envoyRequest{Path: "/v3/MAPS/x", Headers: key("apis")}, code: policy.CodeAPIDenied, token: "apis"},
		},
		// 9: every x-forwarded-for line is read, counting from the right.
		"client address": {
			"last of two lines": {req: envoyRequest{Raw: true, Path: "/v1/prices", Ext: coreExt, Headers: key("ipv4", "x-forwarded-for", "203.0.113.5"),
				Dup: [][2]string{{"x-forwarded-for", "198.51.100.1"}}}, code: policy.CodeIPDenied, token: "ipv4"},
			"one line": {req: envoyRequest{Raw: true, Path: "/v1/prices", Ext: coreExt, Headers: key("ipv4", "x-forwarded-for", "198.51.100.1, 203.0.113.5")}, token: "ipv4"},
		},
		// 10: a Referer marks a browser too.
		"browser": {
			"secret with a Referer": {req: envoyRequest{Path: "/v1/prices", Ext: dataExt("prices"), Headers: key("secret", "referer", "https://app.example.com/")}, code: policy.CodeSecretTokenInBrowser, token: "secret"},
		},
	}
	for class, cases := range classes {
		t.Run(class, func(t *testing.T) { runCases(t, s, f, cases, true) })
	}
	expectQuietLogs(t, s)
}
