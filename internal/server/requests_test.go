package server_test

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tollgate/tollgate/internal/extauthz"
	"github.com/tollgate/tollgate/internal/policy"
)

// defaultPeer is the TCP peer of requests that name none: outside every
// fixture token's allowed ranges.
const defaultPeer = "198.51.100.23"

// envoyRequest describes a request to the protected API; proto renders it
// as the CheckRequest Envoy's ext_authz filter sends for it.
type envoyRequest struct {
	Method string // default GET
	Path   string // with the query string, as in :path
	// Headers are added to the defaults; "" removes a default.
	Headers map[string]string
	// Dup sends further values of a header (only with Raw, as Envoy's
	// headers map joins repeated headers).
	Dup [][2]string
	// Raw sends header_map with raw_value, as Envoy does with
	// encode_raw_headers, instead of the headers map.
	Raw bool
	// Peer is the TCP peer Envoy saw; default defaultPeer. NoPeer sends
	// none.
	Peer   string
	NoPeer bool
	// Ext is the route's context_extensions.
	Ext map[string]string
}

func socketAddress(addr string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol: corev3.SocketAddress_TCP, Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func (r envoyRequest) proto() *authv3.CheckRequest {
	method := cmp.Or(r.Method, "GET")
	peer := cmp.Or(r.Peer, defaultPeer)
	reqID := fmt.Sprintf("%08x-%04x-4%03x-a%03x-%012x", rand.Uint32(), rand.Uint32N(1<<16), rand.Uint32N(1<<12), rand.Uint32N(1<<12), rand.Uint64N(1<<48))
	h := map[string]string{
		":authority":                     "api.tollgate.test",
		"host":                           "api.tollgate.test",
		":method":                        method,
		":path":                          r.Path,
		":scheme":                        "https",
		"accept":                         "application/json",
		"accept-encoding":                "gzip, deflate, br",
		"user-agent":                     "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
		"x-forwarded-for":                peer,
		"x-forwarded-proto":              "https",
		"x-request-id":                   reqID,
		"x-envoy-expected-rq-timeout-ms": "15000",
	}
	for k, v := range r.Headers {
		if v == "" {
			delete(h, k)
		} else {
			h[k] = v
		}
	}
	httpReq := &authv3.AttributeContext_HttpRequest{
		Id:       strconv.FormatUint(rand.Uint64(), 10),
		Method:   method,
		Path:     r.Path,
		Host:     h[":authority"],
		Scheme:   "https",
		Protocol: "HTTP/1.1",
	}
	if r.Raw {
		hm := &corev3.HeaderMap{}
		keys := make([]string, 0, len(h))
		for k := range h {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(h[k])})
		}
		for _, kv := range r.Dup {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[0], RawValue: []byte(kv[1])})
		}
		httpReq.HeaderMap = hm
	} else {
		httpReq.Headers = h
	}
	attrs := &authv3.AttributeContext{
		Destination: &authv3.AttributeContext_Peer{Address: socketAddress("10.0.4.17", 10000)},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.Now(),
			Http: httpReq,
		},
		ContextExtensions: r.Ext,
		MetadataContext:   &corev3.Metadata{},
	}
	if !r.NoPeer {
		attrs.Source = &authv3.AttributeContext_Peer{Address: socketAddress(peer, 50000+rand.Uint32N(10000))}
	}
	return &authv3.CheckRequest{Attributes: attrs}
}

