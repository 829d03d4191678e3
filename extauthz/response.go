package extauthz

import (
	"encoding/json"
	"net/http"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tollgate/tollgate/policy"
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

// httpStatus is the one table from deny codes to HTTP statuses.
func httpStatus(c policy.Code) int {
	if c.Unauthenticated() {
		return http.StatusUnauthorized
	}
	return http.StatusForbidden
}

// The credentials the upstream must not see.
var (
	credentialHeaders = []string{"authorization", "x-api-key"}
	credentialParams  = []string{string(SourceQueryToken), string(SourceQueryAPIKey)}
)

// allowResponse lets the request through with the caller's identity for
// the upstream and, unless configured otherwise, without its credentials.
func (s *Server) allowResponse(d policy.Decision, cr *authv3.CheckRequest, extra []*corev3.HeaderValueOption) *authv3.CheckResponse {
	ok := &authv3.OkHttpResponse{
		Headers: append([]*corev3.HeaderValueOption{
			overwrite(HeaderAccountID, d.AccountID),
			overwrite(HeaderTokenID, d.TokenID),
			overwrite(HeaderTokenKind, d.Kind.String()),
		}, extra...),
	}
	if s.cfg.StripCredentials {
		httpReq := cr.GetAttributes().GetRequest().GetHttp()
		h := headers{httpReq}
		for _, name := range credentialHeaders {
			if h.get(name) != "" {
				ok.HeadersToRemove = append(ok.HeadersToRemove, name)
			}
		}
		_, query, _ := strings.Cut(httpReq.GetPath(), "?")
		var v [1]string
		for _, name := range credentialParams {
			if queryParams(query, name, v[:]) > 0 {
				ok.QueryParametersToRemove = append(ok.QueryParametersToRemove, name)
			}
		}
	}
	return &authv3.CheckResponse{
		Status:          &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse:    &authv3.CheckResponse_OkResponse{OkResponse: ok},
		DynamicMetadata: metadata(d),
	}
}

// deniedResponse refuses the request with a status, a JSON body naming the
// reason, and for 401s a WWW-Authenticate challenge.
func (s *Server) deniedResponse(d policy.Decision) *authv3.CheckResponse {
	status := httpStatus(d.Code)
	body, _ := json.Marshal(errorBody{Error: errorDetail{Code: d.Code, Message: d.Message}})
	hdrs := []*corev3.HeaderValueOption{overwrite("content-type", "application/json")}
	grpcCode := codes.PermissionDenied
	if status == http.StatusUnauthorized {
		grpcCode = codes.Unauthenticated
		hdrs = append(hdrs, overwrite("www-authenticate",
			`Bearer realm="tollgate", error="invalid_token", error_description="`+string(d.Code)+`"`))
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(grpcCode), Message: string(d.Code)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(status)},
			Headers: hdrs,
			Body:    string(body),
		}},
		DynamicMetadata: metadata(d),
	}
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    policy.Code `json:"code"`
	Message string      `json:"message"`
}

// metadata is what Envoy's access log and rate-limit filter can read, under
// the ext_authz filter's namespace.
func metadata(d policy.Decision) *structpb.Struct {
	f := map[string]*structpb.Value{
		"cost": structpb.NewNumberValue(float64(d.Cost)),
	}
	if d.TokenID != "" {
		f["account_id"] = structpb.NewStringValue(d.AccountID)
		f["token_id"] = structpb.NewStringValue(d.TokenID)
		f["token_kind"] = structpb.NewStringValue(d.Kind.String())
	}
	if d.Code != "" {
		f["code"] = structpb.NewStringValue(string(d.Code))
	}
	return &structpb.Struct{Fields: f}
}

func overwrite(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}
