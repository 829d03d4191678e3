package server_test

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/tollgate/tollgate/internal/extauthz"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/server"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// checkCase is one request and the answer Tollgate must give it.
type checkCase struct {
	req envoyRequest
	// code is the deny reason; "" means allow.
	code policy.DenyCode
	// token names the fixture token the answer must identify; "" when no
	// token is recognised.
	token string
	// cost is the credits an allow spends; nil means the default, 1.
	cost *int64
	// dry is, in dry-run mode, the code of the deny the allow stands for.
	dry policy.DenyCode
}

func costOf(n int64) *int64 { return &n }

// runCases sends every case to s and checks each answer.
func runCases(t *testing.T, s *testServer, f *fixture, cases map[string]checkCase, strip bool) {
	t.Helper()
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			resp := s.MustCheck(t, tc.req.proto())
			var tok fixtureToken
			if tc.token != "" {
				tok = f.Token(t, tc.token)
			}
			switch {
			case tc.dry != "":
				expectDryRun(t, resp, tc.dry, tok)
			case tc.code == "":
				cost := int64(1)
				if tc.cost != nil {
					cost = *tc.cost
				}
				expectAllow(t, tc.req, resp, tok, cost, strip)
			default:
				expectDeny(t, resp, tc.code, tok.ID, append(f.Values(), requestSecrets(tc.req)...))
			}
		})
	}
	var secrets []string
	denies := false
	for _, tc := range cases {
		secrets = append(secrets, requestSecrets(tc.req)...)
		denies = denies || tc.code != "" || tc.dry != ""
	}
	logs := s.Logs.String()
	if denies && !strings.Contains(logs, `"msg":"deny"`) {
		t.Errorf("the server logged no deny line")
	}
	for _, v := range append(f.Values(), secrets...) {
		if len(v) >= 10 && strings.Contains(logs, v) {
			t.Errorf("the server logged the token %q", v)
		}
	}
}

// expectDryRun checks a dry-run allow standing for a deny with code.
func expectDryRun(tb testing.TB, resp *authv3.CheckResponse, code policy.DenyCode, tok fixtureToken) {
	tb.Helper()
	ok := resp.GetOkResponse()
	if ok == nil {
		tb.Fatalf("got %s, want a dry-run allow", describe(resp))
	}
	hs := responseHeaders(tb, ok.GetHeaders())
	if got := hs[extauthz.HeaderDryRun].GetHeader().GetValue(); got != string(code) {
		tb.Errorf("header %s: got %q, want %q", extauthz.HeaderDryRun, got, code)
	}
	md := resp.GetDynamicMetadata().GetFields()
	if got := md["code"].GetStringValue(); got != string(code) {
		tb.Errorf("metadata code: got %q, want %q", got, code)
	}
	if got := md["token_id"].GetStringValue(); got != tok.ID {
		tb.Errorf("metadata token_id: got %q, want %q", got, tok.ID)
	}
	if got := hs[extauthz.HeaderTokenID].GetHeader().GetValue(); got != tok.ID {
		tb.Errorf("header %s: got %q, want %q (overwriting whatever the caller sent)", extauthz.HeaderTokenID, got, tok.ID)
	}
}