// ext builds context_extensions from key, value pairs.
func ext(kv ...string) map[string]string {
	m := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// hdr builds headers from name, value pairs.
func hdr(kv ...string) map[string]string { return ext(kv...) }

// header returns the value of a request header as proto rendered it.
func (r envoyRequest) header(name string) string {
	if v, ok := r.Headers[name]; ok {
		return v
	}
	return ""
}

// denyBody is the JSON body of a denied response.
type denyBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// responseHeaders indexes a response's header options by name.
func responseHeaders(tb testing.TB, opts []*corev3.HeaderValueOption) map[string]*corev3.HeaderValueOption {
	tb.Helper()
	m := make(map[string]*corev3.HeaderValueOption, len(opts))
	for _, o := range opts {
		k := o.GetHeader().GetKey()
		if _, dup := m[k]; dup {
			tb.Errorf("header %q set twice", k)
		}
		m[k] = o
	}
	return m
}

// describe summarises a response for failure messages.
func describe(resp *authv3.CheckResponse) string {
	if ok := resp.GetOkResponse(); ok != nil {
		return fmt.Sprintf("allow (grpc status %d, metadata %v)", resp.GetStatus().GetCode(), resp.GetDynamicMetadata().AsMap())
	}
	if d := resp.GetDeniedResponse(); d != nil {
		return fmt.Sprintf("deny %d %s", d.GetStatus().GetCode(), d.GetBody())
	}
	return fmt.Sprintf("neither allow nor deny: %v", resp)
}

// expectAllow checks an allow for tok: status OK, the identity headers
// overwriting anything the caller sent, the metadata, no dry-run mark, and
// (when strip is set) that no header or query parameter carrying the token
// reaches the upstream.
func expectAllow(tb testing.TB, r envoyRequest, resp *authv3.CheckResponse, tok fixtureToken, cost int64, strip bool) {
	tb.Helper()
	ok := resp.GetOkResponse()
	if ok == nil {
		tb.Fatalf("got %s, want allow", describe(resp))
	}
	if got := codes.Code(resp.GetStatus().GetCode()); got != codes.OK {
		tb.Errorf("grpc status: got %v, want %v", got, codes.OK)
	}
	hs := responseHeaders(tb, ok.GetHeaders())
	for name, want := range map[string]string{
		extauthz.HeaderAccountID: tok.AccountID,
		extauthz.HeaderTokenID:   tok.ID,
		extauthz.HeaderTokenKind: tok.Kind.String(),
	} {
		o := hs[name]
		if got := o.GetHeader().GetValue(); got != want {
			tb.Errorf("header %s: got %q, want %q", name, got, want)
		}
		if got := o.GetAppendAction(); got != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			tb.Errorf("header %s: got action %v, want %v", name, got, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)
		}
		if o.GetAppend() != nil {
			tb.Errorf("header %s: got deprecated append %v, want unset (Envoy refuses both)", name, o.GetAppend())
		}
	}
	if o, found := hs[extauthz.HeaderDryRun]; found {
		tb.Errorf("header %s: got %q on a real allow, want none", extauthz.HeaderDryRun, o.GetHeader().GetValue())
	}
	md := resp.GetDynamicMetadata().GetFields()
	for k, want := range map[string]string{"account_id": tok.AccountID, "token_id": tok.ID, "token_kind": tok.Kind.String()} {
		if got := md[k].GetStringValue(); got != want {
			tb.Errorf("metadata %s: got %q, want %q", k, got, want)
		}
	}
	if got := md["cost"].GetNumberValue(); got != float64(cost) {
		tb.Errorf("metadata cost: got %v, want %v", got, cost)
	}
	if c, found := md["code"]; found {
		tb.Errorf("metadata code: got %q on an allow, want none", c.GetStringValue())
	}
	removedHeaders, removedParams := ok.GetHeadersToRemove(), ok.GetQueryParametersToRemove()
	if !strip {
		if len(removedHeaders) != 0 || len(removedParams) != 0 {
			tb.Errorf("removed headers %v and query parameters %v, want none with credential stripping off", removedHeaders, removedParams)
		}
		return
	}
	for name, v := range r.Headers {
		if strings.Contains(v, tok.Value) && !slices.Contains(removedHeaders, name) {
			tb.Errorf("headers_to_remove: got %v, want it to hold %q, which carries the token", removedHeaders, name)
		}
	}
	_, query, _ := strings.Cut(r.Path, "?")
	for pair := range strings.SplitSeq(query, "&") {
		k, v, _ := strings.Cut(pair, "=")
		if u, err := url.QueryUnescape(v); err == nil {
			v = u
		}
		if v == tok.Value && !slices.Contains(removedParams, k) {
			tb.Errorf("query_parameters_to_remove: got %v, want it to hold %q, which carries the token", removedParams, k)
		}
	}
}

