package extauthz

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/signing"
)

// TokenSource is one place a request may carry its token.
type TokenSource string

// Token sources, in the default order.
const (
	SourceQueryToken  TokenSource = "token"         // ?token=
	SourceQueryAPIKey TokenSource = "api_key"       // ?api_key=
	SourceBearer      TokenSource = "authorization" // Authorization: Bearer …
	SourceAPIKey      TokenSource = "x-api-key"     // X-API-Key: …
)

// DefaultTokenSources is the order tokens are looked for in.
func DefaultTokenSources() []TokenSource {
	return []TokenSource{SourceQueryToken, SourceQueryAPIKey, SourceBearer, SourceAPIKey}
}

// ParseTokenSources parses a comma-separated list of sources.
func ParseTokenSources(s string) ([]TokenSource, error) {
	var out []TokenSource
	for name := range strings.SplitSeq(s, ",") {
		src := TokenSource(strings.TrimSpace(strings.ToLower(name)))
		switch src {
		case SourceQueryToken, SourceQueryAPIKey, SourceBearer, SourceAPIKey:
			out = append(out, src)
		default:
			return nil, fmt.Errorf("token source %q: want token, api_key, authorization or x-api-key", name)
		}
	}
	return out, nil
}

// Limits on what is read from a request. Envoy bounds headers at 60 KiB by
// default; these keep one hostile request from costing more than that.
const (
	maxSQLLen = 64 << 10
	maxCost   = 1_000_000
)

// errRoute reports a route whose configuration (context_extensions or a
// route rule) Tollgate cannot use: the operator's mistake, not the caller's.
var errRoute = errors.New("route configuration")

// headers reads request headers from either of Envoy's encodings: the
// headers map, or header_map when Envoy is set to send raw headers. It is a
// policy.Headers.
type headers struct {
	http *authv3.AttributeContext_HttpRequest
}

// Get returns the header with the lower-case name. "host" falls back to
// HTTP/2's :authority, which is what Envoy sends for it.
func (h headers) Get(name string) string {
	if v := h.lookup(name); v != "" || name != "host" {
		return v
	}
	if v := h.lookup(":authority"); v != "" {
		return v
	}
	return h.http.GetHost()
}

// nth returns the i-th value of a header, counting from 0: Envoy's
// headers map joins repeats with commas, but header_map (raw headers)
// lists each on its own. It reports false past the last. An index rather
// than an iterator: through the requestHeaders interface an iterator's
// closure would cost an allocation per header read.
func (h headers) nth(name string, i int) (string, bool) {
	if v, ok := h.http.GetHeaders()[name]; ok {
		if i == 0 {
			return v, true
		}
		i--
	}
	for _, hv := range h.http.GetHeaderMap().GetHeaders() {
		if hv.GetKey() != name {
			continue
		}
		if i > 0 {
			i--
			continue
		}
		if v := hv.GetValue(); v != "" {
			return v, true
		}
		return string(hv.GetRawValue()), true
	}
	return "", false
}

func (h headers) lookup(name string) string {
	if v, ok := h.http.GetHeaders()[name]; ok {
		return v
	}
	for _, hv := range h.http.GetHeaderMap().GetHeaders() {
		if hv.GetKey() == name {
			if v := hv.GetValue(); v != "" {
				return v
			}
			return string(hv.GetRawValue())
		}
	}
	return ""
}

// requestHeaders reads a request's headers, whichever front end received
// them: Get returns one value (policy.Headers), nth each line of a header
// that may repeat.
type requestHeaders interface {
	policy.Headers
	nth(name string, i int) (string, bool)
}

// incoming is one request as a front end received it, before any of it
// is trusted: what translate turns into a policy.Request, the same way for
// every front end.
type incoming struct {
	method string
	// target is the path and query as the client sent them.
	target  string
	headers requestHeaders
	// peer is the caller's address as the proxy saw it: the TCP peer, or
	// the address the proxy computed; "" when unknown.
	peer string
	// route is the route's context set by the proxy's configuration:
	// context_extensions over gRPC, X-Tollgate-* headers over HTTP.
	route   routeContext
	body    []byte
	hasBody bool
}

