package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// call describes one request as a client sends it through Envoy.
type call struct {
	Token   string
	Referer string
	// Ext is the route's context_extensions (Envoy's per-route
	// check_settings); nil means core data.
	Ext map[string]string
}

var requestSeq atomic.Uint64

// envoyRequest builds a CheckRequest shaped like the one Envoy's ext_authz
// filter sends for "GET /v1/prices/AAPL?token=…": the TCP peer as source,
// the listener as destination, lower-case pseudo and regular headers, the
// path with its query string, and the route's context_extensions.
func envoyRequest(c call) *authv3.CheckRequest {
	path := "/v1/prices/AAPL?range=1d&token=" + url.QueryEscape(c.Token)
	ext := c.Ext
	if ext == nil {
		ext = map[string]string{"api": "data", "tier": "core"}
	}
	id := fmt.Sprintf("e2e-%d", requestSeq.Add(1))
	headers := map[string]string{
		":authority":        "api.example.com",
		":method":           "GET",
		":path":             path,
		":scheme":           "https",
		"accept":            "application/json",
		"user-agent":        "Mozilla/5.0 (X11; Linux x86_64) e2e",
		"x-forwarded-proto": "https",
		"x-request-id":      id,
		"x-envoy-internal":  "true",
	}
	if c.Referer != "" {
		headers["referer"] = c.Referer
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: socketAddr("203.0.113.7", 51234)},
		Destination: &authv3.AttributeContext_Peer{
			Address: socketAddr("10.0.0.5", 8443),
		},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.Now(),
			Http: &authv3.AttributeContext_HttpRequest{
				Id:       id,
				Method:   "GET",
				Headers:  headers,
				Path:     path,
				Host:     "api.example.com",
				Scheme:   "https",
				Protocol: "HTTP/1.1",
			},
		},
		ContextExtensions: ext,
	}}
}

func socketAddr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// outcome is what a Check came to: an allow, a deny with its code, or a
// gRPC error (Tollgate could not decide).
type outcome struct {
	Allowed  bool
	DenyCode string     // the deny body's error.code
	HTTP     int        // the deny's HTTP status
	GRPC     codes.Code // codes.OK unless the RPC itself failed
	Err      string
	Took     time.Duration
	// Bad says how the answer broke the ext_authz contract, if it did.
	Bad string
}

func (o outcome) String() string {
	switch {
	case o.Bad != "":
		return "malformed answer: " + o.Bad
	case o.GRPC != codes.OK:
		return fmt.Sprintf("gRPC error %s (%s) after %v", o.GRPC, o.Err, o.Took)
	case o.Allowed:
		return "allow"
	}
	return fmt.Sprintf("deny %d %s", o.HTTP, o.DenyCode)
}

// denied reports whether the Check was answered with a deny of code.
func (o outcome) denied(code string) bool {
	return o.Bad == "" && o.GRPC == codes.OK && !o.Allowed && o.DenyCode == code
}

// check sends one Check with a deadline (Envoy always sets one: the
// ext_authz filter's timeout) and classifies the answer. It is safe to call
// from any goroutine.
func (r *replica) check(c call, timeout time.Duration) outcome {
	return r.checkRequest(envoyRequest(c), timeout)
}

// checkRequest is check for a CheckRequest built already.
func (r *replica) checkRequest(req *authv3.CheckRequest, timeout time.Duration) outcome {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	resp, err := r.auth.Check(ctx, req)
	o := outcome{Took: time.Since(start)}
	if err != nil {
		st := status.Convert(err)
		o.GRPC, o.Err = st.Code(), st.Message()
		return o
	}
	switch hr := resp.GetHttpResponse().(type) {
	case *authv3.CheckResponse_OkResponse:
		if resp.GetStatus().GetCode() != int32(codes.OK) {
			o.Bad = fmt.Sprintf("OkResponse with status %v", resp.GetStatus())
			return o
		}
		o.Allowed = true
	case *authv3.CheckResponse_DeniedResponse:
		if resp.GetStatus().GetCode() == int32(codes.OK) {
			o.Bad = "DeniedResponse with status OK"
			return o
		}
		o.HTTP = int(hr.DeniedResponse.GetStatus().GetCode())
		var body struct {
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		if err := json.Unmarshal([]byte(hr.DeniedResponse.GetBody()), &body); err != nil {
			o.Bad = fmt.Sprintf("deny body %q: %v", hr.DeniedResponse.GetBody(), err)
			return o
		}
		o.DenyCode = body.Error.Code
	default:
		o.Bad = fmt.Sprintf("CheckResponse without an http_response: %v", resp)
	}
	return o
}

// mustAllow fails unless the Check is allowed.
func (r *replica) mustAllow(tb testing.TB, c call) {
	tb.Helper()
	if o := r.check(c, 5*time.Second); !o.Allowed || o.Bad != "" {
		tb.Fatalf("%s: Check got %v, want allow", r.name, o)
	}
}

// mustWarm caches c's token on r, allowing a few tries: the first look-up
// pays for a new pool connection and the statement's preparation, which a
// loaded machine can stretch past a short --store-timeout. Tests that set
// one measure what comes after the warm-up, not the warm-up.
func (r *replica) mustWarm(tb testing.TB, c call) {
	tb.Helper()
	var o outcome
	for range 5 {
		if o = r.check(c, 5*time.Second); o.Allowed && o.Bad == "" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("%s: Check got %v after 5 tries, want allow", r.name, o)
}