// decisionCases covers every allow path and every deny code against the
// default configuration.
func decisionCases(f *fixture) map[string]checkCase {
	V := f.V
	basic := V("basic")
	flip := map[byte]byte{'A': 'B'}[basic[len(basic)-1]]
	if flip == 0 {
		flip = 'A'
	}
	unknown, unknownSecret := policy.NewValue(policy.Publishable), policy.NewValue(policy.Secret)
	key := func(name string, kv ...string) map[string]string {
		return hdr(append([]string{"x-api-key", V(name)}, kv...)...)
	}
	sqlQ := func(q string) string { return "/v1/sql/query?format=json&q=" + url.QueryEscape(q) }
	var pct strings.Builder
	for i := 0; i < len(basic); i++ {
		pct.WriteString("%" + strings.ToUpper(string("0123456789abcdef"[basic[i]>>4])+string("0123456789abcdef"[basic[i]&15])))
	}

	cases := map[string]checkCase{
		// Where the token comes from.
		"source/query token":             {req: envoyRequest{Path: "/v1/prices/AAPL?token=" + basic + "&range=1m"}, token: "basic"},
		"source/query api_key":           {req: envoyRequest{Path: "/v1/prices/AAPL?range=1m&api_key=" + basic}, token: "basic"},
		"source/bearer":                  {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: hdr("authorization", "Bearer "+basic)}, token: "basic"},
		"source/bearer lower-case":       {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: hdr("authorization", "bearer "+basic)}, token: "basic"},
		"source/bearer upper-case":       {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: hdr("authorization", "BEARER "+basic)}, token: "basic"},
		"source/bearer extra spaces":     {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: hdr("authorization", "Bearer   "+basic+"  ")}, token: "basic"},
		"source/x-api-key":               {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: key("basic")}, token: "basic"},
		"source/percent-encoded value":   {req: envoyRequest{Path: "/v1/prices/AAPL?token=" + pct.String()}, token: "basic"},
		"source/percent-encoded _":       {req: envoyRequest{Path: "/v1/prices/AAPL?api_key=pk%5F" + basic[3:]}, token: "basic"},
		"source/same token everywhere":   {req: envoyRequest{Path: "/v1/prices/AAPL?token=" + basic + "&api_key=" + basic, Headers: hdr("authorization", "Bearer "+basic, "x-api-key", basic)}, token: "basic"},
		"source/same token twice":        {req: envoyRequest{Path: "/v1/prices/AAPL?token=" + basic + "&token=" + basic}, code: policy.CodeParamRepeated},
		"source/empty param beside one":  {req: envoyRequest{Path: "/v1/prices/AAPL?token=&api_key=" + basic}, token: "basic"},
		"source/basic auth beside query": {req: envoyRequest{Path: "/v1/prices/AAPL?token=" + basic, Headers: hdr("authorization", "Basic dXNlcjpwYXNz")}, token: "basic"},
		"source/raw bearer":              {req: envoyRequest{Raw: true, Path: "/v1/prices/AAPL", Headers: hdr("authorization", "Bearer "+basic)}, token: "basic"},
		"source/raw x-api-key":           {req: envoyRequest{Raw: true, Path: "/v1/prices/AAPL", Headers: key("basic")}, token: "basic"},
		"source/forged identity headers": {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: key("basic", extauthz.HeaderAccountID, "acc_forged", extauthz.HeaderTokenID, "tok_forged", extauthz.HeaderTokenKind, "secret")}, token: "basic"},

		"missing/no credentials":        {req: envoyRequest{Path: "/v1/prices/AAPL?range=1m"}, code: policy.CodeTokenMissing},
		"missing/empty token param":     {req: envoyRequest{Path: "/v1/prices/AAPL?token="}, code: policy.CodeTokenMissing},
		"missing/token param no value":  {req: envoyRequest{Path: "/v1/prices/AAPL?token&range=1m"}, code: policy.CodeTokenMissing},
		"missing/basic authorization":   {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: hdr("authorization", "Basic dXNlcjpwYXNz")}, code: policy.CodeTokenMissing},
		"missing/bearer without value":  {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: hdr("authorization", "Bearer ")}, code: policy.CodeTokenMissing},
		"missing/blank x-api-key":       {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: hdr("x-api-key", "   ")}, code: policy.CodeTokenMissing},
		"missing/misspelled param":      {req: envoyRequest{Path: "/v1/prices/AAPL?tokens=" + basic}, code: policy.CodeTokenMissing},
		"missing/upper-case param":      {req: envoyRequest{Path: "/v1/prices/AAPL?Token=" + basic}, code: policy.CodeTokenMissing},
		"malformed/too short":           {req: envoyRequest{Path: "/v1/prices/AAPL?token=pk_short"}, code: policy.CodeTokenMalformed},
		"malformed/bad checksum":        {req: envoyRequest{Path: "/v1/prices/AAPL?token=" + basic[:len(basic)-1] + string(flip)}, code: policy.CodeTokenMalformed},
		"malformed/unknown prefix":      {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: hdr("x-api-key", "xk_"+basic[3:])}, code: policy.CodeTokenMalformed},
		"malformed/prefix swapped":      {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: hdr("authorization", "Bearer sk_"+basic[3:])}, code: policy.CodeTokenMalformed},
		"malformed/trailing junk":       {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: hdr("x-api-key", basic+"x")}, code: policy.CodeTokenMalformed},
		"malformed/invalid escape":      {req: envoyRequest{Path: "/v1/prices/AAPL?token=pk_%zz" + basic[5:]}, code: policy.CodeQueryInvalid},
		"malformed/two bearer words":    {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: hdr("authorization", "Bearer "+basic+" "+basic)}, code: policy.CodeTokenMalformed},
		"malformed/over-long":           {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: hdr("x-api-key", "pk_"+strings.Repeat("a", 300))}, code: policy.CodeTokenMalformed},
		"malformed/non-ASCII":           {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: hdr("x-api-key", "pk_ü"+basic[5:])}, code: policy.CodeTokenMalformed},
		"unknown/publishable":           {req: envoyRequest{Path: "/v1/prices/AAPL?token=" + unknown}, code: policy.CodeTokenUnknown},
		"unknown/secret":                {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: hdr("authorization", "Bearer "+unknownSecret)}, code: policy.CodeTokenUnknown},
		"disabled":                      {req: envoyRequest{Path: "/v1/prices/AAPL?token=" + V("disabled")}, code: policy.CodeTokenDisabled, token: "disabled"},
		"expired":                       {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: key("expired")}, code: policy.CodeTokenExpired, token: "expired"},
		"conflict/token and api_key":    {req: envoyRequest{Path: "/v1/prices/AAPL?token=" + basic + "&api_key=" + V("datasets")}, code: policy.CodeTokenConflict},
		"conflict/query and bearer":     {req: envoyRequest{Path: "/v1/prices/AAPL?token=" + basic, Headers: hdr("authorization", "Bearer "+V("datasets"))}, code: policy.CodeTokenConflict},
		"conflict/bearer and x-api-key": {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: hdr("authorization", "Bearer "+basic, "x-api-key", V("datasets"))}, code: policy.CodeTokenConflict},
		"conflict/token param twice":    {req: envoyRequest{Path: "/v1/prices/AAPL?token=" + basic + "&token=" + V("datasets")}, code: policy.CodeParamRepeated},
		"conflict/known and unknown":    {req: envoyRequest{Path: "/v1/prices/AAPL?token=" + basic, Headers: hdr("x-api-key", unknown)}, code: policy.CodeTokenConflict},
		"conflict/valid and malformed":  {req: envoyRequest{Path: "/v1/prices/AAPL?token=" + basic + "&api_key=pk_short"}, code: policy.CodeTokenConflict},
		// Every value of a repeated parameter is read.
		"conflict/third value of a repeated token param": {req: envoyRequest{Path: "/v1/prices/AAPL?token=" + basic + "&token=" + basic + "&token=" + V("datasets")}, code: policy.CodeParamRepeated},
		// With raw headers Envoy sends a repeated header as separate entries.
		"conflict/repeated x-api-key in raw header_map": {req: envoyRequest{Raw: true, Path: "/v1/prices/AAPL", Headers: key("basic"), Dup: [][2]string{{"x-api-key", V("datasets")}}}, code: policy.CodeTokenConflict},

		"browser/secret with origin":         {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: key("secret", "origin", "https://app.example.com")}, code: policy.CodeSecretTokenInBrowser, token: "secret"},
		"browser/secret with sec-fetch-site": {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: key("secret", "sec-fetch-site", "cross-site", "sec-fetch-mode", "cors")}, code: policy.CodeSecretTokenInBrowser, token: "secret"},
		"browser/secret same-origin fetch":   {req: envoyRequest{Path: "/v1/prices/AAPL?token=" + V("secret"), Headers: hdr("sec-fetch-site", "same-origin")}, code: policy.CodeSecretTokenInBrowser, token: "secret"},
		"browser/secret with referer only":   {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: key("secret", "referer", "https://app.example.com/")}, code: policy.CodeSecretTokenInBrowser, token: "secret"},
		"browser/publishable with origin":    {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: key("basic", "origin", "https://app.example.com", "sec-fetch-site", "cross-site")}, token: "basic"},

		"ip/v4 in range":                {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: key("ipv4"), Peer: "203.0.113.5"}, token: "ipv4"},
		"ip/v4 out of range":            {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: key("ipv4"), Peer: "198.51.100.7"}, code: policy.CodeIPDenied, token: "ipv4"},
		"ip/v4-mapped in range":         {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: key("ipv4"), Peer: "::ffff:203.0.113.77"}, token: "ipv4"},
		"ip/v4-mapped out of range":     {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: key("ipv4"), Peer: "::ffff:198.51.100.7"}, code: policy.CodeIPDenied, token: "ipv4"},
		"ip/v6 peer for v4 ranges":      {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: key("ipv4"), Peer: "2001:db8:abcd::1"}, code: policy.CodeIPDenied, token: "ipv4"},
		"ip/v6 in range":                {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: key("ipv6"), Peer: "2001:db8:abcd:12::1"}, token: "ipv6"},
		"ip/v6 out of range":            {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: key("ipv6"), Peer: "2001:db8:abce::1"}, code: policy.CodeIPDenied, token: "ipv6"},
		"ip/v6 link-local with zone":    {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: key("ipv6"), Peer: "fe80::1%eth0"}, code: policy.CodeIPDenied, token: "ipv6"},
		"ip/no peer":                    {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: key("ipv4"), NoPeer: true}, code: policy.CodeIPDenied, token: "ipv4"},
		"ip/unrestricted without ip":    {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: key("basic"), NoPeer: true}, token: "basic"},
		"ip/xff not trusted by default": {req: envoyRequest{Path: "/v1/prices/AAPL", Headers: key("ipv4", "x-forwarded-for", "203.0.113.5"), Peer: "198.51.100.7"}, code: policy.CodeIPDenied, token: "ipv4"},

		"referer/origin when no referer":   {req: envoyRequest{Path: "/v1/tiles/3/4/2.png", Headers: key("domains", "origin", "https://example.com")}, token: "domains"},
		"referer/referer wins over origin": {req: envoyRequest{Path: "/v1/tiles/3/4/2.png", Headers: key("domains", "referer", "https://evil.test/", "origin", "https://example.com")}, code: policy.CodeRefererDenied, token: "domains"},
		"referer/neither header":           {req: envoyRequest{Path: "/v1/tiles/3/4/2.png", Headers: key("domains")}, code: policy.CodeRefererDenied, token: "domains"},
		"referer/raw header map":           {req: envoyRequest{Raw: true, Path: "/v1/tiles/3/4/2.png", Headers: key("domains", "referer", "https://example.com/map")}, token: "domains"},
		"referer/raw header map denied":    {req: envoyRequest{Raw: true, Path: "/v1/tiles/3/4/2.png", Headers: key("domains", "referer", "https://evil.test/")}, code: policy.CodeRefererDenied, token: "domains"},

		"api/listed data":             {req: envoyRequest{Path: "/v1/prices", Headers: key("apis"), Ext: ext("api", "data")}, token: "apis"},
		"api/listed maps":             {req: envoyRequest{Path: "/v1/tiles/1/2/3.png", Headers: key("apis"), Ext: ext("api", "maps")}, token: "apis"},
		"api/unlisted sql":            {req: envoyRequest{Path: "/v1/sql", Headers: key("apis"), Ext: ext("api", "sql")}, code: policy.CodeAPIDenied, token: "apis"},
		"api/unknown api with a list": {req: envoyRequest{Path: "/v1/geocode", Headers: key("apis"), Ext: ext("api", "geocoding")}, code: policy.CodeAPIDenied, token: "apis"},
		"api/import not listed":       {req: envoyRequest{Method: "POST", Path: "/v1/imports", Headers: key("apis"), Ext: ext("api", "import")}, code: policy.CodeAPIDenied, token: "apis"},
		"api/import needs a grant":    {req: envoyRequest{Method: "POST", Path: "/v1/imports", Headers: key("basic"), Ext: ext("api", "import")}, code: policy.CodeAPIDenied, token: "basic"},
		"api/no list allows others":   {req: envoyRequest{Path: "/v1/sql", Headers: key("basic"), Ext: ext("api", "sql")}, token: "basic"},
		"api/import token imports":    {req: envoyRequest{Method: "POST", Path: "/v1/imports", Headers: key("import"), Ext: ext("api", "import")}, token: "import"},
		"api/import token only":       {req: envoyRequest{Path: "/v1/prices", Headers: key("import"), Ext: ext("api", "data")}, code: policy.CodeAPIDenied, token: "import"},
		"api/secret imports":          {req: envoyRequest{Method: "POST", Path: "/v1/imports", Headers: key("secret"), Ext: ext("api", "import")}, token: "secret"},

		"tier/core with core":                 {req: envoyRequest{Path: "/v1/prices", Headers: key("basic"), Ext: ext("api", "data", "tier", "core")}, token: "basic"},
		"tier/premium without token flag":     {req: envoyRequest{Path: "/v1/esg", Headers: key("basic"), Ext: ext("api", "data", "tier", "premium")}, code: policy.CodeTierDenied, token: "basic"},
		"tier/premium flag and subscription":  {req: envoyRequest{Path: "/v1/esg", Headers: key("premium"), Ext: ext("api", "data", "tier", "premium")}, token: "premium"},
		"tier/premium flag no subscription":   {req: envoyRequest{Path: "/v1/esg", Headers: key("premium_on_plain"), Ext: ext("api", "data", "tier", "premium")}, code: policy.CodeTierDenied, token: "premium_on_plain"},
		"tier/core without core":              {req: envoyRequest{Path: "/v1/prices", Headers: key("nocore"), Ext: ext("api", "data", "tier", "core")}, code: policy.CodeTierDenied, token: "nocore"},
		"tier/untiered without core":          {req: envoyRequest{Path: "/v1/status", Headers: key("nocore"), Ext: ext("api", "data")}, token: "nocore"},
		"tier/secret premium":                 {req: envoyRequest{Path: "/v1/esg", Headers: key("secret"), Ext: ext("api", "data", "tier", "premium")}, token: "secret"},
		"tier/secret premium no subscription": {req: envoyRequest{Path: "/v1/esg", Headers: key("secret_plain"), Ext: ext("api", "data", "tier", "premium")}, code: policy.CodeTierDenied, token: "secret_plain"},
		"tier/secret core no subscription":    {req: envoyRequest{Path: "/v1/prices", Headers: key("secret_plain"), Ext: ext("api", "data", "tier", "core")}, token: "secret_plain"},

		"dataset/GET reads":                {req: envoyRequest{Path: "/v1/datasets/prices/rows?limit=10", Headers: key("datasets"), Ext: dataExt("prices")}, token: "datasets"},
		"dataset/HEAD reads":               {req: envoyRequest{Method: "HEAD", Path: "/v1/datasets/prices/rows", Headers: key("datasets"), Ext: dataExt("prices")}, token: "datasets"},
		"dataset/POST writes":              {req: envoyRequest{Method: "POST", Path: "/v1/datasets/prices/rows", Headers: key("datasets"), Ext: dataExt("prices")}, code: policy.CodeDatasetDenied, token: "datasets"},
		"dataset/PUT writes":               {req: envoyRequest{Method: "PUT", Path: "/v1/datasets/prices/rows/7", Headers: key("datasets"), Ext: dataExt("prices")}, code: policy.CodeDatasetDenied, token: "datasets"},
		"dataset/DELETE deletes":           {req: envoyRequest{Method: "DELETE", Path: "/v1/datasets/prices/rows/7", Headers: key("datasets"), Ext: dataExt("prices")}, code: policy.CodeDatasetDenied, token: "datasets"},
		"dataset/route action read":        {req: envoyRequest{Method: "POST", Path: "/v1/datasets/prices/search", Headers: key("datasets"), Ext: dataExt("prices", "action", "read")}, token: "datasets"},
		"dataset/route action write":       {req: envoyRequest{Path: "/v1/datasets/prices/refresh", Headers: key("datasets"), Ext: dataExt("prices", "action", "write")}, code: policy.CodeDatasetDenied, token: "datasets"},
		"dataset/wildcard GET":             {req: envoyRequest{Path: "/v1/datasets/sales.q1/rows", Headers: key("datasets"), Ext: dataExt("sales.q1")}, token: "datasets"},
		"dataset/wildcard nested":          {req: envoyRequest{Path: "/v1/datasets/sales.q1.eu/rows", Headers: key("datasets"), Ext: dataExt("sales.q1.eu")}, token: "datasets"},
		"dataset/wildcard POST":            {req: envoyRequest{Method: "POST", Path: "/v1/datasets/sales.q1/rows", Headers: key("datasets"), Ext: dataExt("sales.q1")}, token: "datasets"},
		"dataset/wildcard PUT":             {req: envoyRequest{Method: "PUT", Path: "/v1/datasets/sales.q1/rows/1", Headers: key("datasets"), Ext: dataExt("sales.q1")}, token: "datasets"},
		"dataset/wildcard PATCH":           {req: envoyRequest{Method: "PATCH", Path: "/v1/datasets/sales.q1/rows/1", Headers: key("datasets"), Ext: dataExt("sales.q1")}, token: "datasets"},
		"dataset/wildcard DELETE":          {req: envoyRequest{Method: "DELETE", Path: "/v1/datasets/sales.q1/rows/1", Headers: key("datasets"), Ext: dataExt("sales.q1")}, code: policy.CodeDatasetDenied, token: "datasets"},
		"dataset/wildcard needs the dot":   {req: envoyRequest{Path: "/v1/datasets/salesq1/rows", Headers: key("datasets"), Ext: dataExt("salesq1")}, code: policy.CodeDatasetDenied, token: "datasets"},
		"dataset/wildcard not bare prefix": {req: envoyRequest{Path: "/v1/datasets/sales/rows", Headers: key("datasets"), Ext: dataExt("sales")}, code: policy.CodeDatasetDenied, token: "datasets"},
		"dataset/delete-only DELETE":       {req: envoyRequest{Method: "DELETE", Path: "/v1/datasets/trash.2023", Headers: key("datasets"), Ext: dataExt("trash.2023")}, token: "datasets"},
		"dataset/delete-only GET":          {req: envoyRequest{Path: "/v1/datasets/trash.2023", Headers: key("datasets"), Ext: dataExt("trash.2023")}, code: policy.CodeDatasetDenied, token: "datasets"},
		"dataset/route action delete":      {req: envoyRequest{Method: "POST", Path: "/v1/datasets/trash.2023/purge", Headers: key("datasets"), Ext: dataExt("trash.2023", "action", "delete")}, token: "datasets"},
		"dataset/no dataset grants":        {req: envoyRequest{Path: "/v1/datasets/prices/rows", Headers: key("basic"), Ext: dataExt("prices")}, code: policy.CodeDatasetDenied, token: "basic"},
		"dataset/secret any dataset":       {req: envoyRequest{Method: "DELETE", Path: "/v1/datasets/payroll", Headers: key("secret"), Ext: dataExt("payroll")}, token: "secret"},

		"source/sql saved query normalised": {req: envoyRequest{Path: sqlQ("  SELECT id,   total\n\tFROM public.orders WHERE total > 100 "), Headers: key("grants"), Ext: ext("api", "sql", "connection", "warehouse")}, token: "grants"},
		"source/sql saved query plus signs": {req: envoyRequest{Path: "/v1/sql/query?q=SELECT+id,+total+FROM+public.orders+WHERE+total+%3E+100", Headers: key("grants"), Ext: ext("api", "sql", "connection", "warehouse")}, token: "grants"},
		"source/sql other query":            {req: envoyRequest{Path: sqlQ("SELECT * FROM public.orders"), Headers: key("grants"), Ext: ext("api", "sql", "connection", "warehouse")}, code: policy.CodeSourceDenied, token: "grants"},
		"source/sql query case differs":     {req: envoyRequest{Path: sqlQ("select id, total from public.orders where total > 100"), Headers: key("grants"), Ext: ext("api", "sql", "connection", "warehouse")}, code: policy.CodeSourceDenied, token: "grants"},
		"source/sql without q":              {req: envoyRequest{Path: "/v1/sql/query", Headers: key("grants"), Ext: ext("api", "sql", "connection", "warehouse")}, code: policy.CodeSourceDenied, token: "grants"},
		"source/table wildcard":             {req: envoyRequest{Path: "/v1/tables/public.sales_2024", Headers: key("grants"), Ext: ext("api", "data", "connection", "warehouse", "source", "public.sales_2024")}, token: "grants"},
		"source/table grant is read-only":   {req: envoyRequest{Method: "POST", Path: "/v1/tables/public.sales_2024", Headers: key("grants"), Ext: ext("api", "data", "connection", "warehouse", "source", "public.sales_2024")}, code: policy.CodeSourceDenied, token: "grants"},
		"source/table not granted":          {req: envoyRequest{Path: "/v1/tables/public.users", Headers: key("grants"), Ext: ext("api", "data", "connection", "warehouse", "source", "public.users")}, code: policy.CodeSourceDenied, token: "grants"},
		"source/all-sources grant":          {req: envoyRequest{Method: "DELETE", Path: "/v1/tables/raw.events", Headers: key("grants"), Ext: ext("api", "data", "connection", "lake", "source", "raw.events")}, token: "grants"},
		"source/all-sources sql":            {req: envoyRequest{Path: sqlQ("SELECT count(*) FROM raw.events"), Headers: key("grants"), Ext: ext("api", "sql", "connection", "lake")}, token: "grants"},
		"source/other connection":           {req: envoyRequest{Path: "/v1/tables/crm.contacts", Headers: key("grants"), Ext: ext("api", "data", "connection", "crm", "source", "crm.contacts")}, code: policy.CodeSourceDenied, token: "grants"},
		"source/grant-free lds":             {req: envoyRequest{Path: "/v1/lds/geocode?address=1+Main+St", Headers: key("grants"), Ext: ext("api", "lds", "connection", "warehouse", "source", "geocoder")}, token: "grants"},
		"source/grant-free lds no grants":   {req: envoyRequest{Path: "/v1/lds/isolines", Headers: key("basic"), Ext: ext("api", "lds", "connection", "crm")}, token: "basic"},
		"source/no grants":                  {req: envoyRequest{Path: "/v1/tables/public.sales_2024", Headers: key("basic"), Ext: ext("api", "data", "connection", "warehouse", "source", "public.sales_2024")}, code: policy.CodeSourceDenied, token: "basic"},
		"source/secret any source":          {req: envoyRequest{Method: "DELETE", Path: "/v1/tables/crm.contacts", Headers: key("secret"), Ext: ext("api", "data", "connection", "crm", "source", "crm.contacts")}, token: "secret"},

		"cost/default":    {req: envoyRequest{Path: "/v1/prices", Headers: key("basic"), Ext: ext("api", "data")}, token: "basic"},
		"cost/from route": {req: envoyRequest{Path: "/v1/prices", Headers: key("basic"), Ext: ext("api", "data", "cost", "5")}, token: "basic", cost: costOf(5)},
		"cost/zero":       {req: envoyRequest{Path: "/v1/prices", Headers: key("basic"), Ext: ext("api", "data", "cost", "0")}, token: "basic", cost: costOf(0)},
	}

	// Allowed domains, with IEX's semantics: no scheme means http and
	// https, "*." means subdomains but not the apex, a path is a prefix
	// of whole segments, and userinfo never decides the host.
	for ref, code := range map[string]policy.DenyCode{
		"http://example.com/":                      "",
		"https://example.com/page?x=1#top":         "",
		"https://example.com:8443/":                "",
		"HTTPS://EXAMPLE.COM/":                     "",
		"https://example.com./":                    "",
		"https://evil.test@example.com/":           "",
		"https://www.example.com/":                 policy.CodeRefererDenied,
		"https://example.com.evil.test/":           policy.CodeRefererDenied,
		"https://notexample.com/":                  policy.CodeRefererDenied,
		"https://example.com@evil.test/":           policy.CodeRefererDenied,
		"https://example.com:pw@evil.test/":        policy.CodeRefererDenied,
		"https://evil.test/?r=https://example.com": policy.CodeRefererDenied,
		"https://evil.test/example.com":            policy.CodeRefererDenied,
		"https://example.com\\@evil.test/":         policy.CodeRefererDenied,
		"ftp://example.com/":                       policy.CodeRefererDenied,
		"//example.com/":                           policy.CodeRefererDenied,
		"example.com":                              policy.CodeRefererDenied,
		"null":                                     policy.CodeRefererDenied,
		"https://secure.example.org/":              "",
		"https://secure.example.org:443/x":         "",
		"http://secure.example.org/":               policy.CodeRefererDenied,
		"https://a.wild.example.net/":              "",
		"https://a.b.wild.example.net/x":           "",
		"https://wild.example.net/":                policy.CodeRefererDenied,
		"https://evilwild.example.net/":            policy.CodeRefererDenied,
		"http://localhost:3000/":                   "",
		"http://localhost:3001/":                   policy.CodeRefererDenied,
		"http://localhost/":                        policy.CodeRefererDenied,
		"https://app.example.io/app":               "",
		"https://app.example.io/app/page":          "",
		"https://app.example.io/apple":             policy.CodeRefererDenied,
		"https://app.example.io/":                  policy.CodeRefererDenied,
		"https://docs.example.io/v1/intro":         "",
		"https://docs.example.io/v1":               policy.CodeRefererDenied,
		"https://[2001:db8::1]:8443/":              "",
		"https://[2001:db8:0:0:0:0:0:1]:8443/x":    "",
		"https://[2001:db8::1]/":                   policy.CodeRefererDenied,
		"https://[2001:db8::2]:8443/":              policy.CodeRefererDenied,
		"http://192.168.1.10/":                     "",
		"http://192.168.1.11/":                     policy.CodeRefererDenied,
		"http://3232235786/":                       policy.CodeRefererDenied, // 192.168.1.10 as one number
	} {
		cases["referer/"+ref] = checkCase{req: envoyRequest{Path: "/v1/tiles/3/4/2.png", Headers: key("domains", "referer", ref)}, code: code, token: "domains"}
	}
	return cases
}

