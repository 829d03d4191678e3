package policy_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
)

// hostileToken returns a publishable token that fills every list to its caps
// with the entries that cost the most to check against hostileRequest, the
// only match being the last entry checked, so that an allowed request walks
// every list to the end.
func hostileToken(tb testing.TB) *policy.Token {
	tb.Helper()
	tok := policy.NewToken("acc_1", policy.Publishable)
	read := policy.Actions(policy.Read)
	name := hostileName()
	tok.Datasets = map[string]policy.Actions{}
	// Literal names that differ from the request's in the last bytes
	// (compared first); wildcards up to the 2 KiB cap, each a long middle
	// segment found almost everywhere in the name and missing only at its
	// end; and the one match, a short wildcard that is checked last ('*'
	// sorts before letters).
	for i := range 83 {
		tok.Datasets[fmt.Sprintf("%s%02d", name[:126], i)] = read
	}
	for i := range 16 {
		tok.Datasets[fmt.Sprintf("*%s%02d*", strings.Repeat("za", 61), i)] = read
	}
	tok.Datasets["zz*"] = read
	for i := range 83 {
		tok.Grants = append(tok.Grants, policy.Grant{Connection: "wh", Type: policy.GrantTable, Source: fmt.Sprintf("%s%02d", name[:126], i)})
	}
	for i := range 16 {
		tok.Grants = append(tok.Grants, policy.Grant{Connection: "wh", Type: policy.GrantTable,
			Source: fmt.Sprintf("*%s%02d*", strings.Repeat("za", 61), i)})
	}
	tok.Grants = append(tok.Grants, policy.Grant{Connection: "wh", Type: policy.GrantTable, Source: "zz*"})
	label := strings.Repeat("a", 63)
	for i := range 99 {
		tok.Domains = append(tok.Domains, fmt.Sprintf("https://*.%s.%s.%s.x%02d.example:8443/%s", label, label, label, i, strings.Repeat("p", 600)))
	}
	tok.Domains = append(tok.Domains, "*.example.org")
	for i := range 99 {
		tok.IPs = append(tok.IPs, fmt.Sprintf("2001:db8:%x::/48", i))
	}
	tok.IPs = append(tok.IPs, "10.0.0.0/8")
	if err := tok.Normalize(); err != nil {
		tb.Fatal(err)
	}
	return tok
}

// hostileName is a dataset and table name of the longest valid length.
func hostileName() string { return "zz" + strings.Repeat("za", 63) }

// hostileRequest is the most expensive request hostileToken allows: names
// that almost match every pattern, and a long Referer.
func hostileRequest() policy.Request {
	return policy.Request{
		IP:         netip.MustParseAddr("10.1.2.3"),
		Referer:    "https://" + strings.Repeat("a.", 100) + "www.example.org/" + strings.Repeat("q", 7<<10),
		API:        "data",
		Dataset:    hostileName(),
		Connection: "wh",
		Source:     hostileName(),
		Tier:       policy.TierCore,
		Action:     policy.Read,
		Cost:       1,
	}
}

// BenchmarkEvaluateWorstCase is a decision on a cache hit for the most
// expensive token and request within the limits, next to an ordinary one
// (the token and request of BenchmarkDecide). "idna referer" is the costliest
// Referer for any token with allowed domains: a host of 1 KiB of CJK labels,
// which IDNA maps to punycode before finding it too long.
func BenchmarkEvaluateWorstCase(b *testing.B) {
	normal := policy.NewToken("acc_1", policy.Publishable)
	normal.Domains = []string{"example.com", "*.example.org", "https://app.example.net/dash"}
	normal.IPs = []string{"10.0.0.0/8", "2001:db8::/32"}
	normal.Datasets = map[string]policy.Actions{"sales.*": policy.Actions(policy.Read), "hr": policy.Actions(policy.Read)}
	normal.APIs = []string{"data", "maps"}
	normalReq := policy.Request{IP: netip.MustParseAddr("10.1.2.3"), Referer: "https://app.example.net/dash/x?y=1",
		API: "data", Dataset: "sales.q1", Tier: policy.TierCore, Action: policy.Read, Cost: 1}
	domains := policy.NewToken("acc_1", policy.Publishable)
	domains.Domains = []string{"example.com"}
	idnaReq := policy.Request{Referer: "https://" + strings.Repeat(strings.Repeat("日", 20)+".", 16) + "example/", Action: policy.Read}
	for _, c := range []struct {
		name  string
		tok   *policy.Token
		req   policy.Request
		allow bool
	}{
		{"normal", normal, normalReq, true},
		{"hostile", hostileToken(b), hostileRequest(), true},
		{"idna referer", domains, idnaReq, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			s := newFakeStore()
			if err := c.tok.Normalize(); err != nil {
				b.Fatal(err)
			}
			req := c.req
			req.Token = s.add(c.tok)
			cache, err := policy.NewCache(s, testCacheConfig(), time.Now, nil)
			if err != nil {
				b.Fatal(err)
			}
			d := policy.NewDecider(cache, nil, time.Now, policy.EvalOptions{})
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if dec, err := d.Decide(ctx, &req); err != nil || dec.Allow != c.allow {
					b.Fatalf("got %+v, %v, want allow=%v", dec, err, c.allow)
				}
			}
		})
	}
}
