package extauthz

import (
	"context"
	"fmt"
	"go.opentelemetry.io/otel/propagation"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tollgate/tollgate/internal/policy"
)

// The paths of the HTTP endpoint's dialects other than Envoy's, whose
// path is the original one under a configured prefix.
const (
	// NginxPath answers nginx auth_request subrequests.
	NginxPath = "/nginx"
	// ForwardAuthPath answers Caddy forward_auth and Traefik ForwardAuth.
	ForwardAuthPath = "/forward-auth"
	// DefaultHTTPPrefix is the Envoy http_service path_prefix.
	DefaultHTTPPrefix = "/authz"
)

// Headers of the HTTP endpoint's answers that only nginx needs:
// auth_request passes on 2xx, 401 and 403 from a subrequest and turns
// anything else into a 500, and drops the subrequest's body. So in the
// nginx dialect every deny is a 401 or a 403 carrying the status and body
// meant for the client, which the shipped config hands on with
// auth_request_set and error_page.
const (
	HeaderStatus = "x-tollgate-status"
	HeaderBody   = "x-tollgate-body"
)

// routeHeaderPrefix names the request headers that carry a route's
// context over HTTP: X-Tollgate-Api, X-Tollgate-Dataset, … one per
// context_extensions key. The proxy's configuration sets them, and must
// overwrite or remove whatever the client sent under those names.
const routeHeaderPrefix = "X-Tollgate-"

// dialect is which proxy sent an authorization subrequest: it says where
// the original method and URI are.
type dialect int

const (
	dialectEnvoy       dialect = iota // method and path are the original, path under the prefix
	dialectNginx                      // X-Original-Method, X-Original-URI
	dialectForwardAuth                // X-Forwarded-Method, X-Forwarded-Uri, X-Forwarded-Host
)

// HTTPHandler answers authorization subrequests over HTTP with the same
// decision as Check: it reads each into the same policy.Request through
// translate, and answers with a status and headers the proxy acts on.
type HTTPHandler struct {
	s      *Server
	prefix string
}

// HTTPHandler returns the HTTP authorization endpoint. prefix is the path
// prefix Envoy's http_service puts before the original path ("/authz");
// it may not be "/" nor hold NginxPath or ForwardAuthPath.
func (s *Server) HTTPHandler(prefix string) (*HTTPHandler, error) {
	if err := ValidateHTTPPrefix(prefix); err != nil {
		return nil, err
	}
	return &HTTPHandler{s: s, prefix: prefix}, nil
}

// ValidateHTTPPrefix checks an Envoy http_service path prefix.
func ValidateHTTPPrefix(prefix string) error {
	switch {
	case !strings.HasPrefix(prefix, "/") || strings.HasSuffix(prefix, "/"):
		return fmt.Errorf("authz-http-prefix %q: want a path that starts with / and does not end with one, e.g. /authz", prefix)
	case prefix == NginxPath || prefix == ForwardAuthPath ||
		strings.HasPrefix(NginxPath, prefix+"/") || strings.HasPrefix(ForwardAuthPath, prefix+"/"):
		return fmt.Errorf("authz-http-prefix %q: taken by the nginx (%s) or forward-auth (%s) endpoint", prefix, NginxPath, ForwardAuthPath)
	}
	return nil
}

// httpHeaders reads an HTTP subrequest's headers as the original
// request's: the proxies copy the client's headers onto it.
type httpHeaders struct {
	h    http.Header
	host string
}

func (h *httpHeaders) Get(name string) string {
	if name == "host" {
		return h.host
	}
	return h.h.Get(name)
}

func (h *httpHeaders) nth(name string, i int) (string, bool) {
	vs := h.h.Values(name)
	if i >= len(vs) {
		return "", false
	}
	return vs[i], true
}

// routeHeaders is a route's context from X-Tollgate-* headers.
type routeHeaders http.Header