// readRequest lifts what a decision needs out of a CheckRequest. It
// returns a *refusal for a request it cannot read unambiguously, and an
// error wrapping errRoute for a route configuration it cannot use.
func (s *Server) readRequest(cr *authv3.CheckRequest, req *policy.Request) error {
	if hasRepairMark(cr) {
		return refuseEncoding
	}
	attrs := cr.GetAttributes()
	httpReq := attrs.GetRequest().GetHttp()
	in := incoming{
		method:  httpReq.GetMethod(),
		target:  httpReq.GetPath(),
		headers: headers{httpReq},
		peer:    attrs.GetSource().GetAddress().GetSocketAddress().GetAddress(),
		route:   extensions(attrs.GetContextExtensions()),
	}
	if raw := httpReq.GetRawBody(); len(raw) > 0 {
		in.body, in.hasBody = raw, true
	} else if b := httpReq.GetBody(); b != "" {
		in.body, in.hasBody = []byte(b), true
	}
	return s.translate(&in, req)
}

// translate turns what a front end received into a policy.Request: the
// one place the method, path, query, token, client address and route are
// read, so that gRPC Check and the HTTP endpoint decide alike. It returns
// a *refusal for a request it cannot read unambiguously, and an error
// wrapping errRoute for a route configuration it cannot use.
func (s *Server) translate(in *incoming, req *policy.Request) error {
	h := in.headers
	rawPath, query, _ := strings.Cut(in.target, "?")
	method := in.method

	req.Method, req.Path, req.RawQuery = method, rawPath, query
	act, ok := actionFromMethod(method)
	if !ok {
		return refuseMethod
	}
	path, err := canonicalPath(rawPath)
	if err != nil {
		return refusePath
	}
	q, err := readQuery(query)
	if err != nil {
		return err
	}
	req.Authorization, req.Headers = h.Get("authorization"), h
	req.Body, req.HasBody = in.body, in.hasBody
	req.Partial = h.Get("x-envoy-auth-partial-body") == "true"
	if err := s.readToken(h, &q, req); err != nil {
		return err
	}
	if req.Token == "" {
		// A signed request may carry its publishable token in the
		// signature's Credential rather than anywhere else.
		req.Token = signedCredential(req.Authorization)
	}
	req.Referer = h.Get("referer")
	req.Origin = h.Get("origin")
	// A Referer is a browser's mark too: scripts and servers rarely send
	// one, and a secret token must not escape the browser rule by leaving
	// out Origin and Sec-Fetch-Site.
	req.FromBrowser = req.Origin != "" || req.Referer != "" || h.Get("sec-fetch-site") != ""
	req.IP = s.clientIP(in.peer, h)

	req.Cost = 1
	classified := false
	switch {
	case hasRouteKeys(in.route):
		if err := applyRoute(req, in.route); err != nil {
			return err
		}
		classified = true
	case s.cfg.Routes != nil:
		if classified, err = s.cfg.Routes.apply(req, method, path); err != nil {
			return err
		}
	}
	if !classified && !s.cfg.AllowUnmatchedRoutes {
		return refuseUnmatched
	}
	if req.Action == 0 {
		req.Action = act
	}
	if req.API == policy.APISQL && req.Source == "" {
		// The SQL comes from the client: from ?q=, which must be there
		// once, and never from a body Tollgate is not shown.
		if q.n[paramQ] > 1 {
			return refuseRepeated(paramQ)
		}
		if v := q.v[paramQ]; q.n[paramQ] == 1 && len(v) <= maxSQLLen {
			req.Source = policy.NormalizeSQL(v)
		}
		req.SourceUnseen = act != policy.Read || req.HasBody
	}
	return nil
}

// readToken finds the token in the configured places. The first found is
// the token; a different one anywhere else is a conflict. A query
// parameter that carries tokens may appear once.
func (s *Server) readToken(h requestHeaders, q *queryParams, req *policy.Request) error {
	see := func(v string) {
		switch {
		case v == "":
		case req.Token == "":
			req.Token = v
		case v != req.Token:
			req.TokenConflict = true
		}
	}
	for _, src := range s.cfg.TokenSources {
		switch src {
		case SourceQueryToken, SourceQueryAPIKey:
			p := paramToken
			if src == SourceQueryAPIKey {
				p = paramAPIKey
			}
			if q.n[p] > 1 {
				return refuseRepeated(p)
			}
			see(q.v[p])
		case SourceBearer:
			for i := 0; ; i++ {
				v, ok := h.nth("authorization", i)
				if !ok {
					break
				}
				if t, ok := bearer(v); ok {
					see(t)
				}
			}
		case SourceAPIKey:
			for i := 0; ; i++ {
				v, ok := h.nth("x-api-key", i)
				if !ok {
					break
				}
				see(strings.TrimSpace(v))
			}
		}
	}
	return nil
}

