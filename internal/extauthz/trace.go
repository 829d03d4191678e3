package extauthz

import (
	"context"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	grpcmd "google.golang.org/grpc/metadata"

	"github.com/tollgate/tollgate/internal/policy"
)

// Tracing makes a span of every Check, continuing the trace whose context
// Envoy sent in the request's headers. The zero Tracing traces nothing
// and costs Check nothing.
type Tracing struct {
	Tracer trace.Tracer
	// Propagator reads the parent's context from the headers (W3C
	// traceparent, B3).
	Propagator propagation.TextMapPropagator
}

// Span attribute keys. Only identifiers and outcomes go in a span: never
// a token, a credential header, the path or the query (which may hold a
// token).
const (
	attrDecision   = attribute.Key("tollgate.decision")
	attrCode       = attribute.Key("tollgate.deny_code")
	attrCache      = attribute.Key("tollgate.cache")
	attrTokenID    = attribute.Key("tollgate.token_id")
	attrAccountID  = attribute.Key("tollgate.account_id")
	attrCost       = attribute.Key("tollgate.credits.cost")
	attrUsed       = attribute.Key("tollgate.credits.used")
	attrLimit      = attribute.Key("tollgate.credits.limit")
	attrRateLeft   = attribute.Key("tollgate.rate.remaining")
	attrRetryAfter = attribute.Key("tollgate.rate.retry_after_ms")
	attrDryRun     = attribute.Key("tollgate.dry_run")
)

// headerCarrier lets a propagator read a CheckRequest's headers, in
// either of Envoy's encodings. Extraction only: Set and Keys do nothing.
type headerCarrier struct{ h headers }

func (c headerCarrier) Get(key string) string { return c.h.lookup(key) }
func (headerCarrier) Set(string, string)      {}
func (headerCarrier) Keys() []string          { return nil }

// metadataCarrier lets a propagator read gRPC metadata (keys lower case).
type metadataCarrier grpcmd.MD

func (c metadataCarrier) Get(key string) string {
	if v := grpcmd.MD(c).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}
func (metadataCarrier) Set(string, string) {}
func (metadataCarrier) Keys() []string     { return nil }

// checkTraced is Check inside a span that is a child of the trace Envoy
// sent, annotated with the decision.
func (s *Server) checkTraced(ctx context.Context, cr *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	// The request may arrive without a trace: Envoy's own ext_authz span,
	// when its tracing is on, travels in the call's gRPC metadata.
	md, _ := grpcmd.FromIncomingContext(ctx)
	ctx, span := s.cfg.Tracing.start(ctx, headerCarrier{headers{cr.GetAttributes().GetRequest().GetHttp()}}, metadataCarrier(md))
	defer span.End()
	resp, d, err := s.check(ctx, cr)
	s.annotate(span, d, err)
	return resp, err
}

// start opens a decision's span, continuing the trace whose context the
// request's headers carry, else the one in fallback (nil: none).
func (t Tracing) start(ctx context.Context, headers, fallback propagation.TextMapCarrier) (context.Context, trace.Span) {
	parent := t.Propagator.Extract(ctx, headers)
	if !trace.SpanContextFromContext(parent).IsValid() && fallback != nil {
		parent = t.Propagator.Extract(ctx, fallback)
	}
	return t.Tracer.Start(parent, "tollgate.Check", trace.WithSpanKind(trace.SpanKindServer))
}

// annotate describes the decision d, or the error that stopped one, on
// span: the same attributes whichever front end decided.
func (s *Server) annotate(span trace.Span, d policy.Decision, err error) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(decisionAttributes(d, s.cfg.DryRun)...)
	if err != nil {
		// The error's text names what failed (the store, a timeout), never
		// a token.
		span.SetStatus(codes.Error, err.Error())
	}
}

// decisionAttributes describe a decision for a span.
func decisionAttributes(d policy.Decision, dryRun bool) []attribute.KeyValue {
	result, cache := "deny", "hit"
	if d.Allow {
		result = "allow"
	}
	if d.CacheMiss {
		cache = "miss"
	}
	kv := []attribute.KeyValue{attrDecision.String(result), attrCache.String(cache)}
	if d.Code != "" {
		kv = append(kv, attrCode.String(string(d.Code)))
	}
	if dryRun {
		kv = append(kv, attrDryRun.Bool(true))
	}
	if d.TokenID != "" {
		kv = append(kv, attrTokenID.String(d.TokenID), attrAccountID.String(d.AccountID))
	}
	if d.Cost != 0 {
		kv = append(kv, attrCost.Int64(d.Cost))
	}
	if u := d.Usage; u.Metered {
		kv = append(kv, attrUsed.Int64(u.Used), attrLimit.Int64(u.Limit))
		if u.RateRPS > 0 {
			kv = append(kv, attrRateLeft.Int64(u.RateRemaining))
		}
		if u.RetryAfter > 0 {
			kv = append(kv, attrRetryAfter.Int64(int64(u.RetryAfter/time.Millisecond)))
		}
	}
	return kv
}