func (r routeHeaders) lookup(key string) (string, bool) {
	vs := r[textproto.CanonicalMIMEHeaderKey(routeHeaderPrefix+key)]
	if len(vs) == 0 {
		return "", false
	}
	return vs[0], true
}

// repeated reports a route header sent more than once: the proxy let the
// client's copy through beside its own.
func (r routeHeaders) repeated() (string, bool) {
	for _, k := range routeKeys {
		if len(r[textproto.CanonicalMIMEHeaderKey(routeHeaderPrefix+k)]) > 1 {
			return routeHeaderPrefix + k, true
		}
	}
	return "", false
}

// ServeHTTP answers one authorization subrequest, inside a span when
// tracing is on (a path that is no dialect's makes none).
func (h *HTTPHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	in, dia, ok := h.incoming(r)
	if !ok {
		http.NotFound(w, r)
		return
	}
	if h.s.cfg.Tracing.Tracer == nil {
		h.serve(r.Context(), w, &in, dia, start)
		return
	}
	ctx, span := h.s.cfg.Tracing.start(r.Context(), propagation.HeaderCarrier(r.Header), nil)
	defer span.End()
	d, err := h.serve(ctx, w, &in, dia, start)
	h.s.annotate(span, d, err)
}

// serve decides in's request and answers it in dia's way.
func (h *HTTPHandler) serve(ctx context.Context, w http.ResponseWriter, in *incoming, dia dialect, start time.Time) (policy.Decision, error) {
	s := h.s
	var req policy.Request
	d, err := s.decideHTTP(ctx, in, &req)
	if err != nil {
		s.observe(d, err, time.Since(start))
		status := http.StatusServiceUnavailable
		if internalFailure(err) {
			status = http.StatusInternalServerError
		}
		s.log.Error("http authz: cannot decide", "err", err)
		writeDeny(w, s.cfg.ResponseProfile.unavailable(status), dia)
		return d, err
	}
	switch {
	case d.Allow:
		h.allow(w, d, req.Tier, "")
	case s.cfg.DryRun:
		h.allow(w, d, req.Tier, d.Code)
	default:
		h.deny(w, d, req.Tier, dia)
	}
	if !d.Allow {
		s.logDeny(ctx, &req, d)
	}
	s.observe(d, nil, time.Since(start))
	return d, nil
}

// incoming reads which dialect r is and where its original request is.
// It reports false for a path that is no dialect's.
func (h *HTTPHandler) incoming(r *http.Request) (incoming, dialect, bool) {
	in := incoming{
		headers: &httpHeaders{h: r.Header, host: r.Host},
		peer:    r.Header.Get("X-Real-Ip"),
		route:   routeHeaders(r.Header),
	}
	uri := r.RequestURI
	switch path, _, _ := strings.Cut(uri, "?"); {
	case path == NginxPath:
		in.method, in.target = r.Header.Get("X-Original-Method"), r.Header.Get("X-Original-Uri")
		return in, dialectNginx, true
	case path == ForwardAuthPath:
		in.method, in.target = r.Header.Get("X-Forwarded-Method"), r.Header.Get("X-Forwarded-Uri")
		in.headers = &httpHeaders{h: r.Header, host: r.Header.Get("X-Forwarded-Host")}
		return in, dialectForwardAuth, true
	case strings.HasPrefix(uri, h.prefix+"/") || strings.HasPrefix(uri, h.prefix+"?") || uri == h.prefix:
		in.method, in.target = r.Method, uri[len(h.prefix):]
		if in.target == "" || in.target[0] == '?' {
			in.target = "/" + in.target
		}
		return in, dialectEnvoy, true
	}
	return in, 0, false
}

