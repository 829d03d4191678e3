package policy_test

import (
	"testing"

	"github.com/tollgate/tollgate/internal/policy"
)

// TestAPINames: only a known API's canonical name reaches a token's
// permissions; any other spelling, or an unknown name, is denied to a
// publishable token, whatever APIs it holds.
func TestAPINames(t *testing.T) {
	pub := func(apis ...string) *policy.Token {
		tok := policy.NewToken("acc_1", policy.Publishable)
		tok.APIs = apis
		return tok
	}
	cases := map[string]struct {
		tok  *policy.Token
		api  string
		want policy.DenyCode
	}{
		"any API, canonical":             {tok: pub(), api: "maps"},
		"any API, import":                {tok: pub(), api: "import", want: policy.CodeAPIDenied},
		"any API, Import":                {tok: pub(), api: "Import", want: policy.CodeAPIDenied},
		"any API, IMPORT":                {tok: pub(), api: "IMPORT", want: policy.CodeAPIDenied},
		"any API, unknown":               {tok: pub(), api: "admin", want: policy.CodeAPIDenied},
		"any API, escaped name":          {tok: pub(), api: "%69mport", want: policy.CodeAPIDenied},
		"any API, padded":                {tok: pub(), api: "maps ", want: policy.CodeAPIDenied},
		"any API, upper-case known":      {tok: pub(), api: "Maps", want: policy.CodeAPIDenied},
		"any API, non-ASCII look-alike":  {tok: pub(), api: "mаps", want: policy.CodeAPIDenied},
		"listed, canonical":              {tok: pub("maps"), api: "maps"},
		"listed, other case":             {tok: pub("maps"), api: "MAPS", want: policy.CodeAPIDenied},
		"listed, unknown":                {tok: pub("maps"), api: "admin", want: policy.CodeAPIDenied},
		"import granted, canonical":      {tok: pub("import"), api: "import"},
		"import granted, other spelling": {tok: pub("import"), api: "Import", want: policy.CodeAPIDenied},
		"secret, unknown":                {tok: policy.NewToken("acc_1", policy.Secret), api: "admin"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := decide(t, tc.tok, nil, policy.Request{API: tc.api}, policy.EvalOptions{})
			if got.Code != tc.want {
				t.Errorf("got %q (%s), want %q", got.Code, got.Message, tc.want)
			}
		})
	}
}

// TestSourceUnseen: when the source may sit where Tollgate cannot see it,
// only a grant on every source of the connection allows the request.
func TestSourceUnseen(t *testing.T) {
	tok := func(g ...policy.Grant) *policy.Token {
		t := policy.NewToken("acc_1", policy.Publishable)
		t.Grants = g
		return t
	}
	query := policy.Grant{Connection: "w", Type: policy.GrantQuery, Source: "SELECT 1"}
	cases := map[string]struct {
		tok  *policy.Token
		req  policy.Request
		want policy.DenyCode
	}{
		"query grant, seen":      {tok: tok(query), req: policy.Request{Connection: "w", Source: "SELECT 1", Action: policy.Read}},
		"query grant, unseen":    {tok: tok(query), req: policy.Request{Connection: "w", Source: "SELECT 1", Action: policy.Read, SourceUnseen: true}, want: policy.CodeSourceUnseen},
		"query grant, none sent": {tok: tok(query), req: policy.Request{Connection: "w", Action: policy.Write, SourceUnseen: true}, want: policy.CodeSourceUnseen},
		"all grant, unseen":      {tok: tok(policy.Grant{Connection: "w", Type: policy.GrantAll}), req: policy.Request{Connection: "w", Action: policy.Write, SourceUnseen: true}},
		"no grant, unseen":       {tok: tok(), req: policy.Request{Connection: "w", SourceUnseen: true}, want: policy.CodeSourceUnseen},
		"grant-free, unseen":     {tok: tok(), req: policy.Request{API: "lds", Connection: "w", SourceUnseen: true}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := decide(t, tc.tok, nil, tc.req, policy.EvalOptions{GrantFreeAPIs: []string{"lds"}})
			if got.Code != tc.want {
				t.Errorf("got %q (%s), want %q", got.Code, got.Message, tc.want)
			}
		})
	}
}

