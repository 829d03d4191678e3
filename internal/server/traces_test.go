package server_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/tollgate/tollgate/internal/server"
	"github.com/tollgate/tollgate/internal/store"
)

// otlpReceiver is an OTLP/gRPC trace collector in the test's process: it
// keeps every export it receives.
type otlpReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	mu      sync.Mutex
	exports []*collectortrace.ExportTraceServiceRequest
}

func (r *otlpReceiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.exports = append(r.exports, proto.Clone(req).(*collectortrace.ExportTraceServiceRequest))
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// spans returns every span received.
func (r *otlpReceiver) spans() []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*tracepb.Span
	for _, e := range r.exports {
		for _, rs := range e.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				out = append(out, ss.GetSpans()...)
			}
		}
	}
	return out
}

// wire returns everything received, in binary and text form, for a
// search for what must never be exported.
func (r *otlpReceiver) wire(tb testing.TB) []byte {
	tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []byte
	for _, e := range r.exports {
		b, err := proto.Marshal(e)
		if err != nil {
			tb.Fatal(err)
		}
		all = append(append(all, b...), prototext.Format(e)...)
	}
	return all
}

func startOTLPReceiver(tb testing.TB) (*otlpReceiver, string) {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	r := &otlpReceiver{}
	gs := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(gs, r)
	go gs.Serve(lis)
	tb.Cleanup(gs.Stop)
	return r, lis.Addr().String()
}

func attr(sp *tracepb.Span, key string) string {
	for _, kv := range sp.GetAttributes() {
		if kv.GetKey() == key {
			v := kv.GetValue()
			if s := v.GetStringValue(); s != "" {
				return s
			}
			return prototext.Format(v)
		}
	}
	return ""
}

// TestTracesJoinEnvoys sends Checks carrying Envoy's trace context (W3C
// traceparent, B3 single and multiple headers) and a token in every
// place a token goes, and reads what an OTLP collector receives: a
// Check span in Envoy's trace, under Envoy's span, describing the
// decision and the cache, a store span under it on a miss, and no token
// anywhere.
func TestTracesJoinEnvoys(t *testing.T) {
	f := MustSeed(t, store.SQLite)
	recv, endpoint := startOTLPReceiver(t)
	s := MustStartServer(t, f.URL, func(c *server.Config) {
		// Only what Envoy sampled is traced: a ratio of 0 for the rest.
		c.Tracing = server.TracingConfig{OTLPEndpoint: endpoint, OTLPInsecure: true, SampleRatio: 0}
	})
	basic, secret := f.V("basic"), f.V("secret")
	const (
		w3cTrace, w3cParent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
		b3Trace, b3Parent   = "80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1"
		b3mTrace, b3mParent = "463ac35c9f6413ad48485a3953bb6124", "0020000000000001"
		unsampled           = "0af7651916cd43dd8448eb211c80319c"
	)
	type send struct {
		name         string
		req          envoyRequest
		trace, span  string
		cache, token string
	}
	sends := []send{
		{"traceparent, miss", envoyRequest{Path: "/v1/prices/AAPL?token=" + basic, Headers: hdr(
			"traceparent", "00-"+w3cTrace+"-"+w3cParent+"-01", "authorization", "Bearer "+basic)}, w3cTrace, w3cParent, "miss", "basic"},
		{"b3 single, hit", envoyRequest{Path: "/v1/prices/AAPL", Headers: hdr(
			"b3", b3Trace+"-"+b3Parent+"-1", "x-api-key", basic)}, b3Trace, b3Parent, "hit", "basic"},
		{"b3 multiple, secret token", envoyRequest{Path: "/v1/prices/AAPL", Headers: hdr(
			"x-b3-traceid", b3mTrace, "x-b3-spanid", b3mParent, "x-b3-sampled", "1", "x-api-key", secret)}, b3mTrace, b3mParent, "miss", "secret"},
	}
	for _, c := range sends {
		expectAllow(t, c.req, s.MustCheck(t, c.req.proto()), f.Token(t, c.token), 1, true)
	}
	// A request that arrived without a trace: Envoy's ext_authz span is in
	// the call's gRPC metadata.
	const mdTrace, mdParent = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
	mdReq := envoyRequest{Path: "/v1/prices/AAPL", Headers: hdr("x-api-key", basic)}
	mdCtx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(),
		"traceparent", "00-"+mdTrace+"-"+mdParent+"-01"), 10*time.Second)
	defer cancel()
	resp, err := s.Auth.Check(mdCtx, mdReq.proto())
	if err != nil {
		t.Fatal(err)
	}
	expectAllow(t, mdReq, resp, f.Token(t, "basic"), 1, true)
	sends = append(sends, send{"gRPC metadata", mdReq, mdTrace, mdParent, "hit", "basic"})
	// Envoy chose not to sample this one: nothing is exported for it.
	s.MustCheck(t, envoyRequest{Path: "/v1/prices/AAPL", Headers: hdr(
		"traceparent", "00-"+unsampled+"-"+w3cParent+"-00", "x-api-key", basic)}.proto())
	// Stopping flushes the spans still queued.
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}

	spans := recv.spans()
	byTrace := map[string][]*tracepb.Span{}
	for _, sp := range spans {
		id := hex.EncodeToString(sp.GetTraceId())
		byTrace[id] = append(byTrace[id], sp)
	}
	if got := byTrace[unsampled]; len(got) != 0 {
		t.Errorf("an unsampled trace exported %d spans, want none", len(got))
	}
	for _, c := range sends {
		t.Run(c.name, func(t *testing.T) {
			var checkSpan, storeSpan *tracepb.Span
			for _, sp := range byTrace[c.trace] {
				switch sp.GetName() {
				case "tollgate.Check":
					checkSpan = sp
				case "tollgate.store.TokenByHash", "tollgate.store.TokensByHash":
					storeSpan = sp
				}
			}
			if checkSpan == nil {
				t.Fatalf("no tollgate.Check span in trace %s; received %d spans", c.trace, len(spans))
			}
			if got := hex.EncodeToString(checkSpan.GetParentSpanId()); got != c.span {
				t.Errorf("Check's parent span %s, want Envoy's %s", got, c.span)
			}
			tok := f.Token(t, c.token)
			for key, want := range map[string]string{
				"tollgate.decision": "allow", "tollgate.cache": c.cache, "tollgate.token_id": tok.ID, "tollgate.account_id": tok.AccountID,
			} {
				if got := attr(checkSpan, key); got != want {
					t.Errorf("attribute %s: got %q, want %q", key, got, want)
				}
			}
			switch {
			case c.cache == "miss" && storeSpan == nil:
				t.Error("a cache miss without a store span")
			case c.cache == "miss" && !bytes.Equal(storeSpan.GetParentSpanId(), checkSpan.GetSpanId()):
				t.Error("the store span is not the Check span's child")
			case c.cache == "hit" && storeSpan != nil:
				t.Error("a cache hit with a store span")
			}
		})
	}
	wire := recv.wire(t)
	for _, v := range []string{basic, secret} {
		if bytes.Contains(wire, []byte(v)) || bytes.Contains(wire, []byte(v[len(v)/2:])) {
			t.Fatalf("a token (or half of one) was exported in a span")
		}
	}
	if strings.Contains(string(wire), "/v1/prices/AAPL") {
		t.Fatal("the request's path (which may hold a token) was exported in a span")
	}
}
