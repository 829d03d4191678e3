package server_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/server"
	"github.com/tollgate/tollgate/internal/store"
)

// badCase is one hostile or broken request and what Tollgate must answer:
// an allow for the named fixture token (when the request, however odd, is
// one the token may make), a deny with a code, or a gRPC error. Nothing
// else: no panic, no hang, no allow where a deny is due.
type badCase struct {
	req envoyRequest
	// raw, when set, is sent as the encoded CheckRequest instead of req.
	raw []byte
	// empty sends this CheckRequest as it is instead of req.
	empty *authv3.CheckRequest
	// mutate changes req's CheckRequest before it is sent.
	mutate func(*authv3.CheckRequest)
	// allow names the fixture token an allow must identify.
	allow string
	// code is the deny's reason; token the fixture token it identifies
	// ("" when no token is recognised).
	code  policy.DenyCode
	token string
	// grpc is the gRPC error code expected instead of an answer.
	grpc codes.Code
}

// badInputDeadline bounds every call: a hang is a failure.
const badInputDeadline = 10 * time.Second

// TestBadInput sends the bad-input catalogue through the real gRPC server
// on Postgres: requests at and beyond Envoy's limits, broken encodings,
// duplicated and conflicting credentials, degenerate CheckRequests,
// hostile addresses and Referers. Every answer must be a clean deny with a
// reason code or an allow the token is entitled to; a gRPC error only where
// the request is one Envoy cannot send (an operator's misconfiguration, or
// a message gRPC itself refuses). The server must still answer afterwards.
func TestBadInput(t *testing.T) {
	t.Parallel()
	f := MustSeed(t, store.Postgres)
	idn := policy.NewToken(f.Premium.ID, policy.Publishable)
	idn.Domains = []string{"bücher.example", "*.münchen.example"}
	idnValue, err := f.DB.CreateToken(context.Background(), idn)
	if err != nil {
		t.Fatalf("create IDNA token: %v", err)
	}
	f.tokens["idn"] = fixtureToken{ID: idn.ID, AccountID: idn.AccountID, Value: idnValue, Kind: idn.Kind}

	s := MustStartServer(t, f.URL, func(c *server.Config) { c.ExtAuthz.TrustedHops = 1 })
	raw := dialRaw(t, s.GRPCAddr().String())
	for name, tc := range badInputCases(t, f) {
		t.Run(name, func(t *testing.T) { runBadCase(t, s, raw, f, tc) })
	}
	t.Run("peer addresses", func(t *testing.T) {
		t.Parallel()
		direct := MustStartServer(t, f.URL, nil) // no trusted proxy: the TCP peer is the caller
		for name, tc := range peerCases(f) {
			t.Run(name, func(t *testing.T) { runBadCase(t, direct, nil, f, tc) })
		}
	})
	t.Run("route captures", func(t *testing.T) {
		t.Parallel()
		rules := filepath.Join(t.TempDir(), "routes.yaml")
		if err := os.WriteFile(rules, []byte(routeRulesYAML), 0o600); err != nil {
			t.Fatal(err)
		}
		routed := MustStartServer(t, f.URL, func(c *server.Config) { c.RouteRules, c.ExtAuthz.AllowUnmatchedRoutes = rules, false })
		for name, tc := range routeCases(f) {
			t.Run(name, func(t *testing.T) { runBadCase(t, routed, nil, f, tc) })
		}
		expectQuietLogs(t, routed)
	})
	// Still serving, and nothing alarming logged.
	ok := envoyRequest{Path: "/v1/prices?token=" + f.V("basic")}
	expectAllow(t, ok, s.MustCheck(t, ok.proto()), f.Token(t, "basic"), 1, true)
	expectQuietLogs(t, s)
}

// expectQuietLogs fails if the server logged a panic, or a line that
// hostile input blew up: a deny costs one short line.
func expectQuietLogs(t *testing.T, s *testServer) {
	t.Helper()
	logs := s.Logs.String()
	if strings.Contains(logs, "panic") {
		t.Errorf("the server logged a panic")
	}
	for line := range strings.SplitSeq(logs, "\n") {
		if len(line) > 4<<10 {
			t.Errorf("a log line of %d bytes: what a request carries must be truncated in the log (%.200s…)", len(line), line)
		}
	}
}

