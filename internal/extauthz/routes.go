package extauthz

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/tollgate/tollgate/internal/policy"
)

// Routes maps method and path templates to what a request is, for routes
// whose Envoy configuration sets no context_extensions (for example behind
// Istio, which cannot set them per route). The first rule that matches the
// canonical path (see canonicalPath) wins; a rule for GET matches HEAD too.
type Routes struct {
	rules []routeRule
}

// RouteRule is one entry of a route-rules file.
type RouteRule struct {
	Method     string `json:"method"`
	Path       string `json:"path"`
	API        string `json:"api"`
	Dataset    string `json:"dataset"`
	Connection string `json:"connection"`
	Source     string `json:"source"`
	Tier       string `json:"tier"`
	Action     string `json:"action"`
	Cost       *int64 `json:"cost"`
}

type routeRule struct {
	method   string
	segments []string // literal, "{name}", or a final "..."
	rest     bool     // the template ends in "...": any further segments match
	fields   RouteRule
}

// LoadRoutes reads a route-rules file (YAML).
func LoadRoutes(path string) (*Routes, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("route rules: %w", err)
	}
	var rules []RouteRule
	if err := yaml.UnmarshalStrict(b, &rules); err != nil {
		return nil, fmt.Errorf("route rules %s: %w", path, err)
	}
	r, err := NewRoutes(rules)
	if err != nil {
		return nil, fmt.Errorf("route rules %s: %w", path, err)
	}
	return r, nil
}

// NewRoutes compiles rules, checking each.
func NewRoutes(rules []RouteRule) (*Routes, error) {
	out := &Routes{}
	for i, rr := range rules {
		r := routeRule{method: strings.ToUpper(rr.Method), fields: rr}
		if r.method == "" {
			r.method = "*"
		}
		if !strings.HasPrefix(rr.Path, "/") {
			return nil, fmt.Errorf("rule %d: path %q must start with /", i+1, rr.Path)
		}
		// Requests are matched in canonical form; a template in any other
		// form could never match, and its requests would all be denied.
		if c, err := canonicalPath(rr.Path); err != nil || c != rr.Path {
			return nil, fmt.Errorf("rule %d: path %q is not in canonical form (no doubled slashes, dot segments, escapes of letters or digits, or lower-case escapes)", i+1, rr.Path)
		}
		segs := strings.Split(strings.TrimPrefix(rr.Path, "/"), "/")
		if n := len(segs); segs[n-1] == "..." || segs[n-1] == "…" {
			r.rest, segs = true, segs[:n-1]
		}
		if n := strings.Count(rr.Path, "{"); n > maxCaptures {
			return nil, fmt.Errorf("rule %d: %d captures; at most %d", i+1, n, maxCaptures)
		}
		captures := map[string]bool{}
		for _, s := range segs {
			if name, ok := capture(s); ok {
				if name == "" || captures[name] {
					return nil, fmt.Errorf("rule %d: capture %q is empty or repeated", i+1, s)
				}
				captures[name] = true
			} else if strings.ContainsAny(s, "{}") {
				return nil, fmt.Errorf("rule %d: segment %q: a capture must be a whole segment", i+1, s)
			}
		}
		for _, f := range []string{rr.API, rr.Dataset, rr.Connection, rr.Source} {
			if name, ok := capture(f); ok && !captures[name] {
				return nil, fmt.Errorf("rule %d: %q is not captured by path %q", i+1, f, rr.Path)
			}
		}
		var probe policy.Request
		cost := ""
		if rr.Cost != nil {
			cost = strconv.FormatInt(*rr.Cost, 10)
		}
		if err := parseRouteFields(&probe, rr.Tier, rr.Action, cost); err != nil {
			return nil, fmt.Errorf("rule %d: %w", i+1, err)
		}
		r.segments = segs
		out.rules = append(out.rules, r)
	}
	return out, nil
}

func capture(s string) (string, bool) {
	if len(s) >= 2 && s[0] == '{' && s[len(s)-1] == '}' {
		return s[1 : len(s)-1], true
	}
	return "", false
}

// maxCaptures bounds the {captures} of one rule, so matching needs no
// allocation.
const maxCaptures = 8

// apply fills req from the first rule matching method and path (which
// must be canonical) and reports whether one matched. A rule for GET also
// matches HEAD, which reads the same thing.
func (rs *Routes) apply(req *policy.Request, method, path string) (bool, error) {
	var caps [maxCaptures]struct{ name, value string }
	for i := range rs.rules {
		r := &rs.rules[i]
		if r.method != "*" && r.method != method && (r.method != "GET" || method != "HEAD") {
			continue
		}
		n, ok := r.match(path, caps[:])
		if !ok {
			continue
		}
		get := func(v string) string {
			if name, ok := capture(v); ok {
				for _, c := range caps[:n] {
					if c.name == name {
						return c.value
					}
				}
			}
			return v
		}
		f := &r.fields
		req.API, req.Dataset, req.Connection, req.Source = get(f.API), get(f.Dataset), get(f.Connection), get(f.Source)
		cost := ""
		if f.Cost != nil {
			cost = strconv.FormatInt(*f.Cost, 10)
		}
		return true, parseRouteFields(req, f.Tier, f.Action, cost)
	}
	return false, nil
}

// match matches path against the template, storing captures in caps.
func (r *routeRule) match(path string, caps []struct{ name, value string }) (int, bool) {
	rest := strings.TrimPrefix(path, "/")
	n := 0
	for _, seg := range r.segments {
		if rest == "" && seg != "" {
			return 0, false
		}
		var part string
		part, rest, _ = strings.Cut(rest, "/")
		if name, ok := capture(seg); ok {
			if part == "" {
				return 0, false
			}
			if n < len(caps) {
				caps[n].name, caps[n].value = name, part
				n++
			}
			continue
		}
		if part != seg {
			return 0, false
		}
	}
	return n, rest == "" || r.rest
}
