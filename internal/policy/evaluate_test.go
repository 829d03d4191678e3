package policy_test

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
)

// decide builds a token and account, caches them in a Decider over a fake
// store, and decides req with the token's value.
func decide(t testing.TB, tok *policy.Token, acc *policy.Account, req policy.Request, opt policy.EvalOptions) policy.Decision {
	t.Helper()
	s, c := newFakeStore(), newClock()
	if acc != nil {
		s.account = acc
	}
	if err := tok.Normalize(); err != nil {
		t.Fatalf("normalize: %v", err)
	}
	v := s.add(tok)
	if req.Token == "" {
		req.Token = v
	}
	cache, err := policy.NewCache(s, testCacheConfig(), c.now, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := policy.NewDecider(cache, nil, c.now, opt).Decide(context.Background(), &req)
	if err != nil {
		t.Fatalf("decide: %v", err)
	}
	return d
}

func TestEvaluate(t *testing.T) {
	past := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	future := time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)
	pub := func(change func(*policy.Token)) *policy.Token {
		tok := policy.NewToken("acc_1", policy.Publishable)
		if change != nil {
			change(tok)
		}
		return tok
	}
	secret := policy.NewToken("acc_1", policy.Secret)
	premiumAcc := &policy.Account{ID: "acc_1", Premium: true}
	ip := netip.MustParseAddr
	rw := policy.Actions(policy.Read | policy.Write)

	cases := map[string]struct {
		tok  *policy.Token
		acc  *policy.Account
		req  policy.Request
		opt  policy.EvalOptions
		want policy.DenyCode // "" = allow
	}{
		"plain publishable":         {tok: pub(nil), req: policy.Request{Tier: policy.TierCore}},
		"malformed":                 {tok: pub(nil), req: policy.Request{Token: "pk_nope"}, want: policy.CodeTokenMalformed},
		"unknown":                   {tok: pub(nil), req: policy.Request{Token: policy.NewValue(policy.Publishable)}, want: policy.CodeTokenUnknown},
		"conflict":                  {tok: pub(nil), req: policy.Request{TokenConflict: true}, want: policy.CodeTokenConflict},
		"disabled":                  {tok: pub(func(t *policy.Token) { t.Enabled = false }), want: policy.CodeTokenDisabled},
		"expired":                   {tok: pub(func(t *policy.Token) { t.ExpiresAt = &past }), want: policy.CodeTokenExpired},
		"not yet expired":           {tok: pub(func(t *policy.Token) { t.ExpiresAt = &future })},
		"secret from browser":       {tok: secret, req: policy.Request{FromBrowser: true}, want: policy.CodeSecretTokenInBrowser},
		"secret from browser, ok'd": {tok: secret, req: policy.Request{FromBrowser: true}, opt: policy.EvalOptions{AllowSecretInBrowser: true}},
		"publishable from browser":  {tok: pub(nil), req: policy.Request{FromBrowser: true}},
		"ip allowed":                {tok: pub(func(t *policy.Token) { t.IPs = []string{"10.0.0.0/8"} }), req: policy.Request{IP: ip("10.2.3.4")}},
		"ip denied":                 {tok: pub(func(t *policy.Token) { t.IPs = []string{"10.0.0.0/8"} }), req: policy.Request{IP: ip("11.2.3.4")}, want: policy.CodeIPDenied},
		"ip unknown":                {tok: pub(func(t *policy.Token) { t.IPs = []string{"10.0.0.0/8"} }), want: policy.CodeIPDenied},
		"ipv6 allowed":              {tok: pub(func(t *policy.Token) { t.IPs = []string{"2001:db8::/32"} }), req: policy.Request{IP: ip("2001:db8::7")}},
		"referer allowed":           {tok: pub(func(t *policy.Token) { t.Domains = []string{"example.com"} }), req: policy.Request{Referer: "https://example.com/page"}},
		"origin when no referer":    {tok: pub(func(t *policy.Token) { t.Domains = []string{"example.com"} }), req: policy.Request{Origin: "http://example.com"}},
		"referer denied":            {tok: pub(func(t *policy.Token) { t.Domains = []string{"example.com"} }), req: policy.Request{Referer: "https://evil.com/"}, want: policy.CodeRefererDenied},
		"referer missing":           {tok: pub(func(t *policy.Token) { t.Domains = []string{"example.com"} }), want: policy.CodeRefererDenied},
		"referer garbage":           {tok: pub(func(t *policy.Token) { t.Domains = []string{"example.com"} }), req: policy.Request{Referer: "not a url"}, want: policy.CodeRefererDenied},
		"any api":                   {tok: pub(nil), req: policy.Request{API: "maps"}},
		"import needs a grant":      {tok: pub(nil), req: policy.Request{API: "import"}, want: policy.CodeAPIDenied},
		"api listed":                {tok: pub(func(t *policy.Token) { t.APIs = []string{"maps"} }), req: policy.Request{API: "maps"}},
		"api not listed":            {tok: pub(func(t *policy.Token) { t.APIs = []string{"maps"} }), req: policy.Request{API: "sql"}, want: policy.CodeAPIDenied},
		"import granted":            {tok: pub(func(t *policy.Token) { t.APIs = []string{"import"} }), req: policy.Request{API: "import"}},
		"core denied":               {tok: pub(func(t *policy.Token) { t.Core = false }), req: policy.Request{Tier: policy.TierCore}, want: policy.CodeTierDenied},
		"premium without account":   {tok: pub(func(t *policy.Token) { t.Premium = true }), req: policy.Request{Tier: policy.TierPremium}, want: policy.CodeTierDenied},
		"premium without flag":      {tok: pub(nil), acc: premiumAcc, req: policy.Request{Tier: policy.TierPremium}, want: policy.CodeTierDenied},
		"premium":                   {tok: pub(func(t *policy.Token) { t.Premium = true }), acc: premiumAcc, req: policy.Request{Tier: policy.TierPremium}},
		"secret premium":            {tok: secret, acc: premiumAcc, req: policy.Request{Tier: policy.TierPremium}},
		"secret premium, no sub":    {tok: policy.NewToken("acc_1", policy.Secret), req: policy.Request{Tier: policy.TierPremium}, want: policy.CodeTierDenied},
		"dataset wildcard read": {tok: pub(func(t *policy.Token) { t.Datasets = map[string]policy.Actions{"sales.*": rw} }),
			req: policy.Request{Dataset: "sales.eu.q1", Action: policy.Read}},
		"dataset write": {tok: pub(func(t *policy.Token) { t.Datasets = map[string]policy.Actions{"sales": rw} }),
			req: policy.Request{Dataset: "sales", Action: policy.Write}},
		"dataset delete denied": {tok: pub(func(t *policy.Token) { t.Datasets = map[string]policy.Actions{"sales": rw} }),
			req: policy.Request{Dataset: "sales", Action: policy.Delete}, want: policy.CodeDatasetDenied},
		"dataset not listed": {tok: pub(func(t *policy.Token) { t.Datasets = map[string]policy.Actions{"sales.*": rw} }),
			req: policy.Request{Dataset: "salesforce", Action: policy.Read}, want: policy.CodeDatasetDenied},
		"no datasets at all": {tok: pub(nil), req: policy.Request{Dataset: "sales", Action: policy.Read}, want: policy.CodeDatasetDenied},
		"secret any dataset": {tok: policy.NewToken("acc_1", policy.Secret), req: policy.Request{Dataset: "x", Action: policy.Delete}},
		"table grant":        {tok: pub(grant("wh:table:public.orders_*")), req: policy.Request{Connection: "wh", Source: "public.orders_2024", Action: policy.Read}},
		"table grant, write": {tok: pub(grant("wh:table:public.orders_*")), req: policy.Request{Connection: "wh", Source: "public.orders_2024", Action: policy.Write}, want: policy.CodeSourceDenied},
		"table not granted":  {tok: pub(grant("wh:table:public.orders_*")), req: policy.Request{Connection: "wh", Source: "public.users", Action: policy.Read}, want: policy.CodeSourceDenied},
		"other connection":   {tok: pub(grant("wh:all")), req: policy.Request{Connection: "lake", Source: "t", Action: policy.Read}, want: policy.CodeSourceDenied},
		"all sources":        {tok: pub(grant("wh:all")), req: policy.Request{Connection: "wh", Source: "anything", Action: policy.Write}},
		"saved query":        {tok: pub(grant("wh:query:SELECT  *\nFROM t")), req: policy.Request{Connection: "wh", Source: "SELECT * FROM t", Action: policy.Read}},
		"other query":        {tok: pub(grant("wh:query:SELECT * FROM t")), req: policy.Request{Connection: "wh", Source: "SELECT * FROM u", Action: policy.Read}, want: policy.CodeSourceDenied},
		"grant-free api":     {tok: pub(nil), req: policy.Request{API: "lds", Connection: "wh"}, opt: policy.EvalOptions{GrantFreeAPIs: []string{"lds"}}},
		"not grant-free":     {tok: pub(nil), req: policy.Request{API: "maps", Connection: "wh"}, opt: policy.EvalOptions{GrantFreeAPIs: []string{"lds"}}, want: policy.CodeSourceDenied},
		"order: ip before referer": {tok: pub(func(t *policy.Token) { t.IPs = []string{"10.0.0.0/8"}; t.Domains = []string{"example.com"} }),
			req: policy.Request{IP: ip("9.9.9.9")}, want: policy.CodeIPDenied},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			d := decide(t, c.tok, c.acc, c.req, c.opt)
			if d.Code != c.want || d.Allow != (c.want == "") {
				t.Errorf("got allow=%v code=%q (%s), want code %q", d.Allow, d.Code, d.Message, c.want)
			}
			if d.Allow && (d.TokenID != c.tok.ID || d.AccountID != "acc_1" || d.Cost != c.req.Cost) {
				t.Errorf("allowed decision %+v does not name the token, account and cost", d)
			}
			if !d.Allow && d.Message == "" {
				t.Error("a deny without a message")
			}
		})
	}
}

