package policy_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
)

// TestHostileNames is the catalogue of request names chosen to be costly or
// to slip past a wildcard. A name no dataset or table may have is denied
// before any pattern sees it, so the matcher's work is bounded by the
// 128-byte name and the write-time caps on patterns.
func TestHostileNames(t *testing.T) {
	read := policy.Actions(policy.Read)
	datasets := func(patterns ...string) func(*policy.Token) {
		return func(tok *policy.Token) {
			tok.Datasets = map[string]policy.Actions{}
			for _, p := range patterns {
				tok.Datasets[p] = read
			}
		}
	}
	// As many long wildcards as the 2 KiB cap allows, each almost found at
	// every place of an all-'a' name.
	nearMisses := make([]string, 0, 19)
	for i := range 19 {
		nearMisses = append(nearMisses, fmt.Sprintf("*%s%02d*", strings.Repeat("a", 100), i))
	}
	cases := map[string]struct {
		tok     func(*policy.Token)
		dataset string
		source  string
		want    policy.DenyCode // "" = allow
	}{
		"59 KB name, star":            {tok: datasets("*"), dataset: strings.Repeat("a", 59<<10), want: policy.CodeDatasetDenied},
		"129-byte name, star":         {tok: datasets("*"), dataset: strings.Repeat("a", 129), want: policy.CodeDatasetDenied},
		"128-byte name, star":         {tok: datasets("*"), dataset: strings.Repeat("a", 128)},
		"slash in name":               {tok: datasets("sales.*"), dataset: "sales.q1/../hr", want: policy.CodeDatasetDenied},
		"star in name":                {tok: datasets("sales.*"), dataset: "sales.*", want: policy.CodeDatasetDenied},
		"non-ASCII name":              {tok: datasets("sales.*"), dataset: "sales.q1é", want: policy.CodeDatasetDenied},
		"invalid UTF-8 name":          {tok: datasets("*"), dataset: "sales.\xff", want: policy.CodeDatasetDenied},
		"NUL in name":                 {tok: datasets("sales*"), dataset: "sales\x00", want: policy.CodeDatasetDenied},
		"space in name":               {tok: datasets("sales.*"), dataset: "sales. q1", want: policy.CodeDatasetDenied},
		"percent in name":             {tok: datasets("sales.*"), dataset: "sales.%2e%2e", want: policy.CodeDatasetDenied},
		"a*a*a*…b vs aaa…a":           {tok: datasets("a*a*a*a*a*a*a*a*b"), dataset: strings.Repeat("a", 128), want: policy.CodeDatasetDenied},
		"a*a*a*…b vs aaa…ab":          {tok: datasets("a*a*a*a*a*a*a*a*b"), dataset: strings.Repeat("a", 127) + "b"},
		"19 near misses":              {tok: datasets(nearMisses...), dataset: strings.Repeat("a", 128), want: policy.CodeDatasetDenied},
		"19 near misses, last fits":   {tok: datasets(nearMisses...), dataset: "x" + strings.Repeat("a", 100) + "18x"},
		"table: 59 KB name, star":     {tok: grant("wh:table:*"), source: strings.Repeat("t", 59<<10), want: policy.CodeSourceDenied},
		"table: SQL in name":          {tok: grant("wh:table:public.*"), source: "public.t;DROP TABLE x", want: policy.CodeSourceDenied},
		"table: star in name":         {tok: grant("wh:table:public.*"), source: "public.*", want: policy.CodeSourceDenied},
		"table: 128-byte name":        {tok: grant("wh:table:public.*"), source: "public." + strings.Repeat("t", 121)},
		"table: literal name":         {tok: grant("wh:table:public.orders"), source: "public.orders"},
		"table: literal, other name":  {tok: grant("wh:table:public.orders"), source: "public.orders2", want: policy.CodeSourceDenied},
		"saved query is not a name":   {tok: grant("wh:query:SELECT * FROM t"), source: "SELECT * FROM t"},
		"saved query, long SQL":       {tok: grant("wh:query:SELECT * FROM t"), source: "SELECT * FROM t" + strings.Repeat(" ", 59<<10), want: policy.CodeSourceDenied},
		"all sources, any name":       {tok: grant("wh:all"), source: strings.Repeat("t", 59<<10)},
		"table pattern, query source": {tok: grant("wh:table:*"), source: "SELECT * FROM t", want: policy.CodeSourceDenied},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			tok := policy.NewToken("acc_1", policy.Publishable)
			c.tok(tok)
			req := policy.Request{Dataset: c.dataset, Action: policy.Read}
			if c.source != "" {
				req.Connection, req.Source = "wh", c.source
			}
			d := decide(t, tok, nil, req, policy.EvalOptions{})
			if d.Code != c.want || d.Allow != (c.want == "") {
				t.Errorf("got allow=%v code=%q (%s), want code %q", d.Allow, d.Code, d.Message, c.want)
			}
			if len(d.Message) > 300 {
				t.Errorf("got a %d-byte message, want the name cut short", len(d.Message))
			}
		})
	}
}