// routeCases are for a server that reads datasets from the path
// (routeRulesYAML): there the caller, not the operator, chooses them.
func routeCases(f *fixture) map[string]badCase {
	key := hdr("x-api-key", f.V("datasets"))
	seg := strings.Repeat("d", 60<<10)
	return map[string]badCase{
		// A name no dataset may have is denied before a wildcard sees it.
		"60 KiB dataset segment":         {req: envoyRequest{Path: "/v2/data/" + seg + "/rows", Headers: key}, code: policy.CodeDatasetDenied, token: "datasets"},
		"60 KiB allowed-looking segment": {req: envoyRequest{Path: "/v2/data/sales." + seg + "/rows", Headers: key}, code: policy.CodeDatasetDenied, token: "datasets"},
		// Envoy normalises paths before ext_authz (envoy/envoy.yaml:
		// normalize_path, merge_slashes, and escaped slashes rejected), so
		// these reach Tollgate only from a misconfigured proxy.
		"dot segments":               {req: envoyRequest{Path: "/v2/data/../data/payroll/rows", Headers: key}, code: policy.CodeDatasetDenied, token: "datasets"},
		"empty dataset segment":      {req: envoyRequest{Path: "/v2/data//rows", Headers: key}, code: policy.CodeDatasetDenied, token: "datasets"},
		"NUL in the dataset segment": {req: envoyRequest{Path: "/v2/data/sales.q1\x00/rows", Headers: key}, code: policy.CodePathInvalid},
	}
}

func runBadCase(t *testing.T, s *testServer, raw *grpc.ClientConn, f *fixture, tc badCase) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), badInputDeadline)
	defer cancel()
	var resp *authv3.CheckResponse
	var err error
	start := time.Now()
	switch {
	case tc.raw != nil:
		resp = &authv3.CheckResponse{}
		err = raw.Invoke(ctx, "/envoy.service.auth.v3.Authorization/Check", &tc.raw, resp, grpc.ForceCodec(bytesCodec{}))
	case tc.empty != nil:
		resp, err = s.Auth.Check(ctx, tc.empty)
	default:
		cr := tc.req.proto()
		if tc.mutate != nil {
			tc.mutate(cr)
		}
		resp, err = s.Auth.Check(ctx, cr)
	}
	if code := status.Code(err); code == codes.DeadlineExceeded {
		t.Fatalf("no answer within %v: a hang", time.Since(start).Round(time.Millisecond))
	}
	if tc.grpc != codes.OK {
		if got := status.Code(err); got != tc.grpc {
			t.Fatalf("got %v (%v), want gRPC error %v", got, describeOrNil(resp), tc.grpc)
		}
		if msg := status.Convert(err).Message(); len(msg) > 2048 {
			t.Errorf("error message of %d bytes: it must not echo the request", len(msg))
		}
		return
	}
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if tc.allow != "" {
		expectAllow(t, tc.req, resp, f.Token(t, tc.allow), 1, true)
		return
	}
	var id string
	if tc.token != "" {
		id = f.Token(t, tc.token).ID
	}
	expectDeny(t, resp, tc.code, id, append(f.Values(), requestSecrets(tc.req)...))
	if n := len(resp.GetDeniedResponse().GetBody()); n > 2048 {
		t.Errorf("deny body of %d bytes: it must not echo the request", n)
	}
}