func grant(s string) func(*policy.Token) {
	return func(t *policy.Token) {
		g, err := policy.ParseGrant(s)
		if err != nil {
			panic(err)
		}
		t.Grants = append(t.Grants, g)
	}
}

func TestMatchName(t *testing.T) {
	for _, c := range []struct {
		pattern, name string
		want          bool
	}{
		{"sales", "sales", true}, {"sales", "sales2", false}, {"sales.*", "sales.q1", true},
		{"sales.*", "sales.q1.eu", true}, {"sales.*", "sales", false}, {"*", "", true}, {"*", "x", true},
		{"a*b*c", "axxbyyc", true}, {"a*b*c", "axxbyy", false}, {"*.eu", "sales.eu", true}, {"**", "abc", true},
		{"", "", true}, {"", "a", false}, {"a*", "", false},
		// Prefix and suffix must not overlap.
		{"ab*ba", "aba", false}, {"ab*ba", "abba", true}, {"a*a", "a", false}, {"a*a", "aa", true},
		// Middle segments in order, without overlap.
		{"*ab*ab*", "xabx", false}, {"*ab*ab*", "ababx", true}, {"*aa*aa*", "aaa", false}, {"*aa*aa*", "aaaa", true},
		{"*b*a*", "ab", false}, {"x*a*b*y", "xbay", false}, {"x*a*b*y", "xaby", true},
		// Shapes that make a backtracking glob quadratic.
		{"a*a*a*a*a*a*a*a*b", strings.Repeat("a", 128), false},
		{"a*a*a*a*a*a*a*a*b", strings.Repeat("a", 127) + "b", true},
		{"*" + strings.Repeat("a", 63) + "b*", strings.Repeat("a", 128), false},
		{"*" + strings.Repeat("a", 63) + "b*", strings.Repeat("a", 100) + "b", true},
		{"*" + strings.Repeat("ab", 60) + "*", strings.Repeat("ab", 64), true},
		{"*" + strings.Repeat("ab", 60) + "*", strings.Repeat("ab", 59) + "b" + strings.Repeat("ab", 5), false},
		// Bytes, not characters: non-ASCII and invalid UTF-8 compare as bytes.
		{"é*", "é", true}, {"*\xa9", "é", true}, {"\xff*", "\xff\xfe", true},
	} {
		if got := policy.MatchName(c.pattern, c.name); got != c.want {
			t.Errorf("MatchName(%q, %q) = %v, want %v", c.pattern, c.name, got, c.want)
		}
	}
}

