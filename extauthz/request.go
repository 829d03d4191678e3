package extauthz

import (
	"errors"
	"fmt"
	"iter"
	"net/netip"
	"net/url"
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

// readRequest lifts what a decision needs out of a CheckRequest.
func (s *Server) readRequest(cr *authv3.CheckRequest, req *policy.Request) error {
	attrs := cr.GetAttributes()
	httpReq := attrs.GetRequest().GetHttp()
	h := headers{httpReq}
	path, query, _ := strings.Cut(httpReq.GetPath(), "?")

	req.Method, req.Path, req.RawQuery = httpReq.GetMethod(), path, query
	req.Authorization, req.Headers = h.Get("authorization"), h
	if raw := httpReq.GetRawBody(); len(raw) > 0 {
		req.Body, req.HasBody = raw, true
	} else if b := httpReq.GetBody(); b != "" {
		req.Body, req.HasBody = []byte(b), true
	}
	req.Partial = h.Get("x-envoy-auth-partial-body") == "true"
	s.readToken(h, query, req)
	if req.Token == "" && signing.IsSigned(req.Authorization) {
		// A signed request may carry its publishable token in the
		// signature's Credential rather than anywhere else.
		if a, err := signing.ParseAuthorization(req.Authorization); err == nil && strings.HasPrefix(a.Credential, "pk_") {
			req.Token = a.Credential
		}
	}
	req.Referer = h.Get("referer")
	req.Origin = h.Get("origin")
	req.FromBrowser = req.Origin != "" || h.Get("sec-fetch-site") != ""
	req.IP = s.clientIP(attrs, h)

	req.Cost = 1
	ext := attrs.GetContextExtensions()
	if hasRouteKeys(ext) {
		if err := applyRoute(req, ext); err != nil {
			return err
		}
	} else if s.cfg.Routes != nil {
		if err := s.cfg.Routes.apply(req, httpReq.GetMethod(), path); err != nil {
			return err
		}
	}
	if req.Action == 0 {
		req.Action = actionFromMethod(httpReq.GetMethod())
	}
	req.GrantFree = s.grantFree(req.API)
	if req.API == policy.APISQL && req.Source == "" {
		if q, ok := queryParam(query, "q"); ok && len(q) <= maxSQLLen {
			req.Source = policy.NormalizeSQL(q)
		}
	}
	return nil
}

// readToken finds the token in the configured places. The first found is
// the token; a different one anywhere else is a conflict.
func (s *Server) readToken(h headers, query string, req *policy.Request) {
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
			for v := range queryValues(query, string(src)) {
				see(v)
			}
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
}

// bearer returns the credentials of an "Authorization: Bearer …" header.
func bearer(v string) (string, bool) {
	const prefix = "bearer "
	if len(v) <= len(prefix) || !strings.EqualFold(v[:len(prefix)], prefix) {
		return "", false
	}
	return strings.TrimSpace(v[len(prefix):]), true
}

// queryValues yields every value of the query parameter name, decoded,
// reading the raw query without building a map: this runs on every
// request. A repeated parameter yields each of its values.
func queryValues(query, name string) iter.Seq[string] {
	return func(yield func(string) bool) {
		for query != "" {
			var pair string
			pair, query, _ = strings.Cut(query, "&")
			k, v, _ := strings.Cut(pair, "=")
			if k != name {
				continue
			}
			if strings.ContainsAny(v, "%+") {
				if u, err := url.QueryUnescape(v); err == nil {
					v = u
				}
				// An undecodable value cannot be a token; it stays as sent,
				// and the format check refuses it.
			}
			if !yield(v) {
				return
			}
		}
	}
}

// queryParam returns the first value of the query parameter name.
func queryParam(query, name string) (string, bool) {
	for v := range queryValues(query, name) {
		return v, true
	}
	return "", false
}

// clientIP returns the caller's address: the TCP peer, or with trusted
// proxies in front, the x-forwarded-for entry that many hops from the right.
func (s *Server) clientIP(attrs *authv3.AttributeContext, h headers) netip.Addr {
	if hops := s.cfg.TrustedHops; hops > 0 {
		xff := h.Get("x-forwarded-for")
		for i := 1; xff != ""; i++ {
			var entry string
			if j := strings.LastIndexByte(xff, ','); j >= 0 {
				xff, entry = xff[:j], xff[j+1:]
			} else {
				xff, entry = "", xff
			}
			if i == hops {
				return parseAddr(strings.TrimSpace(entry))
			}
		}
		// Fewer entries than trusted hops: the request skipped a proxy that
		// should have been there, so its address is unknown.
		return netip.Addr{}
	}
	sock := attrs.GetSource().GetAddress().GetSocketAddress()
	return parseAddr(sock.GetAddress())
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

func actionFromMethod(m string) policy.Action {
	switch m {
	case "POST", "PUT", "PATCH":
		return policy.Write
	case "DELETE":
		return policy.Delete
	}
	return policy.Read
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