func TestCheck(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			f := MustSeed(t, d)
			s := MustStartServer(t, f.URL, nil)
			t.Run("decisions", func(t *testing.T) { runCases(t, s, f, decisionCases(f), true) })
			t.Run("credential removal", func(t *testing.T) { testCredentialRemoval(t, s, f) })
			t.Run("route config errors", func(t *testing.T) { testRouteConfigErrors(t, s, f) })
			t.Run("variants", func(t *testing.T) { testVariants(t, f) })
		})
	}
}

// testCredentialRemoval checks exactly what is removed before the request
// reaches the upstream.
func testCredentialRemoval(t *testing.T, s *testServer, f *fixture) {
	v := f.V("basic")
	tests := map[string]struct {
		req             envoyRequest
		headers, params []string
	}{
		"query token":     {envoyRequest{Path: "/v1/prices?token=" + v}, nil, []string{"token"}},
		"query api_key":   {envoyRequest{Path: "/v1/prices?api_key=" + v + "&x=1"}, nil, []string{"api_key"}},
		"bearer":          {envoyRequest{Path: "/v1/prices", Headers: hdr("authorization", "Bearer "+v)}, []string{"authorization"}, nil},
		"x-api-key":       {envoyRequest{Path: "/v1/prices", Headers: hdr("x-api-key", v)}, []string{"x-api-key"}, nil},
		"raw x-api-key":   {envoyRequest{Raw: true, Path: "/v1/prices", Headers: hdr("x-api-key", v)}, []string{"x-api-key"}, nil},
		"everywhere":      {envoyRequest{Path: "/v1/prices?token=" + v + "&api_key=" + v, Headers: hdr("authorization", "Bearer "+v, "x-api-key", v)}, []string{"authorization", "x-api-key"}, []string{"token", "api_key"}},
		"empty param too": {envoyRequest{Path: "/v1/prices?token=" + v + "&api_key="}, nil, []string{"token", "api_key"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ok := s.MustCheck(t, tc.req.proto()).GetOkResponse()
			if ok == nil {
				t.Fatalf("got a deny, want allow")
			}
			if got := ok.GetHeadersToRemove(); !sameSet(got, tc.headers) {
				t.Errorf("headers_to_remove: got %v, want %v", got, tc.headers)
			}
			if got := ok.GetQueryParametersToRemove(); !sameSet(got, tc.params) {
				t.Errorf("query_parameters_to_remove: got %v, want %v", got, tc.params)
			}
		})
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// testRouteConfigErrors checks that a route Tollgate cannot read is its
// operator's failure, and a deny (route_misconfigured) logged as an error:
// never an allow, and never a gRPC error, which Envoy's failure_mode_allow
// would turn into one.
func testRouteConfigErrors(t *testing.T, s *testServer, f *fixture) {
	for name, ex := range map[string]map[string]string{
		"tier gold":       ext("api", "data", "tier", "gold"),
		"negative cost":   ext("api", "data", "cost", "-1"),
		"fractional cost": ext("api", "data", "cost", "1.5"),
		"huge cost":       ext("api", "data", "cost", "1000001"),
		"unknown action":  ext("api", "data", "dataset", "prices", "action", "destroy"),
		"upper-case tier": ext("api", "data", "tier", "CORE"),
	} {
		for who, headers := range map[string]map[string]string{"valid token": hdr("x-api-key", f.V("secret")), "no token": nil} {
			t.Run(name+"/"+who, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				resp, err := s.Auth.Check(ctx, envoyRequest{Path: "/v1/prices", Headers: headers, Ext: ex}.proto())
				if err != nil {
					t.Fatalf("got gRPC error %v, want a deny", err)
				}
				expectDeny(t, resp, policy.CodeRouteMisconfigured, "", f.Values())
				if !strings.Contains(s.Logs.String(), `"level":"ERROR","msg":"check: unusable route configuration"`) {
					t.Errorf("no error logged for the operator")
				}
			})
		}
	}
}

func describeOrNil(resp *authv3.CheckResponse) string {
	if resp == nil {
		return "no response"
	}
	return describe(resp)
}

// routeRulesYAML maps paths to what requests are, for routes without
// context_extensions.
const routeRulesYAML = `
- method: GET
  path: /v2/data/{dataset}/...
  api: data
  dataset: "{dataset}"
  tier: core
- method: POST
  path: /v2/data/{dataset}/rows
  api: data
  dataset: "{dataset}"
  cost: 3
- path: /v2/sql/{connection}
  api: sql
  connection: "{connection}"
  cost: 2
- method: GET
  path: /v2/premium/{dataset}
  api: data
  dataset: "{dataset}"
  tier: premium
`

// testVariants runs cases against servers configured otherwise than by
// default, one at a time, on the fixture's database.
func testVariants(t *testing.T, f *fixture) {
	V := f.V
	key := func(name string, kv ...string) map[string]string {
		return hdr(append([]string{"x-api-key", V(name)}, kv...)...)
	}
	rules := filepath.Join(t.TempDir(), "routes.yaml")
	if err := os.WriteFile(rules, []byte(routeRulesYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	variants := map[string]struct {
		configure func(*server.Config)
		strip     bool
		cases     map[string]checkCase
	}{
		"secret allowed in browsers": {
			configure: func(c *server.Config) { c.Eval.AllowSecretInBrowser = true },
			strip:     true,
			cases: map[string]checkCase{
				"origin":            {req: envoyRequest{Path: "/v1/prices", Headers: key("secret", "origin", "https://app.example.com")}, token: "secret"},
				"sec-fetch-site":    {req: envoyRequest{Path: "/v1/prices", Headers: key("secret", "sec-fetch-site", "cross-site")}, token: "secret"},
				"rules still apply": {req: envoyRequest{Path: "/v1/esg", Headers: key("secret_plain", "origin", "https://app.example.com"), Ext: ext("api", "data", "tier", "premium")}, code: policy.CodeTierDenied, token: "secret_plain"},
			},
		},
		"credentials kept": {
			configure: func(c *server.Config) { c.ExtAuthz.StripCredentials = false },
			cases: map[string]checkCase{
				"query":   {req: envoyRequest{Path: "/v1/prices?token=" + V("basic") + "&api_key=" + V("basic")}, token: "basic"},
				"headers": {req: envoyRequest{Path: "/v1/prices", Headers: hdr("authorization", "Bearer "+V("basic"), "x-api-key", V("basic"))}, token: "basic"},
			},
		},
		"token sources x-api-key and authorization": {
			configure: func(c *server.Config) {
				c.ExtAuthz.TokenSources = []extauthz.TokenSource{extauthz.SourceAPIKey, extauthz.SourceBearer}
			},
			strip: true,
			cases: map[string]checkCase{
				"query token not read":        {req: envoyRequest{Path: "/v1/prices?token=" + V("basic")}, code: policy.CodeTokenMissing},
				"query api_key not read":      {req: envoyRequest{Path: "/v1/prices?api_key=" + V("basic")}, code: policy.CodeTokenMissing},
				"x-api-key":                   {req: envoyRequest{Path: "/v1/prices", Headers: key("basic")}, token: "basic"},
				"bearer":                      {req: envoyRequest{Path: "/v1/prices", Headers: hdr("authorization", "Bearer "+V("basic"))}, token: "basic"},
				"disabled source no conflict": {req: envoyRequest{Path: "/v1/prices?token=" + V("datasets"), Headers: key("basic")}, token: "basic"},
				"enabled sources conflict":    {req: envoyRequest{Path: "/v1/prices", Headers: key("basic", "authorization", "Bearer "+V("datasets"))}, code: policy.CodeTokenConflict},
			},
		},
		"one trusted hop": {
			configure: func(c *server.Config) { c.ExtAuthz.TrustedHops = 1 },
			strip:     true,
			cases: map[string]checkCase{
				"client before proxy": {req: envoyRequest{Path: "/v1/prices", Headers: key("ipv4", "x-forwarded-for", "198.51.100.1, 203.0.113.5"), Peer: "10.0.0.2"}, token: "ipv4"},
				"spoofed leftmost":    {req: envoyRequest{Path: "/v1/prices", Headers: key("ipv4", "x-forwarded-for", "203.0.113.5, 198.51.100.1"), Peer: "10.0.0.2"}, code: policy.CodeIPDenied, token: "ipv4"},
				"no xff":              {req: envoyRequest{Path: "/v1/prices", Headers: key("ipv4", "x-forwarded-for", ""), Peer: "203.0.113.5"}, code: policy.CodeIPDenied, token: "ipv4"},
				"v6 entry":            {req: envoyRequest{Path: "/v1/prices", Headers: key("ipv6", "x-forwarded-for", "2001:db8:abcd::7"), Peer: "10.0.0.2"}, token: "ipv6"},
				"v4-mapped entry":     {req: envoyRequest{Path: "/v1/prices", Headers: key("ipv4", "x-forwarded-for", "::ffff:203.0.113.5"), Peer: "10.0.0.2"}, token: "ipv4"},
				"spaces around entry": {req: envoyRequest{Path: "/v1/prices", Headers: key("ipv4", "x-forwarded-for", "  203.0.113.5  "), Peer: "10.0.0.2"}, token: "ipv4"},
				"unrestricted no xff": {req: envoyRequest{Path: "/v1/prices", Headers: key("basic", "x-forwarded-for", "")}, token: "basic"},
			},
		},
		"two trusted hops": {
			configure: func(c *server.Config) { c.ExtAuthz.TrustedHops = 2 },
			strip:     true,
			cases: map[string]checkCase{
				"client two from right": {req: envoyRequest{Path: "/v1/prices", Headers: key("ipv4", "x-forwarded-for", "203.0.113.5, 10.1.1.1"), Peer: "10.0.0.2"}, token: "ipv4"},
				"proxy two from right":  {req: envoyRequest{Path: "/v1/prices", Headers: key("ipv4", "x-forwarded-for", "198.51.100.1, 203.0.113.5"), Peer: "10.0.0.2"}, code: policy.CodeIPDenied, token: "ipv4"},
				"spoof ignored":         {req: envoyRequest{Path: "/v1/prices", Headers: key("ipv4", "x-forwarded-for", "198.51.100.9, 203.0.113.5, 10.1.1.1"), Peer: "10.0.0.2"}, token: "ipv4"},
				"too few entries":       {req: envoyRequest{Path: "/v1/prices", Headers: key("ipv4", "x-forwarded-for", "203.0.113.5"), Peer: "203.0.113.5"}, code: policy.CodeIPDenied, token: "ipv4"},
				"unrestricted too few":  {req: envoyRequest{Path: "/v1/prices", Headers: key("basic", "x-forwarded-for", "203.0.113.5")}, token: "basic"},
			},
		},
		"route rules": {
			configure: func(c *server.Config) { c.RouteRules, c.ExtAuthz.AllowUnmatchedRoutes = rules, false },
			strip:     true,
			cases: map[string]checkCase{
				"capture allowed":      {req: envoyRequest{Path: "/v2/data/sales.q1/rows?limit=5", Headers: key("datasets")}, token: "datasets"},
				"capture denied":       {req: envoyRequest{Path: "/v2/data/payroll/rows", Headers: key("datasets")}, code: policy.CodeDatasetDenied, token: "datasets"},
				"rest matches nothing": {req: envoyRequest{Path: "/v2/data/prices", Headers: key("datasets")}, token: "datasets"},
				"rest matches deep":    {req: envoyRequest{Path: "/v2/data/prices/2024/01/02?x=1", Headers: key("datasets")}, token: "datasets"},
				"rule tier":            {req: envoyRequest{Path: "/v2/data/prices/rows", Headers: key("nocore")}, code: policy.CodeTierDenied, token: "nocore"},
				"POST rule cost":       {req: envoyRequest{Method: "POST", Path: "/v2/data/sales.q1/rows", Headers: key("datasets")}, token: "datasets", cost: costOf(3)},
				"POST rule denied":     {req: envoyRequest{Method: "POST", Path: "/v2/data/prices/rows", Headers: key("datasets")}, code: policy.CodeDatasetDenied, token: "datasets"},
				"no rule matches":      {req: envoyRequest{Method: "DELETE", Path: "/v2/data/payroll/rows", Headers: key("basic")}, code: policy.CodeRouteUnmatched},
				"extensions win":       {req: envoyRequest{Path: "/v2/data/payroll/rows", Headers: key("datasets"), Ext: dataExt("prices")}, token: "datasets"},
				"non-route extensions": {req: envoyRequest{Path: "/v2/data/payroll/rows", Headers: key("datasets"), Ext: ext("virtual_host", "edge")}, code: policy.CodeDatasetDenied, token: "datasets"},
				"sql rule":             {req: envoyRequest{Path: "/v2/sql/warehouse?q=SELECT+id,+total+FROM+public.orders+WHERE+total+%3E+100", Headers: key("grants")}, token: "grants", cost: costOf(2)},
				"sql rule other conn":  {req: envoyRequest{Path: "/v2/sql/crm?q=SELECT+1", Headers: key("grants")}, code: policy.CodeSourceDenied, token: "grants"},
				"premium rule":         {req: envoyRequest{Path: "/v2/premium/esg", Headers: key("basic")}, code: policy.CodeTierDenied, token: "basic"},
			},
		},
		"dry run": {
			configure: func(c *server.Config) { c.ExtAuthz.DryRun = true },
			strip:     true,
			cases: map[string]checkCase{
				"missing":  {req: envoyRequest{Path: "/v1/prices"}, dry: policy.CodeTokenMissing},
				"unknown":  {req: envoyRequest{Path: "/v1/prices?token=" + policy.NewValue(policy.Publishable)}, dry: policy.CodeTokenUnknown},
				"disabled": {req: envoyRequest{Path: "/v1/prices", Headers: key("disabled")}, dry: policy.CodeTokenDisabled, token: "disabled"},
				"dataset":  {req: envoyRequest{Path: "/v1/datasets/payroll", Headers: key("datasets"), Ext: dataExt("payroll")}, dry: policy.CodeDatasetDenied, token: "datasets"},
				"forged":   {req: envoyRequest{Path: "/v1/prices", Headers: hdr(extauthz.HeaderTokenID, "tok_forged", extauthz.HeaderDryRun, "none")}, dry: policy.CodeTokenMissing},
				"allowed":  {req: envoyRequest{Path: "/v1/datasets/prices", Headers: key("datasets"), Ext: dataExt("prices")}, token: "datasets"},
			},
		},
	}
	for name, v := range variants {
		t.Run(name, func(t *testing.T) {
			s := MustStartServer(t, f.URL, v.configure)
			runCases(t, s, f, v.cases, v.strip)
			if err := s.Stop(); err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
}

// dataExt is the context_extensions of a core data API route on dataset.
func dataExt(dataset string, kv ...string) map[string]string {
	return ext(append([]string{"api", "data", "dataset", dataset, "tier", "core"}, kv...)...)
}