// TestMatchNameAgainstReference compares MatchName with matchRef on names
// of every length around the 64- and 128-byte boundaries of its position
// sets, over a two-letter alphabet so that near misses are common.
func TestMatchNameAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	word := func(n int, alphabet string) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	for n := 0; n <= 132; n++ {
		for range 60 {
			name := word(n, "ab")
			var pattern string
			switch rng.IntN(3) {
			case 0:
				// Cut pieces of the name, so that the pattern often matches.
				for _, piece := range strings.SplitAfter(name, name[:min(n, rng.IntN(4))]) {
					pattern += piece[:len(piece)/2] + "*"
				}
			case 1:
				pattern = word(rng.IntN(40), "ab**")
			default:
				// One long segment of the name, maybe with a byte changed,
				// so that the shifts past 64 bytes are used.
				i := rng.IntN(n + 1)
				seg := []byte(name[i:min(n, i+rng.IntN(n+1))])
				if len(seg) > 0 && rng.IntN(2) == 0 {
					seg[rng.IntN(len(seg))] ^= 'a' ^ 'b'
				}
				pattern = "*" + string(seg) + "*"
			}
			if got, want := policy.MatchName(pattern, name), matchRef(pattern, name); got != want {
				t.Fatalf("MatchName(%q, %q): got %v, want %v", pattern, name, got, want)
			}
		}
	}
}

