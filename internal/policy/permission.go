package policy

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Action is what a request does to a dataset.
type Action uint8

// Actions, as bits so a set of them fits in one byte.
const (
	Read Action = 1 << iota
	Write
	Delete
)

// Actions is a set of Action.
type Actions uint8

var actionNames = [...]struct {
	a    Action
	name string
}{{Read, "read"}, {Write, "write"}, {Delete, "delete"}}

// ParseAction parses "read", "write" or "delete".
func ParseAction(s string) (Action, bool) {
	for _, n := range actionNames {
		if n.name == s {
			return n.a, true
		}
	}
	return 0, false
}

// String returns the action's name.
func (a Action) String() string {
	for _, n := range actionNames {
		if n.a == a {
			return n.name
		}
	}
	return "unknown"
}

// Has reports whether the set holds a.
func (s Actions) Has(a Action) bool { return s&Actions(a) != 0 }

// ParseActions parses a comma-separated list such as "read,write".
func ParseActions(list string) (Actions, error) {
	var s Actions
	for name := range strings.SplitSeq(list, ",") {
		a, ok := ParseAction(strings.TrimSpace(name))
		if !ok {
			return 0, Errorf(EInvalid, "%q is not an action: choose read, write or delete.", name)
		}
		s |= Actions(a)
	}
	return s, nil
}

// Names returns the set's actions in the order read, write, delete.
func (s Actions) Names() []string {
	names := make([]string, 0, len(actionNames))
	for _, n := range actionNames {
		if s.Has(n.a) {
			names = append(names, n.name)
		}
	}
	return names
}

// MarshalJSON writes the set as a list of names.
func (s Actions) MarshalJSON() ([]byte, error) { return json.Marshal(s.Names()) }

// UnmarshalJSON reads a list of names.
func (s *Actions) UnmarshalJSON(b []byte) error {
	var names []string
	if err := json.Unmarshal(b, &names); err != nil {
		return Errorf(EInvalid, `The actions must be a list of names, such as ["read", "write"].`)
	}
	var out Actions
	for _, n := range names {
		a, ok := ParseAction(n)
		if !ok {
			return Errorf(EInvalid, "%q is not an action: choose read, write or delete.", n)
		}
		out |= Actions(a)
	}
	*s = out
	return nil
}

// Known APIs a token may be allowed to call. Import runs with the account's
// full write power, so a token that may import may do nothing else.
const (
	APIData   = "data"
	APIMaps   = "maps"
	APISQL    = "sql"
	APILDS    = "lds"
	APIImport = "import"
)

var knownAPIs = []string{APIData, APIMaps, APISQL, APILDS, APIImport}

// GrantType says what part of a connection a grant covers.
type GrantType string

// Grant types.
const (
	GrantTable GrantType = "table" // one table, or tables matching a wildcard
	GrantQuery GrantType = "query" // one saved SQL query, whitespace-normalised
	GrantAll   GrantType = "all"   // every source of the connection
)

// Grant lets a token use a source of a connection.
type Grant struct {
	Connection string    `json:"connection"`
	Type       GrantType `json:"type"`
	Source     string    `json:"source,omitempty"`
}

// String returns the grant in the command line's form, connection:type[:source].
func (g Grant) String() string {
	if g.Type == GrantAll {
		return g.Connection + ":" + string(g.Type)
	}
	return g.Connection + ":" + string(g.Type) + ":" + g.Source
}

// ParseGrant parses connection:table:NAME, connection:query:SQL or
// connection:all.
func ParseGrant(s string) (Grant, error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) < 2 {
		return Grant{}, fieldError("grants", "%q is not a grant: write connection:table:NAME, connection:query:SQL or connection:all.", s)
	}
	g := Grant{Connection: parts[0], Type: GrantType(parts[1])}
	if len(parts) == 3 {
		g.Source = parts[2]
	}
	return g, g.normalize()
}

func (g *Grant) normalize() error {
	if g.Connection == "" {
		return fieldError("grants", "Give each grant the name of its connection.")
	}
	if !validName(g.Connection, false) {
		return fieldError("grants", "The connection name %q must be 1 to 128 letters, digits, '_', '-' or '.'.", g.Connection)
	}
	switch g.Type {
	case GrantAll:
		if g.Source != "" {
			return fieldError("grants", "A grant of every source of %q names no table or query; leave its source empty.", g.Connection)
		}
	case GrantTable:
		if g.Source == "" {
			return fieldError("grants", "A table grant on %q needs a table name, or a pattern such as orders_*.", g.Connection)
		}
		src, err := canonPattern(g.Source)
		if err != nil {
			return fieldError("grants", "The table %q %v.", g.Source, err)
		}
		g.Source = src
	case GrantQuery:
		g.Source = NormalizeSQL(g.Source)
		if g.Source == "" {
			return fieldError("grants", "A query grant on %q needs the SQL of its saved query.", g.Connection)
		}
		if len(g.Source) > maxQueryLen {
			return fieldError("grants", "The saved query on %q is longer than %d characters.", g.Connection, maxQueryLen)
		}
	default:
		return fieldError("grants", "%q is not a grant type: choose table, query or all.", g.Type)
	}
	return nil
}

