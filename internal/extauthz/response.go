package extauthz

import (
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tollgate/tollgate/internal/policy"
)

// Headers Tollgate sets for the upstream on an allowed request. They
// overwrite whatever the caller sent under the same names.
const (
	HeaderAccountID = "x-tollgate-account-id"
	HeaderTokenID   = "x-tollgate-token-id"
	HeaderTokenKind = "x-tollgate-token-kind"
	// HeaderDryRun carries the code a request would have been denied with,
	// in dry-run mode.
	HeaderDryRun = "x-tollgate-dry-run-deny"
)

// The credential headers the upstream must not see; the credential query
// parameters are token and api_key.
var credentialHeaders = []string{"authorization", "x-api-key"}

// answer holds what one Check is read into and answered with, so that an
// allowed request costs one allocation for all of it rather than one per
// message: the request as the policy reads it, the response's messages,
// its identity headers and the access-log metadata. Its size is kept to
// what every allow needs (a larger block would cost more garbage than the
// allocations it saves): a metered request's credit headers take a block
// of their own (creditBlock), a dry run's fourth header an allocation, and
// a deny a response of its own (deniedResponse).
type answer struct {
	req    policy.Request
	resp   authv3.CheckResponse
	status rpcstatus.Status
	okWrap authv3.CheckResponse_OkResponse
	ok     authv3.OkHttpResponse
	pairs  [3]headerPair // account, token id and kind for the upstream
	up     [3]*corev3.HeaderValueOption
	remove [2]string // the dry-run header, authorization or x-api-key
	params [2]string // token or api_key, as named and as sent
	meta   metadataBlock
}

// creditBlock holds a metered request's credit headers.
type creditBlock struct {
	pairs [4]headerPair
	list  [4]*corev3.HeaderValueOption
}

// allowResponse lets the request through with the caller's identity for
// the upstream and, unless configured otherwise, without its credentials.
// dryRunCode, when set, marks a request that would have been denied.
func (s *Server) allowResponse(a *answer, d policy.Decision, tier policy.Tier, cr *authv3.CheckRequest, dryRunCode policy.DenyCode) *authv3.CheckResponse {
	up := headerList{block: a.pairs[:3], list: a.up[:0]}
	up.set(HeaderAccountID, d.AccountID)
	up.set(HeaderTokenID, d.TokenID)
	up.set(HeaderTokenKind, d.Kind.String())
	if dryRunCode != "" {
		up.set(HeaderDryRun, string(dryRunCode))
	}
	ok := &a.ok
	ok.Headers = up.list
	if d.Usage.Metered {
		c := new(creditBlock)
		down := headerList{block: c.pairs[:], list: c.list[:0]}
		s.usageHeaders(d, tier, &down)
		ok.ResponseHeadersToAdd = down.list
	}
	ok.HeadersToRemove = a.remove[:0]
	if dryRunCode == "" && (headers{cr.GetAttributes().GetRequest().GetHttp()}).Get(HeaderDryRun) != "" {
		// Only Tollgate may say a request would have been denied.
		ok.HeadersToRemove = append(ok.HeadersToRemove, HeaderDryRun)
	}
	if s.cfg.StripCredentials {
		httpReq := cr.GetAttributes().GetRequest().GetHttp()
		h := headers{httpReq}
		for _, name := range credentialHeaders {
			if h.Get(name) != "" {
				ok.HeadersToRemove = append(ok.HeadersToRemove, name)
			}
		}
		_, query, _ := strings.Cut(httpReq.GetPath(), "?")
		if q, err := readQuery(query); err == nil {
			ok.QueryParametersToRemove = a.params[:0]
			for _, p := range []int{paramToken, paramAPIKey} {
				if q.n[p] == 0 {
					continue
				}
				// Envoy removes parameters by their name as sent: an
				// escaped spelling ("%74oken") is removed under it too.
				ok.QueryParametersToRemove = append(ok.QueryParametersToRemove, paramNames[p])
				if raw := q.raw[p]; raw != paramNames[p] && utf8.ValidString(raw) {
					ok.QueryParametersToRemove = append(ok.QueryParametersToRemove, raw)
				}
			}
			ok.QueryParametersToRemove = nilIfEmpty(ok.QueryParametersToRemove)
		}
	}
	ok.HeadersToRemove = nilIfEmpty(ok.HeadersToRemove)
	a.status.Code = int32(codes.OK)
	a.okWrap.OkResponse = ok
	a.resp.Status, a.resp.HttpResponse, a.resp.DynamicMetadata = &a.status, &a.okWrap, a.meta.fill(d)
	return &a.resp
}

// nilIfEmpty keeps an empty list nil, as it was before the answer lent
// it room: the response is the same message either way, but not to
// reflect.DeepEqual and the tests that compare with it.
func nilIfEmpty[T any](l []T) []T {
	if len(l) == 0 {
		return nil
	}
	return l
}

// deniedResponse refuses the request with the response profile's status
// and body, for 401s a WWW-Authenticate challenge, and for 429s
// Retry-After.
func (s *Server) deniedResponse(d policy.Decision, tier policy.Tier) *authv3.CheckResponse {
	dn := s.cfg.ResponseProfile.deny(d)
	status := dn.status
	hdrs := newHeaderList(8)
	hdrs.set("content-type", dn.contentType)
	s.usageHeaders(d, tier, &hdrs)
	grpcCode := codes.PermissionDenied
	switch status {
	case http.StatusUnauthorized:
		grpcCode = codes.Unauthenticated
		hdrs.set("www-authenticate", `Bearer realm="tollgate", error="invalid_token", error_description="`+string(d.Code)+`"`)
	case http.StatusTooManyRequests:
		grpcCode = codes.ResourceExhausted
		hdrs.set("retry-after", strconv.FormatInt(ceilSeconds(d.Usage.RetryAfter), 10))
	case http.StatusPaymentRequired:
		grpcCode = codes.ResourceExhausted
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(grpcCode), Message: string(d.Code)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(status)},
			Headers: hdrs.list,
			Body:    dn.body,
		}},
		DynamicMetadata: new(metadataBlock).fill(d),
	}
}