// badInputCases is the catalogue for a server with one trusted proxy.
func badInputCases(t *testing.T, f *fixture) map[string]badCase {
	V := f.V
	basic := V("basic")
	key := func(name string, kv ...string) map[string]string {
		return hdr(append([]string{"x-api-key", V(name)}, kv...)...)
	}
	xff := func(name, addr string) envoyRequest {
		return envoyRequest{Path: "/v1/prices", Headers: key(name, "x-forwarded-for", addr), Peer: "10.0.0.2"}
	}
	ref := func(name, referer string) envoyRequest {
		return envoyRequest{Path: "/v1/prices", Headers: key(name, "referer", referer)}
	}
	const mib = 1 << 20
	big := strings.Repeat("a", mib)
	many := func(n int, each func(i int) string) string {
		var b strings.Builder
		for i := range n {
			if i > 0 {
				b.WriteByte('&')
			}
			b.WriteString(each(i))
		}
		return b.String()
	}
	params := many(10_000, func(i int) string { return "p" + strconv.Itoa(i) + "=" + strconv.Itoa(i) })
	bigExt := map[string]string{"api": "data", "tier": "core"}
	for i := range 10_000 {
		bigExt["k"+strconv.Itoa(i)] = "v" + strconv.Itoa(i)
	}

	cases := map[string]badCase{
		// Envoy's defaults: 60 KiB of headers, 100 of them. At the limit
		// the request is ordinary; beyond it (which Envoy would refuse)
		// Tollgate still decides, in bounded time.
		"limits/100 headers, 60 KiB, valid token":  {req: atEnvoyLimits(key("basic")), allow: "basic"},
		"limits/100 headers, 60 KiB, bad checksum": {req: atEnvoyLimits(hdr("x-api-key", corrupt(basic))), code: policy.CodeTokenMalformed},
		"limits/1,000 headers, 1 MiB, valid token": {req: padded(key("basic"), 1000, mib), allow: "basic"},
		"limits/1,000 headers, 1 MiB, no token":    {req: padded(nil, 1000, mib), code: policy.CodeTokenMissing},
		"limits/one 1 MiB Bearer":                  {req: envoyRequest{Path: "/v1/prices", Headers: hdr("authorization", "Bearer "+big)}, code: policy.CodeTokenMalformed},
		"limits/one 1 MiB x-api-key":               {req: envoyRequest{Path: "/v1/prices", Headers: hdr("x-api-key", big)}, code: policy.CodeTokenMalformed},
		"limits/60 KiB Referer":                    {req: ref("domains", "https://example.com/"+strings.Repeat("a", 60<<10)), code: policy.CodeRefererDenied, token: "domains"},
		"limits/5 MiB of headers (over gRPC's 4)":  {req: envoyRequest{Path: "/v1/prices", Headers: key("basic", "x-pad", strings.Repeat("a", 5*mib))}, grpc: codes.ResourceExhausted},

		// Encodings: invalid UTF-8 comes in header_map's raw values
		// (bytes), or in string fields, as Envoy forwards what it got.
		// Go's protobuf refuses the latter; Tollgate's codec repairs and
		// marks them, and Check denies (an error would be an allow under
		// failure_mode_allow).
		"utf8/raw x-api-key not UTF-8":            {req: envoyRequest{Raw: true, Path: "/v1/prices", Headers: hdr("x-api-key", basic[:20]+"\xff\xfe"+basic[22:])}, code: policy.CodeTokenMalformed},
		"utf8/raw Bearer not UTF-8":               {req: envoyRequest{Raw: true, Path: "/v1/prices", Headers: hdr("authorization", "Bearer \xc3\x28"+basic)}, code: policy.CodeTokenMalformed},
		"utf8/raw Referer not UTF-8":              {req: envoyRequest{Raw: true, Path: "/v1/prices", Headers: key("domains", "referer", "https://example.com/\xff\xfe")}, code: policy.CodeRefererDenied, token: "domains"},
		"utf8/raw Referer host not UTF-8":         {req: envoyRequest{Raw: true, Path: "/v1/prices", Headers: key("domains", "referer", "https://ex\xe4mple.com/")}, code: policy.CodeRefererDenied, token: "domains"},
		"utf8/raw x-forwarded-for not UTF-8":      {req: envoyRequest{Raw: true, Path: "/v1/prices", Headers: key("ipv4", "x-forwarded-for", "203.0.113.\xff")}, code: policy.CodeIPDenied, token: "ipv4"},
		"utf8/string header not UTF-8 (encoded)":  {raw: withInvalidUTF8(t, envoyRequest{Path: "/v1/prices", Headers: key("basic", "x-note", "PLACEHOLDER")}, "PLACEHOLDER"), code: policy.CodeRequestInvalid},
		"utf8/path not UTF-8 (encoded)":           {raw: withInvalidUTF8(t, envoyRequest{Path: "/v1/PLACEHOLDER?token=" + basic}, "PLACEHOLDER"), code: policy.CodeRequestInvalid},
		"utf8/context extension not UTF-8 (enc.)": {raw: withInvalidUTF8(t, envoyRequest{Path: "/v1/prices", Headers: key("datasets"), Ext: ext("api", "data", "dataset", "PLACEHOLDER")}, "PLACEHOLDER"), code: policy.CodeRequestInvalid},
		"nul/escaped NUL after the token":         {req: envoyRequest{Path: "/v1/prices?token=" + basic + "%00"}, code: policy.CodeTokenMalformed},
		"nul/NUL inside the token":                {req: envoyRequest{Path: "/v1/prices", Headers: hdr("x-api-key", basic[:10]+"\x00"+basic[11:])}, code: policy.CodeTokenMalformed},
		"nul/NUL after the token in x-api-key":    {req: envoyRequest{Path: "/v1/prices", Headers: hdr("x-api-key", basic+"\x00")}, code: policy.CodeTokenMalformed},
		"nul/NUL in the Referer host":             {req: ref("domains", "https://example.com\x00.evil.net/"), code: policy.CodeRefererDenied, token: "domains"},
		"nul/NUL in x-forwarded-for":              {req: xff("ipv4", "203.0.113.9\x00"), code: policy.CodeIPDenied, token: "ipv4"},
		// The path is not a policy input when the route names the
		// dataset: a NUL in it changes nothing (Envoy refuses such paths).
		"nul/NUL in the path": {req: envoyRequest{Path: "/v1/prices\x00/x?token=" + basic}, code: policy.CodePathInvalid},

		// 10,000 query parameters.
		"query/10,000 parameters, token last":           {req: envoyRequest{Path: "/v1/prices?" + params + "&token=" + basic}, allow: "basic"},
		"query/10,000 parameters, token first":          {req: envoyRequest{Path: "/v1/prices?token=" + basic + "&" + params}, allow: "basic"},
		"query/10,000 parameters, none a token":         {req: envoyRequest{Path: "/v1/prices?" + params}, code: policy.CodeTokenMissing},
		"query/10,000 token parameters, the same":       {req: envoyRequest{Path: "/v1/prices?" + many(10_000, func(int) string { return "token=" + basic })}, code: policy.CodeParamRepeated},
		"query/10,000 parameters, second token at end":  {req: envoyRequest{Path: "/v1/prices?token=" + basic + "&" + params + "&api_key=" + V("datasets")}, code: policy.CodeTokenConflict},
		"query/10,000 empty parameters and a token":     {req: envoyRequest{Path: "/v1/prices?" + strings.Repeat("&", 10_000) + "token=" + basic}, allow: "basic"},
		"query/10,000 parameters on a sql route":        {req: envoyRequest{Path: "/v1/sql?" + params + "&q=SELECT+1&token=" + V("grants"), Ext: ext("api", "sql", "connection", "crm")}, code: policy.CodeSourceDenied, token: "grants"},
		"query/undecodable escapes around the token":    {req: envoyRequest{Path: "/v1/prices?%zz=%zz&token=" + basic + "&%=%"}, code: policy.CodeQueryInvalid},
		"query/token split by an encoded ampersand":     {req: envoyRequest{Path: "/v1/prices?token=" + basic[:20] + "%26" + basic[20:]}, code: policy.CodeTokenMalformed},
		"query/token parameter repeated, second empty":  {req: envoyRequest{Path: "/v1/prices?token=" + basic + "&token="}, code: policy.CodeParamRepeated},
		"query/token parameter with a plus for a space": {req: envoyRequest{Path: "/v1/prices?token=+" + basic}, code: policy.CodeTokenMalformed},

		// Duplicated and conflicting tokens.
		"dup/query token twice":                       {req: envoyRequest{Path: "/v1/prices?token=" + basic + "&token=" + basic}, code: policy.CodeParamRepeated},
		"dup/two x-api-key headers, same":             {req: envoyRequest{Raw: true, Path: "/v1/prices", Headers: key("basic"), Dup: [][2]string{{"x-api-key", basic}}}, allow: "basic"},
		"dup/two x-api-key headers, different":        {req: envoyRequest{Raw: true, Path: "/v1/prices", Headers: key("basic"), Dup: [][2]string{{"x-api-key", V("datasets")}}}, code: policy.CodeTokenConflict},
		"dup/two Bearer headers, different":           {req: envoyRequest{Raw: true, Path: "/v1/prices", Headers: hdr("authorization", "Bearer "+basic), Dup: [][2]string{{"authorization", "Bearer " + V("datasets")}}}, code: policy.CodeTokenConflict},
		"dup/x-api-key repeated, joined by Envoy":     {req: envoyRequest{Path: "/v1/prices", Headers: hdr("x-api-key", basic+","+V("datasets"))}, code: policy.CodeTokenMalformed},
		"dup/x-api-key repeated same, joined":         {req: envoyRequest{Path: "/v1/prices", Headers: hdr("x-api-key", basic+","+basic)}, code: policy.CodeTokenMalformed},
		"dup/valid token and a malformed one":         {req: envoyRequest{Path: "/v1/prices?token=" + basic + "&api_key=" + corrupt(basic)}, code: policy.CodeTokenConflict},
		"dup/unknown token then a valid one":          {req: envoyRequest{Path: "/v1/prices?token=" + policy.NewValue(policy.Publishable), Headers: key("basic")}, code: policy.CodeTokenConflict},
		"dup/disabled token beside an enabled one":    {req: envoyRequest{Path: "/v1/prices?token=" + V("disabled"), Headers: key("basic")}, code: policy.CodeTokenConflict},
		"dup/secret and publishable of one account":   {req: envoyRequest{Path: "/v1/prices?token=" + V("secret"), Headers: key("basic")}, code: policy.CodeTokenConflict},
		"dup/same token, differently percent-encoded": {req: envoyRequest{Path: "/v1/prices?token=" + basic + "&api_key=" + strings.Replace(basic, "_", "%5F", 1)}, allow: "basic"},

		// A token in every accepted place at once.
		"everywhere/same value":                   {req: everywhere(basic, basic, basic, basic, basic), allow: "basic"},
		"everywhere/query token differs":          {req: everywhere(V("datasets"), basic, basic, basic, basic), code: policy.CodeTokenConflict},
		"everywhere/query api_key differs":        {req: everywhere(basic, V("datasets"), basic, basic, basic), code: policy.CodeTokenConflict},
		"everywhere/Bearer differs":               {req: everywhere(basic, basic, V("datasets"), basic, basic), code: policy.CodeTokenConflict},
		"everywhere/x-api-key differs":            {req: everywhere(basic, basic, basic, V("datasets"), basic), code: policy.CodeTokenConflict},
		"everywhere/repeated x-api-key differs":   {req: everywhere(basic, basic, basic, basic, V("datasets")), code: policy.CodeTokenConflict},
		"everywhere/same value, token disabled":   {req: everywhere(V("disabled"), V("disabled"), V("disabled"), V("disabled"), V("disabled")), code: policy.CodeTokenDisabled, token: "disabled"},
		"everywhere/same malformed value":         {req: everywhere(corrupt(basic), corrupt(basic), corrupt(basic), corrupt(basic), corrupt(basic)), code: policy.CodeTokenMalformed},
		"everywhere/same value, forged identity":  {req: envoyRequest{Path: "/v1/prices?token=" + basic + "&api_key=" + basic, Headers: key("basic", "authorization", "Bearer "+basic, "x-tollgate-token-id", "tok_forged")}, allow: "basic"},
		"everywhere/Bearer and a signature-style": {req: envoyRequest{Path: "/v1/prices?token=" + basic, Headers: hdr("authorization", "TOLLGATE-HMAC-SHA256 Credential="+V("datasets")+"/20260101/tollgate_request, SignedHeaders=host;x-tollgate-date, Signature="+strings.Repeat("0", 64))}, allow: "basic"},

		// Degenerate CheckRequests.
		"shape/empty CheckRequest":                 {empty: &authv3.CheckRequest{}, code: policy.CodeMethodUnknown},
		"shape/attributes without request":         {empty: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{ContextExtensions: ext("api", "data")}}, code: policy.CodeMethodUnknown},
		"shape/request without http":               {empty: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{}}}, code: policy.CodeMethodUnknown},
		"shape/http with nothing in it":            {empty: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{}}}}, code: policy.CodeMethodUnknown},
		"shape/no request, unusable route config":  {empty: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{ContextExtensions: ext("tier", "gold")}}, code: policy.CodeMethodUnknown},
		"shape/10,000 context_extensions":          {req: envoyRequest{Path: "/v1/prices", Headers: key("basic"), Ext: bigExt}, allow: "basic"},
		"shape/1 MiB dataset in extensions":        {req: envoyRequest{Path: "/v1/prices", Headers: key("datasets"), Ext: ext("api", "data", "dataset", big)}, code: policy.CodeDatasetDenied, token: "datasets"},
		"shape/1 MiB api in extensions":            {req: envoyRequest{Path: "/v1/prices", Headers: key("apis"), Ext: ext("api", big)}, code: policy.CodeAPIDenied, token: "apis"},
		"shape/1 MiB connection in extensions":     {req: envoyRequest{Path: "/v1/prices", Headers: key("grants"), Ext: ext("api", "data", "connection", big, "source", big)}, code: policy.CodeSourceDenied, token: "grants"},
		"shape/1 MiB tier in extensions":           {req: envoyRequest{Path: "/v1/prices", Headers: key("basic"), Ext: ext("api", "data", "tier", big)}, code: policy.CodeRouteMisconfigured},
		"shape/1 MiB cost in extensions":           {req: envoyRequest{Path: "/v1/prices", Headers: key("basic"), Ext: ext("api", "data", "cost", strings.Repeat("9", mib))}, code: policy.CodeRouteMisconfigured},
		"shape/3 MiB of extensions":                {req: envoyRequest{Path: "/v1/prices", Headers: key("basic"), Ext: ext("api", "data", "a", big, "b", big, "c", big)}, allow: "basic"},
		"shape/5 MiB of extensions (over gRPC's)":  {req: envoyRequest{Path: "/v1/prices", Headers: key("basic"), Ext: ext("api", "data", "a", big, "b", big, "c", big, "d", big, "e", big)}, grpc: codes.ResourceExhausted},
		"shape/1 MiB body":                         {req: envoyRequest{Method: "POST", Path: "/v1/prices", Headers: key("basic", "content-type", "application/json")}, mutate: withBody([]byte(big)), allow: "basic"},
		"shape/1 MiB body, partial, not UTF-8":     {req: envoyRequest{Method: "POST", Path: "/v1/prices", Headers: key("basic", "x-envoy-auth-partial-body", "true")}, mutate: withBody(bytes.Repeat([]byte{0xff, 0}, mib/2)), allow: "basic"},
		"shape/unknown method":                     {req: envoyRequest{Method: "BREW", Path: "/v1/prices", Headers: key("basic")}, code: policy.CodeMethodUnknown},
		"shape/1 MiB path, token at the end":       {req: envoyRequest{Path: "/" + big + "?token=" + basic}, allow: "basic"},
		"shape/path without a slash or query mark": {req: envoyRequest{Path: "token=" + basic}, code: policy.CodePathInvalid},

		// x-forwarded-for with one trusted proxy: the last entry is the caller.
		"xff/IPv6 in range":                      {req: xff("ipv6", "198.51.100.1, 2001:db8:abcd::7"), allow: "ipv6"},
		"xff/IPv6 out of range":                  {req: xff("ipv6", "2001:db8:abce::7"), code: policy.CodeIPDenied, token: "ipv6"},
		"xff/IPv6 in brackets with a port":       {req: xff("ipv6", "[2001:db8:abcd::7]:443"), allow: "ipv6"},
		"xff/IPv6 with a zone":                   {req: xff("ipv6", "2001:db8:abcd::7%eth0"), allow: "ipv6"},
		"xff/IPv6 compressed to nothing":         {req: xff("ipv6", "::"), code: policy.CodeIPDenied, token: "ipv6"},
		"xff/IPv4-mapped IPv6":                   {req: xff("ipv4", "::ffff:203.0.113.9"), allow: "ipv4"},
		"xff/IPv4 with a port":                   {req: xff("ipv4", "203.0.113.9:1234"), allow: "ipv4"},
		"xff/IPv4 in an IPv6 range":              {req: xff("ipv6", "203.0.113.9"), code: policy.CodeIPDenied, token: "ipv6"},
		"xff/not an address":                     {req: xff("ipv4", "not-an-ip"), code: policy.CodeIPDenied, token: "ipv4"},
		"xff/not an address, no IP rule":         {req: xff("basic", "not-an-ip"), allow: "basic"},
		"xff/only commas":                        {req: xff("ipv4", ", , ,"), code: policy.CodeIPDenied, token: "ipv4"},
		"xff/octet over 255":                     {req: xff("ipv4", "203.0.113.256"), code: policy.CodeIPDenied, token: "ipv4"},
		"xff/leading zeros":                      {req: xff("ipv4", "203.0.113.009"), code: policy.CodeIPDenied, token: "ipv4"},
		"xff/hexadecimal octet":                  {req: xff("ipv4", "0xcb.0.113.9"), code: policy.CodeIPDenied, token: "ipv4"},
		"xff/fullwidth digits":                   {req: xff("ipv4", "２０３.0.113.9"), code: policy.CodeIPDenied, token: "ipv4"},
		"xff/CIDR instead of an address":         {req: xff("ipv4", "203.0.113.0/24"), code: policy.CodeIPDenied, token: "ipv4"},
		"xff/10,000 entries, last in range":      {req: xff("ipv4", many(10_000, func(int) string { return "198.51.100.1" })+", 203.0.113.9"), allow: "ipv4"},
		"xff/10,000 entries, last not":           {req: xff("ipv4", many(10_000, func(int) string { return "203.0.113.9" })+", 198.51.100.1"), code: policy.CodeIPDenied, token: "ipv4"},
		"xff/1 MiB single entry":                 {req: xff("ipv4", big), code: policy.CodeIPDenied, token: "ipv4"},
		"xff/in range, spoofed IPv6 to its left": {req: xff("ipv6", "2001:db8:abcd::1, 198.51.100.1"), code: policy.CodeIPDenied, token: "ipv6"},

		// Referer forms against the "domains" token's list.
		"referer/userinfo before an allowed host": {req: ref("domains", "https://user:pass@example.com/page"), allow: "domains"},
		"referer/allowed host as the userinfo":    {req: ref("domains", "https://example.com@evil.net/"), code: policy.CodeRefererDenied, token: "domains"},
		"referer/allowed host:port as userinfo":   {req: ref("domains", "https://example.com:443@evil.net/"), code: policy.CodeRefererDenied, token: "domains"},
		"referer/backslash before @":              {req: ref("domains", "https://evil.net\\@example.com/"), code: policy.CodeRefererDenied, token: "domains"},
		"referer/any port on an any-port host":    {req: ref("domains", "https://example.com:8443/x"), allow: "domains"},
		"referer/explicit default port":           {req: ref("domains", "https://secure.example.org:443/"), allow: "domains"},
		"referer/the one allowed port":            {req: ref("domains", "http://localhost:3000/app"), allow: "domains"},
		"referer/another port":                    {req: ref("domains", "http://localhost:3001/app"), code: policy.CodeRefererDenied, token: "domains"},
		"referer/no port where one is required":   {req: ref("domains", "http://localhost/app"), code: policy.CodeRefererDenied, token: "domains"},
		"referer/port out of range":               {req: ref("domains", "https://example.com:99999/"), code: policy.CodeRefererDenied, token: "domains"},
		"referer/port with a sign":                {req: ref("domains", "https://example.com:+443/"), code: policy.CodeRefererDenied, token: "domains"},
		"referer/IPv6 literal and port":           {req: ref("domains", "https://[2001:db8::1]:8443/"), allow: "domains"},
		"referer/IPv6 literal, other port":        {req: ref("domains", "https://[2001:db8::1]:8444/"), code: policy.CodeRefererDenied, token: "domains"},
		"referer/IPv6 literal with a zone":        {req: ref("domains", "https://[2001:db8::1%25eth0]:8443/"), code: policy.CodeRefererDenied, token: "domains"},
		"referer/IPv4 literal in decimal":         {req: ref("domains", "http://3232235786/"), code: policy.CodeRefererDenied, token: "domains"},
		"referer/suffix of an allowed host":       {req: ref("domains", "https://badexample.com/"), code: policy.CodeRefererDenied, token: "domains"},
		"referer/allowed host as a subdomain":     {req: ref("domains", "https://example.com.evil.net/"), code: policy.CodeRefererDenied, token: "domains"},
		"referer/allowed host in the path":        {req: ref("domains", "https://evil.net/example.com"), code: policy.CodeRefererDenied, token: "domains"},
		"referer/allowed host in the query":       {req: ref("domains", "https://evil.net/?https://example.com/"), code: policy.CodeRefererDenied, token: "domains"},
		"referer/wildcard apex":                   {req: ref("domains", "https://wild.example.net/"), code: policy.CodeRefererDenied, token: "domains"},
		"referer/wildcard two levels down":        {req: ref("domains", "https://a.b.wild.example.net/"), allow: "domains"},
		"referer/trailing dot":                    {req: ref("domains", "https://example.com./"), allow: "domains"},
		"referer/upper case":                      {req: ref("domains", "HTTPS://EXAMPLE.COM/"), allow: "domains"},
		"referer/percent-encoded host":            {req: ref("domains", "https://%65xample.com/"), code: policy.CodeRefererDenied, token: "domains"},
		"referer/path prefix, whole segment":      {req: ref("domains", "https://app.example.io/app/x"), allow: "domains"},
		"referer/path prefix, partial segment":    {req: ref("domains", "https://app.example.io/apple"), code: policy.CodeRefererDenied, token: "domains"},
		"referer/https-only host over http":       {req: ref("domains", "http://secure.example.org/"), code: policy.CodeRefererDenied, token: "domains"},
		"referer/other scheme":                    {req: ref("domains", "ftp://example.com/"), code: policy.CodeRefererDenied, token: "domains"},
		"referer/javascript: URL":                 {req: ref("domains", "javascript:alert(1)//example.com"), code: policy.CodeRefererDenied, token: "domains"},
		"referer/scheme-relative":                 {req: ref("domains", "//example.com/"), code: policy.CodeRefererDenied, token: "domains"},
		"referer/opaque origin null":              {req: envoyRequest{Path: "/v1/prices", Headers: key("domains", "origin", "null")}, code: policy.CodeRefererDenied, token: "domains"},
		"referer/bad Referer, good Origin":        {req: envoyRequest{Path: "/v1/prices", Headers: key("domains", "referer", "https://evil.net/", "origin", "https://example.com")}, code: policy.CodeRefererDenied, token: "domains"},
		"referer/IDNA in punycode":                {req: ref("idn", "https://xn--bcher-kva.example/"), allow: "idn"},
		"referer/IDNA in Unicode":                 {req: ref("idn", "https://bücher.example/"), allow: "idn"},
		"referer/IDNA wildcard in punycode":       {req: ref("idn", "https://www.xn--mnchen-3ya.example/"), allow: "idn"},
		"referer/IDNA look-alike":                 {req: ref("idn", "https://bucher.example/"), code: policy.CodeRefererDenied, token: "idn"},
		"referer/IDNA as a subdomain of another":  {req: ref("idn", "https://xn--bcher-kva.example.evil.net/"), code: policy.CodeRefererDenied, token: "idn"},
		"referer/invalid punycode":                {req: ref("idn", "https://xn--zz--.example/"), code: policy.CodeRefererDenied, token: "idn"},
		"referer/punycode of an ASCII name":       {req: ref("domains", "https://xn--example-.com/"), code: policy.CodeRefererDenied, token: "domains"},
	}
	return cases
}