// FuzzMatchName checks MatchName against matchRef, a plain dynamic
// programme over every prefix of pattern and name.
func FuzzMatchName(f *testing.F) {
	f.Add("sales.*", "sales.q1")
	f.Add("a*b*c*d", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaab")
	f.Add("ab*ba", "aba")
	f.Add("*aa*aa*", "aaa")
	f.Fuzz(func(t *testing.T, pattern, name string) {
		if len(pattern) > 256 || len(name) > 256 {
			return
		}
		got := policy.MatchName(pattern, name)
		if want := matchRef(pattern, name); got != want {
			t.Errorf("MatchName(%q, %q): got %v, want %v", pattern, name, got, want)
		}
	})
}

// matchRef is the reference glob: m[j] tells whether the pattern read so
// far matches name[:j].
func matchRef(pattern, name string) bool {
	m := make([]bool, len(name)+1)
	m[0] = true
	for i := 0; i < len(pattern); i++ {
		next := make([]bool, len(name)+1)
		for j := range next {
			if pattern[i] == '*' {
				next[j] = m[j] || j > 0 && next[j-1]
			} else {
				next[j] = j > 0 && m[j-1] && name[j-1] == pattern[i]
			}
		}
		m = next
	}
	return m[len(name)]
}

// BenchmarkDecide is the decision on a cache hit for a token with every
// kind of restriction, the work Check adds to a gRPC round trip.
func BenchmarkDecide(b *testing.B) {
	s := newFakeStore()
	s.account.Premium = true
	tok := policy.NewToken("acc_1", policy.Publishable)
	tok.Premium = true
	tok.Domains = []string{"example.com", "*.example.org", "https://app.example.net/dash"}
	tok.IPs = []string{"10.0.0.0/8", "2001:db8::/32"}
	tok.Datasets = map[string]policy.Actions{"sales.*": policy.Actions(policy.Read), "hr": policy.Actions(policy.Read)}
	tok.APIs = []string{"data", "maps"}
	if err := tok.Normalize(); err != nil {
		b.Fatal(err)
	}
	v := s.add(tok)
	cache, err := policy.NewCache(s, testCacheConfig(), time.Now, nil)
	if err != nil {
		b.Fatal(err)
	}
	d := policy.NewDecider(cache, nil, time.Now, policy.EvalOptions{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := policy.Request{Token: v, IP: netip.MustParseAddr("10.1.2.3"), Referer: "https://app.example.net/dash/x?y=1",
			API: "data", Dataset: "sales.q1", Tier: policy.TierPremium, Action: policy.Read, Cost: 1}
		for pb.Next() {
			if dec, err := d.Decide(context.Background(), &req); err != nil || !dec.Allow {
				b.Fatalf("%+v %v", dec, err)
			}
		}
	})
}