// headerList builds header options that overwrite any the request or
// response already has. It takes its options from a block: a Check
// answers with up to ten headers, and one allocation beats twenty.
type headerList struct {
	block []headerPair // room for options; set takes the next
	list  []*corev3.HeaderValueOption
}

type headerPair struct {
	opt corev3.HeaderValueOption
	val corev3.HeaderValue
}

// newHeaderList returns a list with room for n options.
func newHeaderList(n int) headerList {
	return headerList{block: make([]headerPair, n), list: make([]*corev3.HeaderValueOption, 0, n)}
}

func (h *headerList) set(k, v string) {
	var p *headerPair
	if len(h.list) < len(h.block) {
		p = &h.block[len(h.list)]
	} else {
		p = new(headerPair)
	}
	p.val.Key, p.val.Value = k, v
	p.opt.Header, p.opt.AppendAction = &p.val, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	h.list = append(h.list, &p.opt)
}

// CreditHeaders name the response headers that tell callers where they
// stand.
type CreditHeaders struct {
	Used, Cost, Limit, Remaining string
}

// DefaultCreditHeaders are the names used unless configured otherwise.
func DefaultCreditHeaders() CreditHeaders {
	return CreditHeaders{Used: "x-credits-used", Cost: "x-credits-cost", Limit: "x-credits-limit", Remaining: "x-credits-remaining"}
}

// usageHeaders adds the credit headers, named by the response profile for
// a request of tier (and for a rate-limited request the IETF RateLimit
// fields), when the request was metered.
func (s *Server) usageHeaders(d policy.Decision, tier policy.Tier, hdrs *headerList) {
	u := d.Usage
	if !u.Metered {
		return
	}
	names := s.cfg.ResponseProfile.usageNames(s.cfg.CreditHeaders, tier)
	hdrs.set(names.used, strconv.FormatInt(u.Used, 10))
	for _, name := range names.cost {
		if name != "" {
			hdrs.set(name, strconv.FormatInt(d.Cost, 10))
		}
	}
	if rem, ok := u.Remaining(); ok {
		hdrs.set(names.limit, strconv.FormatInt(u.Limit, 10))
		hdrs.set(names.remaining, strconv.FormatInt(rem, 10))
	}
	if d.Code == policy.CodeRateLimited && u.RateRPS > 0 {
		// draft-ietf-httpapi-ratelimit-headers: a policy of burst requests
		// refilled at rps a second, and what is left of it. Sent with the
		// 429 only: on every allow it would cost each Check two headers.
		// A refusal that names no rate (RateRPS 0) has no window to state.
		hdrs.set("ratelimit-policy", `"token";q=`+strconv.FormatInt(u.RateBurst, 10)+`;w=`+
			strconv.FormatInt(max(1, (u.RateBurst+u.RateRPS-1)/u.RateRPS), 10))
		hdrs.set("ratelimit", `"token";r=`+strconv.FormatInt(u.RateRemaining, 10)+`;t=`+
			strconv.FormatInt(ceilSeconds(u.RetryAfter), 10))
	}
}

// ceilSeconds rounds a wait up to whole seconds, as Retry-After wants.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    policy.DenyCode `json:"code"`
	Message string          `json:"message"`
}

// metadataBlock holds a Check's metadata: the Struct, its values and
// their oneof wrappers, in one allocation (or none of its own, inside an
// answer) rather than two each: this runs on every Check.
type metadataBlock struct {
	st   structpb.Struct
	vals [5]structpb.Value
	strs [4]structpb.Value_StringValue
	cost structpb.Value_NumberValue
}

// fill makes m what Envoy's access log and rate-limit filter can read,
// under the ext_authz filter's namespace.
func (m *metadataBlock) fill(d policy.Decision) *structpb.Struct {
	f := make(map[string]*structpb.Value, 5)
	m.cost.NumberValue = float64(d.Cost)
	m.vals[0].Kind = &m.cost
	f["cost"] = &m.vals[0]
	str := func(i int, key, v string) {
		m.strs[i].StringValue = v
		m.vals[i+1].Kind = &m.strs[i]
		f[key] = &m.vals[i+1]
	}
	if d.TokenID != "" {
		str(0, "account_id", d.AccountID)
		str(1, "token_id", d.TokenID)
		str(2, "token_kind", d.Kind.String())
	}
	if d.Code != "" {
		str(3, "code", string(d.Code))
	}
	if d.Rate.RPS > 0 {
		f["rate_limit"] = rateLimitOverride(d.Rate)
	}
	if d.AccountRate.RPS > 0 {
		f["account_rate_limit"] = rateLimitOverride(d.AccountRate)
	}
	m.st.Fields = f
	return &m.st
}

// rateLimitOverride is a rate limit as Envoy's rate-limit action reads a
// descriptor's limit override from dynamic metadata (RateLimit.Override's
// dynamic_metadata): requests_per_unit and unit. A rate-limit service
// counts in fixed windows and knows no burst, so only the rate goes.
// Built only for rate-limited tokens: the others allocate nothing more.
func rateLimitOverride(rl policy.RateLimit) *structpb.Value {
	return structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
		"requests_per_unit": structpb.NewNumberValue(float64(rl.RPS)),
		"unit":              structpb.NewStringValue("SECOND"),
	}})
}