// withBody sets the request body, as Envoy's with_request_body sends it.
func withBody(b []byte) func(*authv3.CheckRequest) {
	return func(cr *authv3.CheckRequest) { cr.GetAttributes().GetRequest().GetHttp().RawBody = b }
}

// peerCases are for a server that trusts no proxy: the TCP peer Envoy saw
// is the caller.
func peerCases(f *fixture) map[string]badCase {
	key := func(name string) map[string]string {
		return hdr("x-api-key", f.V(name), "x-forwarded-for", "203.0.113.9")
	}
	return map[string]badCase{
		"IPv6 peer in range":           {req: envoyRequest{Path: "/v1/prices", Headers: key("ipv6"), Peer: "2001:db8:abcd::9"}, allow: "ipv6"},
		"IPv6 peer out of range":       {req: envoyRequest{Path: "/v1/prices", Headers: key("ipv6"), Peer: "2001:db8:ffff::9"}, code: policy.CodeIPDenied, token: "ipv6"},
		"IPv6 link-local with a zone":  {req: envoyRequest{Path: "/v1/prices", Headers: key("ipv6"), Peer: "fe80::1%eth0"}, code: policy.CodeIPDenied, token: "ipv6"},
		"IPv4-mapped IPv6 peer":        {req: envoyRequest{Path: "/v1/prices", Headers: key("ipv4"), Peer: "::ffff:203.0.113.9"}, allow: "ipv4"},
		"malformed peer address":       {req: envoyRequest{Path: "/v1/prices", Headers: key("ipv4"), Peer: "999.1.1.1"}, code: policy.CodeIPDenied, token: "ipv4"},
		"no peer, x-forwarded-for set": {req: envoyRequest{Path: "/v1/prices", Headers: key("ipv4"), NoPeer: true}, code: policy.CodeIPDenied, token: "ipv4"},
		"no peer, no IP rule":          {req: envoyRequest{Path: "/v1/prices", Headers: key("basic"), NoPeer: true}, allow: "basic"},
	}
}