// bearer returns the credentials of an "Authorization: Bearer …" header.
func bearer(v string) (string, bool) {
	const prefix = "bearer "
	if len(v) <= len(prefix) || !strings.EqualFold(v[:len(prefix)], prefix) {
		return "", false
	}
	return strings.TrimSpace(v[len(prefix):]), true
}

// clientIP returns the caller's address. With no trusted proxies it is the
// peer Envoy reports, which is the address Envoy itself computed from
// x-forwarded-for under its xff_num_trusted_hops. With TrustedHops set it
// is the entry that many places from the right of x-forwarded-for, read
// across every line of the header, as Envoy counts them. Where Envoy falls
// back to the peer (fewer entries than hops) the address is unknown here:
// the request skipped a proxy that should have been there, and the peer
// may be one of the trusted proxies. An entry that is not an address makes
// the address unknown too, and an IP-restricted token then denies.
func (s *Server) clientIP(peer string, h requestHeaders) netip.Addr {
	hops := s.cfg.TrustedHops
	if hops <= 0 {
		return policy.ParseAddr(peer)
	}
	// Header lines in order; the entries count from the right of their
	// concatenation. Envoy sends few lines: the first eight stay on the
	// stack.
	var buf [8]string
	lines := buf[:0]
	for i := 0; ; i++ {
		v, ok := h.nth("x-forwarded-for", i)
		if !ok {
			break
		}
		lines = append(lines, v)
	}
	return policy.ForwardedFor(lines, hops)
}

// actionFromMethod maps every method Tollgate knows to what it does; any
// other method (methods are case-sensitive) is not known.
func actionFromMethod(m string) (policy.Action, bool) {
	switch m {
	case "GET", "HEAD", "OPTIONS":
		return policy.Read, true
	case "POST", "PUT", "PATCH":
		return policy.Write, true
	case "DELETE":
		return policy.Delete, true
	}
	return 0, false
}

// routeKeys are the context_extensions Tollgate reads.
var routeKeys = [...]string{"api", "dataset", "connection", "source", "tier", "action", "cost"}

// routeContext is a route's settings as the proxy's configuration passed
// them, keyed by the routeKeys.
type routeContext interface {
	lookup(key string) (string, bool)
}

// extensions is Envoy's context_extensions.
type extensions map[string]string

func (e extensions) lookup(key string) (string, bool) {
	v, ok := e[key]
	return v, ok
}

func hasRouteKeys(rc routeContext) bool {
	for _, k := range routeKeys {
		if _, ok := rc.lookup(k); ok {
			return true
		}
	}
	return false
}

// applyRoute reads what the request is from the route's settings.
func applyRoute(req *policy.Request, rc routeContext) error {
	get := func(k string) string { v, _ := rc.lookup(k); return v }
	req.API, req.Dataset = get("api"), get("dataset")
	req.Connection, req.Source = get("connection"), get("source")
	return parseRouteFields(req, get("tier"), get("action"), get("cost"))
}

func parseRouteFields(req *policy.Request, tier, action, cost string) error {
	t, ok := policy.ParseTier(tier)
	if !ok {
		return fmt.Errorf("%w: tier %.40q: want core or premium", errRoute, tier)
	}
	req.Tier = t
	if action != "" {
		a, ok := policy.ParseAction(action)
		if !ok {
			return fmt.Errorf("%w: action %.40q: want read, write or delete", errRoute, action)
		}
		req.Action = a
	}
	if cost != "" {
		c, err := strconv.ParseInt(cost, 10, 64)
		if err != nil || c < 0 || c > maxCost {
			return fmt.Errorf("%w: cost %.40q: want a whole number from 0 to %d", errRoute, cost, maxCost)
		}
		req.Cost = c
	}
	return nil
}

// signedCredential is the publishable token a signed Authorization header
// names as its Credential, in either scheme, or "".
func signedCredential(authorization string) string {
	var cred string
	switch {
	case signing.IsSigned(authorization):
		if a, err := signing.ParseAuthorization(authorization); err == nil {
			cred = a.Credential
		}
	case signing.IsIEXSigned(authorization):
		if a, err := signing.ParseIEXAuthorization(authorization); err == nil {
			cred = a.Credential
		}
	}
	if !strings.HasPrefix(cred, "pk_") {
		return ""
	}
	return cred
}