// decideHTTP is decide for the HTTP endpoint: a request that cannot be
// read is a deny, and so is a proxy that did not say what the original
// request was, which is the operator's configuration at fault.
func (s *Server) decideHTTP(ctx context.Context, in *incoming, req *policy.Request) (policy.Decision, error) {
	if in.method == "" || in.target == "" {
		return s.misconfigured(fmt.Errorf("%w: the proxy sent no original method or URI (X-Original-Method and X-Original-URI for nginx, X-Forwarded-Method and X-Forwarded-Uri for forward_auth)", errRoute)), nil
	}
	if name, ok := in.route.(routeHeaders).repeated(); ok {
		return s.misconfigured(fmt.Errorf("%w: %s arrived more than once: the proxy must overwrite the client's", errRoute, name)), nil
	}
	if !validUTF8(in) {
		// Check cannot see such bytes either (Codec marks them): deny alike.
		return policy.Decision{Code: refuseEncoding.code, Message: refuseEncoding.msg}, nil
	}
	return s.decideIncoming(ctx, in, req)
}

// validUTF8 reports whether the original request's target and headers
// are text, as gRPC requires of what Envoy sends.
func validUTF8(in *incoming) bool {
	if !utf8.ValidString(in.target) || !utf8.ValidString(in.method) {
		return false
	}
	for _, vs := range in.headers.(*httpHeaders).h {
		for _, v := range vs {
			if !utf8.ValidString(v) {
				return false
			}
		}
	}
	return true
}

// allow answers 200: the identity headers for the proxy to put on the
// upstream request, the credit headers for it to put on the response.
func (h *HTTPHandler) allow(w http.ResponseWriter, d policy.Decision, tier policy.Tier, dryRunCode policy.DenyCode) {
	hdr := w.Header()
	hdr[textproto.CanonicalMIMEHeaderKey(HeaderAccountID)] = []string{d.AccountID}
	hdr[textproto.CanonicalMIMEHeaderKey(HeaderTokenID)] = []string{d.TokenID}
	hdr[textproto.CanonicalMIMEHeaderKey(HeaderTokenKind)] = []string{d.Kind.String()}
	if dryRunCode != "" {
		hdr.Set(HeaderDryRun, string(dryRunCode))
	}
	h.s.creditHeaders(d, tier, hdr)
	w.WriteHeader(http.StatusOK)
}

// deny answers with the response profile's status and body, a Bearer
// challenge for a 401, Retry-After for a 429, and the credit headers. For
// nginx the status is 401 or 403 and the real one travels in headers.
func (h *HTTPHandler) deny(w http.ResponseWriter, d policy.Decision, tier policy.Tier, dia dialect) {
	dn := h.s.cfg.ResponseProfile.deny(d)
	hdr := w.Header()
	h.s.creditHeaders(d, tier, hdr)
	switch dn.status {
	case http.StatusUnauthorized:
		hdr.Set("WWW-Authenticate", `Bearer realm="tollgate", error="invalid_token", error_description="`+string(d.Code)+`"`)
	case http.StatusTooManyRequests:
		hdr.Set("Retry-After", strconv.FormatInt(ceilSeconds(d.Usage.RetryAfter), 10))
	}
	writeDeny(w, dn, dia)
}

// writeDeny writes a deny's status and body. For nginx the status is 401
// or 403, and the real one and the body travel in headers.
func writeDeny(w http.ResponseWriter, dn denial, dia dialect) {
	hdr := w.Header()
	status := dn.status
	if dia == dialectNginx {
		// json.Marshal escapes control characters and the IEX profile's
		// messages are single lines, so the body is one header line.
		hdr.Set(HeaderStatus, strconv.Itoa(status))
		hdr.Set(HeaderBody, dn.body)
		if status != http.StatusUnauthorized {
			status = http.StatusForbidden
		}
	}
	hdr.Set("Content-Type", dn.contentType)
	w.WriteHeader(status)
	io.WriteString(w, dn.body)
}

// creditHeaders is usageHeaders for an HTTP answer.
func (s *Server) creditHeaders(d policy.Decision, tier policy.Tier, hdr http.Header) {
	if !d.Usage.Metered {
		return
	}
	list := newHeaderList(6)
	s.usageHeaders(d, tier, &list)
	for _, o := range list.list {
		hdr.Set(o.GetHeader().GetKey(), o.GetHeader().GetValue())
	}
}