// TestTokenLimits is the catalogue of token settings refused at write time
// because they would make every check of the token costly, or allow far more
// than they seem to: each error names its field.
func TestTokenLimits(t *testing.T) {
	read := policy.Actions(policy.Read)
	many := func(n int, f string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf(f, i)
		}
		return out
	}
	cases := map[string]struct {
		change func(*policy.Token)
		field  string // "" = accepted
		msg    string // a substring of the error
	}{
		"100 datasets": {change: func(tok *policy.Token) { tok.Datasets = setOf(many(100, "d%d*"), read) }},
		"101 datasets": {change: func(tok *policy.Token) { tok.Datasets = setOf(many(101, "d%d*"), read) },
			field: "datasets", msg: "at most 100"},
		"100 grants": {change: func(tok *policy.Token) { rawGrants(many(100, "wh:table:t%d*")...)(tok) }},
		"101 grants": {change: func(tok *policy.Token) { rawGrants(many(101, "wh:table:t%d*")...)(tok) },
			field: "grants", msg: "at most 100"},
		"101 domains": {change: func(tok *policy.Token) { tok.Domains = many(101, "d%d.example.com") },
			field: "allowed_domains", msg: "at most 100"},
		"101 IP ranges": {change: func(tok *policy.Token) { tok.IPs = many(101, "10.0.%d.0/24") },
			field: "allowed_ips", msg: "at most 100"},
		"101 APIs": {change: func(tok *policy.Token) { tok.APIs = many(101, "data") },
			field: "allowed_apis", msg: "at most 100"},
		"2 KiB of wildcards": {change: func(tok *policy.Token) {
			tok.Datasets = setOf(append(many(16, "*%03d"+strings.Repeat("d", 124)), "lit"+strings.Repeat("l", 125)), read)
		}},
		"over 2 KiB of wildcards": {change: func(tok *policy.Token) {
			tok.Datasets = setOf(append(many(16, "*%03d"+strings.Repeat("d", 124)), "x*"), read)
		},
			field: "datasets", msg: "at most 2048 characters"},
		"over 2 KiB of table wildcards": {change: rawGrants(append(many(16, "wh:table:*%03d"+strings.Repeat("d", 124)), "wh:table:x*")...),
			field: "grants", msg: "at most 2048 characters"},
		"2 KiB of tables and 100 literals": {change: rawGrants(append(many(16, "wh:table:*%03d"+strings.Repeat("d", 124)), many(84, "wh:table:t%03d"+strings.Repeat("t", 124))...)...)},
		"128-byte dataset":                 {change: func(tok *policy.Token) { tok.Datasets = setOf([]string{strings.Repeat("d", 127) + "*"}, read) }},
		"129-byte dataset": {change: func(tok *policy.Token) { tok.Datasets = setOf([]string{strings.Repeat("d", 128) + "*"}, read) },
			field: "datasets", msg: "1 to 128"},
		"129-byte table": {change: rawGrants("wh:table:" + strings.Repeat("t", 129)), field: "grants", msg: "1 to 128"},
		"8 stars":        {change: func(tok *policy.Token) { tok.Datasets = setOf([]string{"a*b*c*d*e*f*g*h*"}, read) }},
		"9 stars": {change: func(tok *policy.Token) { tok.Datasets = setOf([]string{"a*b*c*d*e*f*g*h*i*"}, read) },
			field: "datasets", msg: "at most 8 '*'"},
		"9 stars in a table":     {change: rawGrants("wh:table:*a*b*c*d*e*f*g*h*"), field: "grants", msg: "at most 8 '*'"},
		"20 stars in a row":      {change: func(tok *policy.Token) { tok.Datasets = setOf([]string{strings.Repeat("*", 20)}, read) }},
		"non-ASCII dataset":      {change: func(tok *policy.Token) { tok.Datasets = setOf([]string{"ventes.é*"}, read) }, field: "datasets", msg: "1 to 128"},
		"wildcard over co.uk":    {change: func(tok *policy.Token) { tok.Domains = []string{"*.co.uk"} }, field: "allowed_domains", msg: "public suffix"},
		"wildcard over github":   {change: func(tok *policy.Token) { tok.Domains = []string{"https://*.github.io"} }, field: "allowed_domains", msg: "public suffix"},
		"wildcard over 公司.cn":    {change: func(tok *policy.Token) { tok.Domains = []string{"*.公司.cn"} }, field: "allowed_domains", msg: "public suffix"},
		"wildcard over a .ck":    {change: func(tok *policy.Token) { tok.Domains = []string{"*.anything.ck"} }, field: "allowed_domains", msg: "public suffix"},
		"wildcard, own domain":   {change: func(tok *policy.Token) { tok.Domains = []string{"*.example.co.uk", "*.me.github.io"} }},
		"exact public suffix ok": {change: func(tok *policy.Token) { tok.Domains = []string{"co.uk"} }},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			tok := policy.NewToken("acc_1", policy.Publishable)
			c.change(tok)
			err := tok.Normalize()
			if c.field == "" {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			var e *policy.Error
			if !errors.As(err, &e) || e.Code != policy.EInvalid || e.Field != c.field || !strings.Contains(e.Message, c.msg) {
				t.Fatalf("got %v, want an invalid %s error containing %q", err, c.field, c.msg)
			}
		})
	}
}

