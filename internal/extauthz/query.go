package extauthz

import (
	"net/url"
	"strings"
)

// The query parameters Tollgate reads.
const (
	paramToken  = iota // ?token=
	paramAPIKey        // ?api_key=
	paramQ             // ?q=, the SQL of the sql API
	numParams
)

var paramNames = [numParams]string{paramToken: "token", paramAPIKey: "api_key", paramQ: "q"}

// queryParams is what readQuery found of the parameters Tollgate reads:
// how often each appeared, its (last) decoded value, and the raw spelling
// of its name, which may differ ("%74oken").
type queryParams struct {
	n   [numParams]int
	v   [numParams]string
	raw [numParams]string
}

// readQuery reads a raw query string the way Go's url.ParseQuery and the
// common server-side parsers read it, so that Tollgate and the upstream
// see the same parameters: '&' separates pairs, names and values are
// percent-decoded and '+' is a space ("%71" is "q"). It refuses a query
// any escape of which is invalid, and one holding ';', which some parsers
// take for a separator and others do not. It makes one pass and allocates
// only for a name or value that must be decoded.
func readQuery(query string) (queryParams, error) {
	var q queryParams
	for query != "" {
		var pair string
		pair, query, _ = strings.Cut(query, "&")
		if pair == "" {
			continue
		}
		if strings.IndexByte(pair, ';') >= 0 {
			return q, refuseQuery
		}
		k, v, _ := strings.Cut(pair, "=")
		name, err := decodeComponent(k)
		if err != nil {
			return q, refuseQuery
		}
		if strings.IndexByte(v, '%') >= 0 && !validEscapes(v) {
			return q, refuseQuery
		}
		for p := range paramNames {
			if name != paramNames[p] {
				continue
			}
			if v, err = decodeComponent(v); err != nil {
				return q, refuseQuery
			}
			q.n[p]++
			q.v[p], q.raw[p] = v, k
		}
	}
	return q, nil
}

// decodeComponent decodes a query name or value; it allocates only when s
// holds '%' or '+'.
func decodeComponent(s string) (string, error) {
	if !strings.ContainsAny(s, "%+") {
		return s, nil
	}
	return url.QueryUnescape(s)
}

// validEscapes reports whether every '%' in s starts a two-digit hex
// escape.
func validEscapes(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			continue
		}
		if i+2 >= len(s) {
			return false
		}
		if _, ok := unhex(s[i+1]); !ok {
			return false
		}
		if _, ok := unhex(s[i+2]); !ok {
			return false
		}
		i += 2
	}
	return true
}