// atEnvoyLimits pads a request with headers up to Envoy's defaults: 100
// headers and 60 KiB of names and values in all.
func atEnvoyLimits(h map[string]string) envoyRequest {
	r := envoyRequest{Path: "/v1/prices", Headers: h}
	base := r.proto().GetAttributes().GetRequest().GetHttp().GetHeaders()
	size := 0
	for k, v := range base {
		size += len(k) + len(v)
	}
	n := 100 - len(base)
	per := (60<<10 - size) / n
	padded := map[string]string{}
	for k, v := range h {
		padded[k] = v
	}
	for i := range n {
		name := fmt.Sprintf("x-pad-%02d", i)
		padded[name] = strings.Repeat("v", per-len(name))
	}
	r.Headers = padded
	return r
}

// padded adds n headers of size bytes in all.
func padded(h map[string]string, n, size int) envoyRequest {
	out := map[string]string{}
	for k, v := range h {
		out[k] = v
	}
	for i := range n {
		out[fmt.Sprintf("x-pad-%04d", i)] = strings.Repeat("v", size/n)
	}
	return envoyRequest{Path: "/v1/prices", Headers: out}
}

// everywhere puts tokens in the query (token, api_key), a Bearer header
// and X-API-Key twice (header_map, as with encode_raw_headers).
func everywhere(query, apiKey, bearer, xAPIKey, again string) envoyRequest {
	return envoyRequest{Raw: true, Path: "/v1/prices?token=" + query + "&api_key=" + apiKey,
		Headers: hdr("authorization", "Bearer "+bearer, "x-api-key", xAPIKey), Dup: [][2]string{{"x-api-key", again}}}
}

