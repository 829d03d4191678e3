package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/contrib/propagators/b3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tollgate/tollgate/internal/credits"
	"github.com/tollgate/tollgate/internal/extauthz"
)

// TracingConfig is where Check's spans go. Without an endpoint nothing is
// traced, and Check does no tracing work at all.
type TracingConfig struct {
	// OTLPEndpoint is the host:port of an OTLP/gRPC collector.
	OTLPEndpoint string
	// OTLPInsecure sends spans without TLS, to a collector on the node or
	// in the pod.
	OTLPInsecure bool
	// SampleRatio is the share of Checks traced among those that arrive
	// without a sampling decision; a Check whose trace Envoy sampled (or
	// chose not to) follows Envoy's choice.
	SampleRatio float64
}

// Validate reports an unusable tracing configuration.
func (c *TracingConfig) Validate() error {
	if c.SampleRatio < 0 || c.SampleRatio > 1 {
		return errors.New("the trace sample ratio must be between 0 and 1")
	}
	return nil
}

// tracing is a tracer exporting over OTLP, and the propagators that read
// the parent's context from a request: W3C traceparent and B3 (single and
// multiple headers), which are what Envoy's tracers send.
type tracing struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
	prop     propagation.TextMapPropagator
}

// newTracing returns nil when no endpoint is configured. The exporter
// connects lazily: a collector that is down loses spans, never Checks.
func newTracing(ctx context.Context, cfg TracingConfig) (*tracing, error) {
	if cfg.OTLPEndpoint == "" {
		return nil, nil
	}
	opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(cfg.OTLPEndpoint)}
	if cfg.OTLPInsecure {
		opts = append(opts, otlptracegrpc.WithInsecure())
	}
	exp, err := otlptracegrpc.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("otlp exporter: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "tollgate"))),
	)
	return &tracing{
		provider: tp,
		tracer:   tp.Tracer("github.com/tollgate/tollgate"),
		prop:     propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, b3.New()),
	}, nil
}

// extauthz returns Check's tracing; the zero value when off.
func (t *tracing) extauthz() extauthz.Tracing {
	if t == nil {
		return extauthz.Tracing{}
	}
	return extauthz.Tracing{Tracer: t.tracer, Propagator: t.prop}
}

// start starts a client span for a round trip to a dependency, as a child
// of the Check in ctx; without tracing it returns a span that does
// nothing, at no cost.
func (t *tracing) start(ctx context.Context, name string, kv ...attribute.KeyValue) (context.Context, trace.Span) {
	if t == nil {
		return ctx, trace.SpanFromContext(ctx)
	}
	return t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(kv...))
}

// end ends a round trip's span, marking it failed on err.
func (t *tracing) end(span trace.Span, err error) {
	if t == nil {
		return
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// shutdown sends the spans still queued.
func (t *tracing) shutdown(ctx context.Context) {
	if t == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = t.provider.Shutdown(ctx) // spans lost to a collector that is down are not Tollgate's failure
}

// tracedLimiter puts each fleet rate-limit round trip (Redis) in a span.
type tracedLimiter struct {
	credits.Limiter
	t *tracing
}

func (l tracedLimiter) Allow(ctx context.Context, key string, rps, burst int64) (bool, int64, time.Duration, error) {
	// The key names a token id or account, never a token's value; it
	// stays out of the span all the same.
	ctx, span := l.t.start(ctx, "tollgate.ratelimit", attribute.String("db.system.name", "redis"))
	ok, left, wait, err := l.Limiter.Allow(ctx, key, rps, burst)
	l.t.end(span, err)
	return ok, left, wait, err
}
