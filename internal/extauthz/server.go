// Package extauthz is Tollgate's Envoy ext_authz v3 gRPC server: it turns
// each CheckRequest into a policy.Request, asks the policy for a decision,
// and turns the decision into an allow or a deny Envoy can act on.
package extauthz

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate/internal/policy"
)

// Decider decides requests: *policy.Decider.
type Decider interface {
	Decide(ctx context.Context, req *policy.Request) (policy.Decision, error)
}

// Config shapes how requests are read and answered.
type Config struct {
	// TokenSources is where tokens are looked for, in order.
	TokenSources []TokenSource
	// TrustedHops is how many proxies in front of Envoy append to
	// x-forwarded-for; 0 means the TCP peer Envoy saw is the caller.
	TrustedHops int
	// Routes describe requests whose route sets no context_extensions.
	Routes *Routes
	// AllowUnmatchedRoutes lets through, on the token's validity alone, a
	// request that neither context_extensions nor a route rule describes.
	// Off by default: such a request is denied (route_unmatched), since a
	// token limited to some datasets or APIs would otherwise reach all.
	AllowUnmatchedRoutes bool
	// StripCredentials removes the token from what the upstream receives.
	StripCredentials bool
	// DryRun decides and reports as usual but lets every request through.
	DryRun bool
	// DenyLogLevel is the level of the one log line written per deny.
	DenyLogLevel slog.Level
	// CreditHeaders name the headers that report credits to the caller.
	CreditHeaders CreditHeaders
	// ResponseProfile is the dialect of denies and usage headers.
	ResponseProfile ResponseProfile
	// Tracing, when its Tracer is set, makes a span of every Check.
	Tracing Tracing
	// StreamWorkers is how many long-lived goroutines serve Check
	// streams; a stream that finds all of them busy gets a goroutine of
	// its own, as with none. 0 means none.
	StreamWorkers int
}

// Observer hears of every Check: its decision, or the error that stopped
// one, and how long it took. Metrics hang off it.
type Observer func(d policy.Decision, err error, elapsed time.Duration)

// Server implements envoy.service.auth.v3.Authorization.
type Server struct {
	authv3.UnimplementedAuthorizationServer
	decider Decider
	cfg     Config
	log     *slog.Logger
	observe Observer
}

// NewServer returns a Server. observe may be nil.
func NewServer(d Decider, cfg Config, log *slog.Logger, observe Observer) *Server {
	if len(cfg.TokenSources) == 0 {
		cfg.TokenSources = DefaultTokenSources()
	}
	if cfg.CreditHeaders == (CreditHeaders{}) {
		cfg.CreditHeaders = DefaultCreditHeaders()
	}
	if cfg.Tracing.Tracer != nil && cfg.Tracing.Propagator == nil {
		cfg.Tracing.Propagator = propagation.TraceContext{}
	}
	if observe == nil {
		observe = func(policy.Decision, error, time.Duration) {}
	}
	return &Server{decider: d, cfg: cfg, log: log, observe: observe}
}

// DefaultStreamWorkers is 16 stream workers per CPU Go may use: more than
// the Checks a sidecar's Envoy has in flight at once, at a few KiB of
// idle stack each.
func DefaultStreamWorkers() int { return 16 * runtime.GOMAXPROCS(0) }

// ServerOptions are the gRPC server options Check is served with: Codec,
// and cfg's stream workers. grpc-go otherwise starts a goroutine per
// stream, whose stack starts small and is copied as it grows, two or three
// times for every Check (a fifth of a Check's instructions under
// callgrind); a worker keeps its grown stack from one stream to the next.
func ServerOptions(cfg Config) []grpc.ServerOption {
	opts := []grpc.ServerOption{grpc.ForceServerCodecV2(Codec{})}
	if cfg.StreamWorkers > 0 {
		opts = append(opts, grpc.NumStreamWorkers(uint32(cfg.StreamWorkers)))
	}
	return opts
}

// Check answers one authorization request. A deny is a CheckResponse; an
// error means Tollgate could not decide, and Envoy's failure_mode_allow
// says what happens then.
func (s *Server) Check(ctx context.Context, cr *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	if s.cfg.Tracing.Tracer != nil {
		return s.checkTraced(ctx, cr)
	}
	resp, _, err := s.check(ctx, cr)
	return resp, err
}

// check is Check, also returning the decision, for a span to describe.
func (s *Server) check(ctx context.Context, cr *authv3.CheckRequest) (*authv3.CheckResponse, policy.Decision, error) {
	start := time.Now()
	a := new(answer)
	req := &a.req
	d, err := s.decide(ctx, cr, req)
	if err != nil {
		s.observe(d, err, time.Since(start))
		code := codes.Unavailable
		if internalFailure(err) {
			code = codes.Internal
		}
		s.log.Error("check: cannot decide", "err", err)
		return nil, d, status.Error(code, "tollgate: cannot decide: "+err.Error())
	}
	var resp *authv3.CheckResponse
	switch {
	case d.Allow:
		resp = s.allowResponse(a, d, req.Tier, cr, "")
	case s.cfg.DryRun:
		resp = s.allowResponse(a, d, req.Tier, cr, d.Code)
	default:
		resp = s.deniedResponse(d, req.Tier)
	}
	if !d.Allow {
		s.logDeny(ctx, req, d)
	}
	s.observe(d, nil, time.Since(start))
	return resp, d, nil
}

// decide reads the request and asks the decider.
func (s *Server) decide(ctx context.Context, cr *authv3.CheckRequest, req *policy.Request) (policy.Decision, error) {
	return s.judge(ctx, s.readRequest(cr, req), req)
}

// decideIncoming is decide for a request a front end other than Check
// received.
func (s *Server) decideIncoming(ctx context.Context, in *incoming, req *policy.Request) (policy.Decision, error) {
	return s.judge(ctx, s.translate(in, req), req)
}

// judge asks the decider about a request read without error. A request
// that cannot be read is a deny, never an error: an error is an allow
// under Envoy's failure_mode_allow. So is a route configuration Tollgate
// cannot use, the operator's mistake, which is logged as an error.
func (s *Server) judge(ctx context.Context, readErr error, req *policy.Request) (policy.Decision, error) {
	if readErr == nil {
		return s.decider.Decide(ctx, req)
	}
	var r *refusal
	if errors.As(readErr, &r) {
		return policy.Decision{Code: r.code, Message: r.msg}, nil
	}
	return s.misconfigured(readErr), nil
}

// misconfigured logs a configuration of Envoy, a proxy or Tollgate that
// Tollgate cannot use, and denies.
func (s *Server) misconfigured(err error) policy.Decision {
	s.log.Error("check: unusable route configuration", "err", err)
	return policy.Decision{Code: policy.CodeRouteMisconfigured,
		Message: "the route's configuration in Tollgate or Envoy is unusable; the operator has been told"}
}

// logDeny writes one line per deny. It never logs the token or the path
// (whose query may hold one).
func (s *Server) logDeny(ctx context.Context, req *policy.Request, d policy.Decision) {
	if !s.log.Enabled(ctx, s.cfg.DenyLogLevel) {
		return
	}
	s.log.Log(ctx, s.cfg.DenyLogLevel, "deny",
		"code", d.Code, "token_id", d.TokenID, "account_id", d.AccountID, "ip", req.IP,
		"api", clip(req.API), "dataset", clip(req.Dataset), "dry_run", s.cfg.DryRun)
}

// clip bounds what a request put in a log line: a route capture comes from
// the path, which may be tens of kilobytes.
func clip(s string) string {
	const max = 128
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