// expectDeny checks a deny with code: its HTTP and gRPC status, the
// WWW-Authenticate challenge on 401s, the JSON body, the metadata (the
// token's ID when it was recognised, no cost) and that the body repeats none
// of secrets.
func expectDeny(tb testing.TB, resp *authv3.CheckResponse, code policy.DenyCode, tokenID string, secrets []string) {
	tb.Helper()
	d := resp.GetDeniedResponse()
	if d == nil {
		tb.Fatalf("got %s, want deny %s", describe(resp), code)
	}
	wantHTTP, wantGRPC := http.StatusForbidden, codes.PermissionDenied
	switch {
	case strings.HasPrefix(string(code), "token_"):
		wantHTTP, wantGRPC = http.StatusUnauthorized, codes.Unauthenticated
	case code == policy.CodePathInvalid || code == policy.CodeQueryInvalid || code == policy.CodeParamRepeated || code == policy.CodeRequestInvalid:
		// Requests Tollgate cannot read unambiguously.
		wantHTTP = http.StatusBadRequest
	case code == policy.CodeRouteMisconfigured:
		// The operator's mistake, not the caller's.
		wantHTTP = http.StatusInternalServerError
	}
	if got := int(d.GetStatus().GetCode()); got != wantHTTP {
		tb.Errorf("HTTP status: got %d, want %d", got, wantHTTP)
	}
	if got := codes.Code(resp.GetStatus().GetCode()); got != wantGRPC {
		tb.Errorf("grpc status: got %v, want %v", got, wantGRPC)
	}
	hs := responseHeaders(tb, d.GetHeaders())
	if got := hs["content-type"].GetHeader().GetValue(); got != "application/json" {
		tb.Errorf("content-type: got %q, want %q", got, "application/json")
	}
	challenge, found := hs["www-authenticate"]
	switch {
	case wantHTTP == http.StatusUnauthorized && !found:
		tb.Errorf("www-authenticate: got none, want a Bearer challenge on a 401")
	case wantHTTP == http.StatusUnauthorized && !strings.HasPrefix(challenge.GetHeader().GetValue(), "Bearer "):
		tb.Errorf("www-authenticate: got %q, want a Bearer challenge", challenge.GetHeader().GetValue())
	case wantHTTP != http.StatusUnauthorized && found:
		tb.Errorf("www-authenticate: got %q on a %d, want none", challenge.GetHeader().GetValue(), wantHTTP)
	}
	var body denyBody
	dec := json.NewDecoder(strings.NewReader(d.GetBody()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		tb.Errorf("body %q: %v", d.GetBody(), err)
	}
	if body.Error.Code != string(code) {
		tb.Errorf("body code: got %q, want %q (body %s)", body.Error.Code, code, d.GetBody())
	}
	if body.Error.Message == "" {
		tb.Errorf("body message: got empty, want a hint for the developer")
	}
	for _, s := range secrets {
		if len(s) >= 6 && strings.Contains(d.GetBody(), s) {
			tb.Errorf("body %q repeats the token %q", d.GetBody(), s)
		}
	}
	md := resp.GetDynamicMetadata().GetFields()
	if got := md["code"].GetStringValue(); got != string(code) {
		tb.Errorf("metadata code: got %q, want %q", got, code)
	}
	if got := md["token_id"].GetStringValue(); got != tokenID {
		tb.Errorf("metadata token_id: got %q, want %q", got, tokenID)
	}
	if got := md["cost"].GetNumberValue(); got != 0 {
		tb.Errorf("metadata cost: got %v, want 0 (a deny spends nothing)", got)
	}
}

// requestSecrets returns every credential-looking value a request carries.
func requestSecrets(r envoyRequest) []string {
	var out []string
	if v := strings.TrimSpace(r.header("x-api-key")); v != "" {
		out = append(out, v)
	}
	if _, cred, ok := strings.Cut(r.header("authorization"), " "); ok && strings.TrimSpace(cred) != "" {
		out = append(out, strings.TrimSpace(cred))
	}
	_, query, _ := strings.Cut(r.Path, "?")
	for pair := range strings.SplitSeq(query, "&") {
		if k, v, _ := strings.Cut(pair, "="); k == "token" || k == "api_key" {
			out = append(out, v)
			if u, err := url.QueryUnescape(v); err == nil {
				out = append(out, u)
			}
		}
	}
	return out
}

// pollUntil sends req until check accepts the response, and fails the test
// if that takes longer than within. It returns how long it took.
func pollUntil(tb testing.TB, s *testServer, req envoyRequest, within time.Duration, check func(*authv3.CheckResponse) bool) time.Duration {
	tb.Helper()
	start := time.Now()
	var last *authv3.CheckResponse
	for {
		last = s.MustCheck(tb, req.proto())
		if check(last) {
			return time.Since(start)
		}
		if time.Since(start) > within {
			tb.Fatalf("after %v: still %s", time.Since(start).Round(time.Millisecond), describe(last))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// deniedWith reports whether resp is a deny with code.
func deniedWith(code policy.DenyCode) func(*authv3.CheckResponse) bool {
	return func(resp *authv3.CheckResponse) bool {
		return resp.GetDeniedResponse() != nil && resp.GetDynamicMetadata().GetFields()["code"].GetStringValue() == string(code)
	}
}

// allowed reports whether resp is an allow.
func allowed(resp *authv3.CheckResponse) bool { return resp.GetOkResponse() != nil }
