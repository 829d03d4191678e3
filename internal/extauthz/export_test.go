package extauthz

// CanonicalPath exposes canonicalPath to the external tests.
func CanonicalPath(path string) (string, error) { return canonicalPath(path) }

// QueryParam is what ReadQuery found of one parameter Tollgate reads.
type QueryParam struct {
	N     int
	Value string
}

// ReadQuery exposes readQuery to the external tests, by parameter name.
func ReadQuery(query string) (map[string]QueryParam, error) {
	q, err := readQuery(query)
	if err != nil {
		return nil, err
	}
	out := map[string]QueryParam{}
	for p, name := range paramNames {
		out[name] = QueryParam{N: q.n[p], Value: q.v[p]}
	}
	return out, nil
}
