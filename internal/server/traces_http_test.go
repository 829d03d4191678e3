package server_test

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/server"
	"github.com/tollgate/tollgate/internal/store"
)

// TestHTTPTracesMatchCheck sends the same requests to Check over gRPC and
// to the HTTP authorization endpoint in each proxy's dialect, each in a
// trace of its own (W3C traceparent, or B3 as a proxy copies it from the
// caller), and reads what an OTLP collector receives: for every HTTP
// subrequest a tollgate.Check span under the caller's span, with the
// attributes Check's span has for the same request (decisions made before
// any token is looked up included), a store span under it on a miss, and
// no token anywhere.
func TestHTTPTracesMatchCheck(t *testing.T) {
	f := MustSeed(t, store.SQLite)
	recv, endpoint := startOTLPReceiver(t)
	s := MustStartServer(t, f.URL, func(c *server.Config) {
		c.Listen.AuthzHTTP = "127.0.0.1:0"
		// Only what the caller sampled is traced: a ratio of 0 for the rest.
		c.Tracing = server.TracingConfig{OTLPEndpoint: endpoint, OTLPInsecure: true, SampleRatio: 0}
	})
	basic := f.V("basic")
	core := ext("api", "data", "tier", "core")
	requests := []struct {
		name  string
		req   envoyRequest
		token string // the token the decision names, "" for none
	}{
		{"allowed", envoyRequest{Path: "/v1/prices/AAPL?token=" + basic, Headers: hdr("authorization", "Bearer "+basic), Ext: core}, "basic"},
		{"tier denied", envoyRequest{Path: "/v1/orderbook", Headers: hdr("x-api-key", basic), Ext: ext("api", "data", "tier", "premium")}, "basic"},
		{"unknown token", envoyRequest{Path: "/v1/prices", Headers: hdr("x-api-key", policy.NewValue(policy.Publishable)), Ext: core}, ""},
		{"path refused before any look-up", envoyRequest{Path: "/v1/%2e%2e/prices", Headers: hdr("x-api-key", basic), Ext: core}, ""},
	}
	type sent struct {
		name, via    string
		trace, span  string
		token, cache string
	}
	var sends []sent
	n := 0
	traceOf := func(via string, h map[string]string) (map[string]string, string, string) {
		n++
		trace, span := fmt.Sprintf("%032x", 0xa000+n), fmt.Sprintf("%016x", 0xb000+n)
		out := maps.Clone(h)
		if via == "forward-auth" {
			out["b3"] = trace + "-" + span + "-1"
		} else {
			out["traceparent"] = "00-" + trace + "-" + span + "-01"
		}
		return out, trace, span
	}
	for _, r := range requests {
		for _, via := range append([]string{"grpc"}, httpDialects...) {
			req := r.req
			var trace, span string
			req.Headers, trace, span = traceOf(via, r.req.Headers)
			if via == "grpc" {
				s.MustCheck(t, req.proto())
			} else {
				s.mustAuthorizeHTTP(t, via, req)
			}
			sends = append(sends, sent{r.name, via, trace, span, r.token, ""})
		}
	}
	// A trace the caller chose not to sample exports nothing.
	const unsampled = "0af7651916cd43dd8448eb211c80319c"
	s.mustAuthorizeHTTP(t, "nginx", envoyRequest{Path: "/v1/prices", Ext: core, Headers: hdr(
		"traceparent", "00-"+unsampled+"-00f067aa0ba902b7-00", "x-api-key", basic)})
	if err := s.Stop(); err != nil { // flushes the spans still queued
		t.Fatal(err)
	}

	byTrace := map[string][]*tracepb.Span{}
	for _, sp := range recv.spans() {
		id := hex.EncodeToString(sp.GetTraceId())
		byTrace[id] = append(byTrace[id], sp)
	}
	if got := byTrace[unsampled]; len(got) != 0 {
		t.Errorf("an unsampled trace exported %d spans, want none", len(got))
	}
	checkSpans := map[string]map[string]string{} // name/via → attributes
	for _, c := range sends {
		var checkSpan, storeSpan *tracepb.Span
		for _, sp := range byTrace[c.trace] {
			switch sp.GetName() {
			case "tollgate.Check":
				checkSpan = sp
			case "tollgate.store.TokenByHash", "tollgate.store.TokensByHash":
				storeSpan = sp
			}
		}
		what := c.name + " via " + c.via
		if checkSpan == nil {
			t.Errorf("%s: no tollgate.Check span in trace %s", what, c.trace)
			continue
		}
		if got := hex.EncodeToString(checkSpan.GetParentSpanId()); got != c.span {
			t.Errorf("%s: the Check span's parent is %s, want the caller's %s", what, got, c.span)
		}
		if storeSpan != nil && !bytes.Equal(storeSpan.GetParentSpanId(), checkSpan.GetSpanId()) {
			t.Errorf("%s: the store span is not the Check span's child", what)
		}
		attrs := map[string]string{}
		for _, kv := range checkSpan.GetAttributes() {
			attrs[kv.GetKey()] = attr(checkSpan, kv.GetKey())
		}
		if attrs["tollgate.cache"] == "miss" && storeSpan == nil {
			t.Errorf("%s: a cache miss without a store span", what)
		}
		if c.token != "" && attrs["tollgate.token_id"] != f.Token(t, c.token).ID {
			t.Errorf("%s: token_id got %q, want %s", what, attrs["tollgate.token_id"], f.Token(t, c.token).ID)
		}
		checkSpans[what] = attrs
	}
	// The same attributes as Check's span for the same request, but for
	// what the earlier requests changed: the cache (warmed by the first)
	// and the credits used (each allow spends one).
	for _, r := range requests {
		want := checkSpans[r.name+" via grpc"]
		if want == nil {
			continue
		}
		if want["tollgate.decision"] == "" {
			t.Errorf("%s via grpc: no decision attribute (%v)", r.name, want)
		}
		for _, via := range httpDialects {
			got := checkSpans[r.name+" via "+via]
			if got == nil {
				continue
			}
			if !slices.Equal(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want))) {
				t.Errorf("%s via %s: attributes %v, want those of Check's span %v", r.name, via, got, want)
				continue
			}
			for k, v := range want {
				if k != "tollgate.cache" && k != "tollgate.credits.used" && got[k] != v {
					t.Errorf("%s via %s: %s got %q, want Check's %q", r.name, via, k, got[k], v)
				}
			}
		}
	}
	wire := recv.wire(t)
	if bytes.Contains(wire, []byte(basic)) || bytes.Contains(wire, []byte(basic[len(basic)/2:])) {
		t.Fatal("a token (or half of one) was exported in a span")
	}
	if strings.Contains(string(wire), "/v1/prices") {
		t.Fatal("the request's path (which may hold a token) was exported in a span")
	}
}