const maxQueryLen = 16 << 10

// NormalizeSQL collapses every run of ASCII whitespace between tokens to one
// space and trims the ends, so a saved query matches the same text however
// it was wrapped. It must never make equal two queries a database runs
// differently, so it keeps byte for byte what whitespace means something
// in: string literals and quoted identifiers ('…', "…", `…`, with
// backslash escapes), dollar quotes ($$…$$, $tag$…$tag$), and comments
// (/* … */, nested as in PostgreSQL; -- and # to the end of the line, whose
// line break stays a line break). Other characters (NBSP, U+2028) are not
// whitespace to a database and stay as they are. Where dialects disagree
// it keeps more as it is, never less; an unterminated quote or comment
// keeps the rest of the query as it is.
func NormalizeSQL(q string) string {
	var b strings.Builder
	b.Grow(len(q))
	space, lineBreak := false, false
	for i := 0; i < len(q); {
		c := q[i]
		if sqlSpace(c) {
			// A run after a comment's line break adds nothing: the break
			// already ends the token.
			space = b.Len() > 0 && !lineBreak
			i++
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		end := sqlTokenEnd(q, i)
		b.WriteString(q[i:end])
		lineBreak = end > i+1 && (q[end-1] == '\n' || q[end-1] == '\r') && isLineComment(q, i)
		i = end
	}
	return b.String()
}

// sqlSpace reports the whitespace SQL lexers agree on.
func sqlSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func isLineComment(q string, i int) bool {
	return q[i] == '#' || strings.HasPrefix(q[i:], "--")
}

// sqlTokenEnd returns the end of what starts at q[i] and must be kept as
// it is: a quoted run, a dollar quote or a comment; else the one byte.
func sqlTokenEnd(q string, i int) int {
	switch c := q[i]; {
	case c == '\'' || c == '"' || c == '`':
		for j := i + 1; j < len(q); j++ {
			switch q[j] {
			case '\\':
				j++
			case c:
				return j + 1
			}
		}
		return len(q)
	case c == '#' || strings.HasPrefix(q[i:], "--"):
		if j := strings.IndexAny(q[i:], "\n\r"); j >= 0 {
			return i + j + 1
		}
		return len(q)
	case strings.HasPrefix(q[i:], "/*"):
		depth := 0
		for j := i; j+1 < len(q); j++ {
			switch {
			case q[j] == '/' && q[j+1] == '*':
				depth++
				j++
			case q[j] == '*' && q[j+1] == '/':
				if depth--; depth == 0 {
					return j + 2
				}
				j++
			}
		}
		return len(q)
	case c == '$':
		j := i + 1
		for j < len(q) && (q[j] == '_' || q[j] >= 'a' && q[j] <= 'z' || q[j] >= 'A' && q[j] <= 'Z' || q[j] >= 0x80 ||
			(j > i+1 && q[j] >= '0' && q[j] <= '9')) {
			j++
		}
		if j == len(q) || q[j] != '$' {
			return i + 1 // $1, or a $ in a name
		}
		tag := q[i : j+1]
		if k := strings.Index(q[j+1:], tag); k >= 0 {
			return j + 1 + k + len(tag)
		}
		return len(q)
	}
	return i + 1
}

// Limits on dataset, table and connection names and patterns. A request's
// name longer than maxNameLen, or with a byte no name may hold, matches no
// pattern, so the matcher never sees more than maxNameLen bytes of it.
// maxStars keeps a pattern something a person can read; the matcher's cost
// does not depend on it.
const (
	maxNameLen = 128
	maxStars   = 8
)

// validName reports whether s is a dataset, table or connection name:
// 1-128 of [A-Za-z0-9_.-], and '*' where wildcards are allowed.
func validName(s string, wildcard bool) bool {
	if s == "" || len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-', c == '.':
		case c == '*' && wildcard:
		default:
			return false
		}
	}
	return true
}

// canonPattern checks a dataset or table pattern and returns it with each
// run of '*' collapsed to one, which matches the same names.
func canonPattern(s string) (string, error) {
	if !validName(s, true) {
		return "", parseError("must be 1 to 128 letters, digits, '_', '-', '.' or '*'")
	}
	for strings.Contains(s, "**") {
		s = strings.ReplaceAll(s, "**", "*")
	}
	if strings.Count(s, "*") > maxStars {
		return "", fmt.Errorf("may hold at most %d '*' wildcards", maxStars)
	}
	return s, nil
}

// normalizeAPIs lower-cases, checks and de-duplicates a list of APIs.
func normalizeAPIs(apis []string) ([]string, error) {
	out := make([]string, 0, len(apis))
	for _, a := range apis {
		a = strings.ToLower(strings.TrimSpace(a))
		if !slices.Contains(knownAPIs, a) {
			return nil, fieldError("allowed_apis", "%q is not an API: choose from %s.", a, strings.Join(knownAPIs, ", "))
		}
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	if len(out) > 1 && slices.Contains(out, APIImport) {
		return nil, fieldError("allowed_apis", "The import API must be allowed on its own: untick the other APIs, or use another token for import.")
	}
	return out, nil
}