// corrupt returns v with its checksum broken.
func corrupt(v string) string {
	last := v[len(v)-1]
	if last == 'A' {
		return v[:len(v)-1] + "B"
	}
	return v[:len(v)-1] + "A"
}

// withInvalidUTF8 encodes r with the bytes of placeholder (in a string
// field) replaced by as many bytes that are not UTF-8: what a peer that
// does not validate strings could send.
func withInvalidUTF8(t *testing.T, r envoyRequest, placeholder string) []byte {
	b, err := proto.Marshal(r.proto())
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	i := bytes.Index(b, []byte(placeholder))
	if i < 0 {
		t.Fatalf("placeholder not in the encoding")
	}
	copy(b[i:], bytes.Repeat([]byte{0xff}, len(placeholder)))
	return b
}

// bytesCodec sends pre-encoded requests and decodes responses as usual.
type bytesCodec struct{}

func (bytesCodec) Name() string { return "proto" }

func (bytesCodec) Marshal(v any) ([]byte, error) {
	if b, ok := v.(*[]byte); ok {
		return *b, nil
	}
	return nil, fmt.Errorf("bytesCodec: cannot marshal %T", v)
}

func (bytesCodec) Unmarshal(data []byte, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("bytesCodec: cannot unmarshal into %T", v)
	}
	return proto.Unmarshal(data, m)
}

// dialRaw opens a connection for sending pre-encoded requests.
func dialRaw(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