// TestPatternsCanonical checks that runs of '*' collapse, so that equal
// patterns are stored once and the actions of both are kept.
func TestPatternsCanonical(t *testing.T) {
	tok := policy.NewToken("acc_1", policy.Publishable)
	tok.Datasets = map[string]policy.Actions{"sales.**": policy.Actions(policy.Read), "sales.*": policy.Actions(policy.Write), "***": policy.Actions(policy.Delete)}
	rawGrants("wh:table:t**", "wh:table:t*")(tok)
	if err := tok.Normalize(); err != nil {
		t.Fatal(err)
	}
	want := map[string]policy.Actions{"sales.*": policy.Actions(policy.Read | policy.Write), "*": policy.Actions(policy.Delete)}
	if fmt.Sprint(tok.Datasets) != fmt.Sprint(want) {
		t.Errorf("got datasets %v, want %v", tok.Datasets, want)
	}
	if len(tok.Grants) != 1 || tok.Grants[0].Source != "t*" {
		t.Errorf("got grants %v, want [wh:table:t*]", tok.Grants)
	}
}

// TestStoredPublicSuffixWildcard: a token stored before wildcards over a
// public suffix were refused still compiles; that pattern matches nothing,
// its other patterns still match, and a token left with no usable pattern
// stays restricted rather than open to every domain.
func TestStoredPublicSuffixWildcard(t *testing.T) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	for name, c := range map[string]struct {
		domains []string
		referer string
		want    policy.DenyCode
	}{
		"under the suffix":  {[]string{"*.co.uk", "app.example.com"}, "https://evil.co.uk/", policy.CodeRefererDenied},
		"other pattern":     {[]string{"*.co.uk", "app.example.com"}, "https://app.example.com/x", ""},
		"private suffix":    {[]string{"*.github.io"}, "https://evil.github.io/", policy.CodeRefererDenied},
		"only bad patterns": {[]string{"*.github.io"}, "https://example.com/", policy.CodeRefererDenied},
	} {
		t.Run(name, func(t *testing.T) {
			tok := policy.NewToken("acc_1", policy.Publishable)
			tok.Domains = c.domains // as read from the store, not normalized
			p, err := policy.Compile(tok, &policy.Account{ID: "acc_1"}, nil)
			if err != nil {
				t.Fatalf("compile: got %v, want nil", err)
			}
			d := p.Evaluate(&policy.Request{Referer: c.referer, IP: netip.MustParseAddr("192.0.2.1")}, now, policy.EvalOptions{})
			if d.Code != c.want || d.Allow != (c.want == "") {
				t.Errorf("got allow=%v code=%q, want code %q", d.Allow, d.Code, c.want)
			}
		})
	}
}

func setOf(names []string, a policy.Actions) map[string]policy.Actions {
	m := make(map[string]policy.Actions, len(names))
	for _, n := range names {
		m[n] = a
	}
	return m
}

// rawGrants sets a token's grants as written, connection:type:source, for
// Normalize to check.
func rawGrants(specs ...string) func(*policy.Token) {
	return func(tok *policy.Token) {
		for _, s := range specs {
			f := strings.SplitN(s, ":", 3)
			tok.Grants = append(tok.Grants, policy.Grant{Connection: f[0], Type: policy.GrantType(f[1]), Source: f[2]})
		}
	}
}