// TestNormalizeSQL: whitespace is collapsed only where a database ignores
// how much of it there is; two queries that normalise alike run alike.
func TestNormalizeSQL(t *testing.T) {
	cases := map[string]struct{ in, want string }{
		"runs collapse":                {"SELECT  id,\n\t total\r\nFROM t", "SELECT id, total FROM t"},
		"ends trimmed":                 {" \n SELECT 1 \t", "SELECT 1"},
		"form feed and vertical tab":   {"SELECT\f1\v", "SELECT 1"},
		"NBSP is not whitespace":       {"SELECT\u00a01", "SELECT\u00a01"},
		"U+2028 is not whitespace":     {"SELECT 1\u2028", "SELECT 1\u2028"},
		"ideographic space kept":       {"SELECT\u30001", "SELECT\u30001"},
		"string literal kept":          {"SELECT 'a  b'", "SELECT 'a  b'"},
		"literal with newline kept":    {"SELECT 'a\n b'  FROM t", "SELECT 'a\n b' FROM t"},
		"doubled quote":                {"SELECT 'it''s  x'   AS y", "SELECT 'it''s  x' AS y"},
		"backslash escape":             {"SELECT E'a\\'  b'   AS y", "SELECT E'a\\'  b' AS y"},
		"quoted identifier kept":       {`SELECT "a  b"  FROM t`, `SELECT "a  b" FROM t`},
		"backquoted identifier kept":   {"SELECT `a  b`  FROM t", "SELECT `a  b` FROM t"},
		"dollar quote kept":            {"SELECT $$a  b$$  AS y", "SELECT $$a  b$$ AS y"},
		"tagged dollar quote kept":     {"SELECT $x$a $$ b$x$  AS y", "SELECT $x$a $$ b$x$ AS y"},
		"positional parameter":         {"SELECT $1  ,  $2", "SELECT $1 , $2"},
		"block comment kept":           {"SELECT 1 /* a  b */  FROM t", "SELECT 1 /* a  b */ FROM t"},
		"nested block comment":         {"SELECT 1 /* /* */ '  x  ' */  FROM t", "SELECT 1 /* /* */ '  x  ' */ FROM t"},
		"line comment keeps its break": {"SELECT 1 -- x\n  UNION SELECT 2", "SELECT 1 -- x\nUNION SELECT 2"},
		"hash comment keeps its break": {"SELECT 1 # x\nUNION SELECT 2", "SELECT 1 # x\nUNION SELECT 2"},
		"unterminated literal kept":    {"SELECT 'a  b", "SELECT 'a  b"},
		"unterminated comment kept":    {"SELECT /* a  b", "SELECT /* a  b"},
		"quote inside a comment":       {"SELECT 1 -- it's\n  FROM   t", "SELECT 1 -- it's\nFROM t"},
		"comment inside a literal":     {"SELECT '--  x'  FROM t", "SELECT '--  x' FROM t"},
		"already normal":               {"SELECT id FROM t WHERE x > 1", "SELECT id FROM t WHERE x > 1"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := policy.NormalizeSQL(tc.in); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	// Pairs a database runs differently must stay apart.
	distinct := map[string][2]string{
		"spaces in a literal":         {"SELECT 'a b'", "SELECT 'a  b'"},
		"NBSP against a space":        {"SELECT\u00a01", "SELECT 1"},
		"line comment against space":  {"SELECT 1 -- x\nUNION SELECT 2", "SELECT 1 -- x UNION SELECT 2"},
		"hash comment against space":  {"SELECT 1 # x\nUNION SELECT 2", "SELECT 1 # x UNION SELECT 2"},
		"dollar-quoted spaces":        {"SELECT $$a b$$", "SELECT $$a  b$$"},
		"identifier spaces":           {`SELECT "a b"`, `SELECT "a  b"`},
		"literal after a comment end": {"SELECT /* /* */ 'a  b' */ 1", "SELECT /* /* */ 'a b' */ 1"},
	}
	for name, p := range distinct {
		t.Run("distinct/"+name, func(t *testing.T) {
			if a, b := policy.NormalizeSQL(p[0]), policy.NormalizeSQL(p[1]); a == b {
				t.Errorf("%q and %q both normalise to %q", p[0], p[1], a)
			}
		})
	}
}

// FuzzNormalizeSQL: normalising is idempotent, and keeps every byte that
// is not ASCII whitespace, in order.
func FuzzNormalizeSQL(f *testing.F) {
	for _, s := range []string{"SELECT  1", "SELECT 'a  b'", "-- x\n y", "$a$ $a$", "/* /* */ */", "'\\'", "$1 $"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		n := policy.NormalizeSQL(q)
		if again := policy.NormalizeSQL(n); again != n {
			t.Fatalf("%q → %q → %q: not idempotent", q, n, again)
		}
		strip := func(s string) string {
			out := make([]byte, 0, len(s))
			for i := 0; i < len(s); i++ {
				if c := s[i]; c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != '\v' {
					out = append(out, c)
				}
			}
			return string(out)
		}
		if strip(n) != strip(q) {
			t.Fatalf("%q → %q: lost or changed a byte that is not whitespace", q, n)
		}
	})
}
