package extauthz

import (
	"errors"
	"fmt"
	"iter"
	"net/netip"
	"strconv"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/tollgate/tollgate/policy"
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

// values yields every value of a header: Envoy's headers map joins repeats
// with commas, but header_map (raw headers) lists each on its own.
func (h headers) values(name string) iter.Seq[string] {
	return func(yield func(string) bool) {
		if v, ok := h.http.GetHeaders()[name]; ok {
			if !yield(v) {
				return
			}
		}
		for _, hv := range h.http.GetHeaderMap().GetHeaders() {
			if hv.GetKey() != name {
				continue
			}
			v := hv.GetValue()
			if v == "" {
				v = string(hv.GetRawValue())
			}
			if !yield(v) {
				return
			}
		}
	}
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

// readRequest lifts what a decision needs out of a CheckRequest. It
// returns a *refusal for a request it cannot read unambiguously, and an
// error wrapping errRoute for a route configuration it cannot use.
func (s *Server) readRequest(cr *authv3.CheckRequest, req *policy.Request) error {
	if hasRepairMark(cr) {
		return refuseEncoding
	}
	attrs := cr.GetAttributes()
	httpReq := attrs.GetRequest().GetHttp()
	h := headers{httpReq}
	rawPath, query, _ := strings.Cut(httpReq.GetPath(), "?")
	method := httpReq.GetMethod()

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
	if raw := httpReq.GetRawBody(); len(raw) > 0 {
		req.Body, req.HasBody = raw, true
	} else if b := httpReq.GetBody(); b != "" {
		req.Body, req.HasBody = []byte(b), true
	}
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
	req.IP = s.clientIP(attrs, h)

	req.Cost = 1
	ext := attrs.GetContextExtensions()
	classified := false
	switch {
	case hasRouteKeys(ext):
		if err := applyRoute(req, ext); err != nil {
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
	req.GrantFree = s.grantFree(req.API)
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
func (s *Server) readToken(h headers, q *queryParams, req *policy.Request) error {
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
			for v := range h.values("authorization") {
				if t, ok := bearer(v); ok {
					see(t)
				}
			}
		case SourceAPIKey:
			for v := range h.values("x-api-key") {
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
func (s *Server) clientIP(attrs *authv3.AttributeContext, h headers) netip.Addr {
	hops := s.cfg.TrustedHops
	if hops <= 0 {
		return parseAddr(attrs.GetSource().GetAddress().GetSocketAddress().GetAddress())
	}
	// Header lines in order; the entries count from the right of their
	// concatenation. Envoy sends few lines: the first eight stay on the
	// stack.
	var buf [8]string
	lines := buf[:0]
	for v := range h.values("x-forwarded-for") {
		lines = append(lines, v)
	}
	seen := 0
	for i := len(lines) - 1; i >= 0; i-- {
		for xff := lines[i]; ; {
			entry := xff
			j := strings.LastIndexByte(xff, ',')
			if j >= 0 {
				xff, entry = xff[:j], xff[j+1:]
			}
			if seen++; seen == hops {
				return parseAddr(strings.Trim(entry, " \t"))
			}
			if j < 0 {
				break
			}
		}
	}
	return netip.Addr{}
}

// parseAddr parses an address, unmapping IPv4-in-IPv6 and dropping a zone.
func parseAddr(s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		if ap, err2 := netip.ParseAddrPort(s); err2 == nil {
			a = ap.Addr()
		} else {
			return netip.Addr{}
		}
	}
	return a.Unmap().WithZone("")
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

func hasRouteKeys(ext map[string]string) bool {
	for _, k := range routeKeys {
		if _, ok := ext[k]; ok {
			return true
		}
	}
	return false
}

// applyRoute reads what the request is from the route's settings.
func applyRoute(req *policy.Request, ext map[string]string) error {
	req.API, req.Dataset = ext["api"], ext["dataset"]
	req.Connection, req.Source = ext["connection"], ext["source"]
	return parseRouteFields(req, ext["tier"], ext["action"], ext["cost"])
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
