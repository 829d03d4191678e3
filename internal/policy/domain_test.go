package policy_test

import (
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/policy"
)

func TestParseDomainPattern(t *testing.T) {
	tests := map[string]struct {
		in   string
		want policy.DomainPattern
		str  string // canonical String()
	}{
		"bare host":           {"example.com", policy.DomainPattern{Host: "example.com"}, "example.com"},
		"host and path":       {"example.com/app", policy.DomainPattern{Host: "example.com", Path: "/app"}, "example.com/app"},
		"https":               {"https://example.com", policy.DomainPattern{Scheme: "https", Host: "example.com"}, "https://example.com"},
		"full":                {"http://example.com:8080/app/", policy.DomainPattern{Scheme: "http", Host: "example.com", Port: "8080", Path: "/app/"}, "http://example.com:8080/app/"},
		"wildcard":            {"*.example.com", policy.DomainPattern{Wildcard: true, Host: "example.com"}, "*.example.com"},
		"wildcard two-level":  {"*.example.co.uk", policy.DomainPattern{Wildcard: true, Host: "example.co.uk"}, "*.example.co.uk"},
		"wildcard with all":   {"https://*.example.com:8443/x", policy.DomainPattern{Scheme: "https", Wildcard: true, Host: "example.com", Port: "8443", Path: "/x"}, "https://*.example.com:8443/x"},
		"localhost port":      {"localhost:3000", policy.DomainPattern{Host: "localhost", Port: "3000"}, "localhost:3000"},
		"ipv4":                {"192.168.1.10", policy.DomainPattern{Host: "192.168.1.10"}, "192.168.1.10"},
		"ipv4 port":           {"http://10.0.0.1:8000", policy.DomainPattern{Scheme: "http", Host: "10.0.0.1", Port: "8000"}, "http://10.0.0.1:8000"},
		"ipv6":                {"[2001:db8::1]", policy.DomainPattern{Host: "2001:db8::1"}, "[2001:db8::1]"},
		"ipv6 port":           {"[2001:db8::1]:8443", policy.DomainPattern{Host: "2001:db8::1", Port: "8443"}, "[2001:db8::1]:8443"},
		"ipv6 canonicalised":  {"[2001:DB8:0:0:0:0:0:1]", policy.DomainPattern{Host: "2001:db8::1"}, "[2001:db8::1]"},
		"ipv6 mapped":         {"[::ffff:1.2.3.4]", policy.DomainPattern{Host: "::ffff:1.2.3.4"}, "[::ffff:1.2.3.4]"},
		"upper case":          {"HTTPS://WWW.Example.COM/App", policy.DomainPattern{Scheme: "https", Host: "www.example.com", Path: "/App"}, "https://www.example.com/App"},
		"trailing dot":        {"example.com.", policy.DomainPattern{Host: "example.com"}, "example.com"},
		"trailing dot port":   {"example.com.:81", policy.DomainPattern{Host: "example.com", Port: "81"}, "example.com:81"},
		"idna":                {"bücher.example", policy.DomainPattern{Host: "xn--bcher-kva.example"}, "xn--bcher-kva.example"},
		"idna upper":          {"BÜCHER.example", policy.DomainPattern{Host: "xn--bcher-kva.example"}, "xn--bcher-kva.example"},
		"idna wildcard":       {"*.bücher.example", policy.DomainPattern{Wildcard: true, Host: "xn--bcher-kva.example"}, "*.xn--bcher-kva.example"},
		"punycode kept":       {"xn--bcher-kva.example", policy.DomainPattern{Host: "xn--bcher-kva.example"}, "xn--bcher-kva.example"},
		"punycode upper":      {"XN--BCHER-KVA.example", policy.DomainPattern{Host: "xn--bcher-kva.example"}, "xn--bcher-kva.example"},
		"fullwidth dot":       {"bücher。example", policy.DomainPattern{Host: "xn--bcher-kva.example"}, "xn--bcher-kva.example"},
		"slash path is any":   {"example.com/", policy.DomainPattern{Host: "example.com"}, "example.com"},
		"default port kept":   {"https://example.com:443", policy.DomainPattern{Scheme: "https", Host: "example.com", Port: "443"}, "https://example.com:443"},
		"port leading zeros":  {"example.com:08080", policy.DomainPattern{Host: "example.com", Port: "8080"}, "example.com:8080"},
		"port max":            {"example.com:65535", policy.DomainPattern{Host: "example.com", Port: "65535"}, "example.com:65535"},
		"hyphens like google": {"r3---sn-abc.googlevideo.com", policy.DomainPattern{Host: "r3---sn-abc.googlevideo.com"}, "r3---sn-abc.googlevideo.com"},
		"underscore":          {"my_host.example.com", policy.DomainPattern{Host: "my_host.example.com"}, "my_host.example.com"},
		"path encoded":        {"example.com/café", policy.DomainPattern{Host: "example.com", Path: "/caf%C3%A9"}, "example.com/caf%C3%A9"},
		"path escape kept":    {"example.com/a%2Fb", policy.DomainPattern{Host: "example.com", Path: "/a%2Fb"}, "example.com/a%2Fb"},
		"path braces":         {"example.com/{x}", policy.DomainPattern{Host: "example.com", Path: "/%7Bx%7D"}, "example.com/%7Bx%7D"},
		"path case kept":      {"example.com/App/", policy.DomainPattern{Host: "example.com", Path: "/App/"}, "example.com/App/"},
		"max host":            {strings.Repeat("a.", 126) + "b", policy.DomainPattern{Host: strings.Repeat("a.", 126) + "b"}, strings.Repeat("a.", 126) + "b"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := policy.ParseDomainPattern(tt.in)
			if err != nil {
				t.Fatalf("ParseDomainPattern(%q): got error %v, want nil", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseDomainPattern(%q): got %+v, want %+v", tt.in, got, tt.want)
			}
			if s := got.String(); s != tt.str {
				t.Errorf("String(): got %q, want %q", s, tt.str)
			}
			again, err := policy.ParseDomainPattern(got.String())
			if err != nil || again != got {
				t.Errorf("re-parse of %q: got %+v, %v, want %+v, nil", got.String(), again, err, got)
			}
		})
	}
}

func TestParseDomainPatternErrors(t *testing.T) {
	tests := map[string]struct {
		in   string
		want string // a substring of the error
	}{
		"empty":                {"", "is empty"},
		"other scheme":         {"ftp://x.com", "scheme must be http or https"},
		"ws scheme":            {"wss://x.com", "scheme must be http or https"},
		"scheme no host":       {"https://", "host is empty"},
		"scheme-relative":      {"//example.com", "no scheme"},
		"only port":            {":8080", "host is empty"},
		"star in middle":       {"www.*.example.com", "'*'"},
		"star suffix":          {"example.*", "'*'"},
		"star partial label":   {"*foo.example.com", "'*'"},
		"double wildcard":      {"*.*.example.com", "'*'"},
		"bare star":            {"*", "'*'"},
		"star dot":             {"*.", "host is empty"},
		"star tld":             {"*.com", "at least two labels"},
		"star tld dot":         {"*.com.", "at least two labels"},
		"star public suffix":   {"*.co.uk", "public suffix"},
		"star private suffix":  {"*.github.io", "public suffix"},
		"star suffix upper":    {"https://*.CO.UK.:443/x", "public suffix"},
		"star suffix idna":     {"*.公司.cn", "public suffix"},
		"star suffix rule":     {"*.anything.ck", "public suffix"},
		"star ipv4":            {"*.1.2.3.4", "not an IP address"},
		"star ipv6":            {"*.[::1]", "not an IP address"},
		"star in port":         {"example.com:*", "'*'"},
		"userinfo":             {"user@example.com", "userinfo"},
		"userinfo scheme":      {"https://user:pw@example.com", "userinfo"},
		"query":                {"example.com/?a=1", "query"},
		"fragment":             {"example.com/#top", "fragment"},
		"space":                {"example.com /app", "space"},
		"leading space":        {" example.com", "space"},
		"tab":                  {"example.com\t", "control"},
		"nul":                  {"example.com\x00", "control"},
		"del":                  {"example\x7f.com", "control"},
		"invalid utf8":         {"exa\xffmple.com", "UTF-8"},
		"backslash":            {"example.com\\app", "backslash"},
		"long host":            {strings.Repeat("a.", 127) + "b", "longer than 253"},
		"long label":           {strings.Repeat("a", 64) + ".com", "longer than 63"},
		"too long":             {"example.com/" + strings.Repeat("a", 1100), "longer than 1 KiB"},
		"empty label":          {"a..example.com", "empty label"},
		"leading dot":          {".example.com", "empty label"},
		"two trailing dots":    {"example.com..", "empty label"},
		"only dot":             {".", "host is empty"},
		"empty port":           {"example.com:", "port is empty"},
		"port zero":            {"example.com:0", "1 to 65535"},
		"port too big":         {"example.com:65536", "1 to 65535"},
		"port huge":            {"example.com:99999999999999999999", "1 to 65535"},
		"port sign":            {"example.com:+80", "decimal"},
		"port letters":         {"example.com:http", "decimal"},
		"two ports":            {"example.com:80:81", "brackets"},
		"ipv6 unbracketed":     {"2001:db8::1", "brackets"},
		"ipv6 unclosed":        {"[2001:db8::1", "closing bracket"},
		"ipv6 junk after":      {"[::1]x", "after IPv6"},
		"ipv6 invalid":         {"[2001:db8:::1]", "not a valid IPv6"},
		"ipv4 in brackets":     {"[1.2.3.4]", "not a valid IPv6"},
		"ipv6 zone":            {"[fe80::1%25eth0]", "zone"},
		"bad ipv4":             {"256.1.1.1", "number"},
		"short ipv4":           {"127.1", "number"},
		"octal ipv4":           {"010.0.0.1", "number"},
		"hex ipv4":             {"0x7f.0.0.1", "number"},
		"hex last label":       {"foo.0x1", "number"},
		"numeric tld":          {"example.123", "number"},
		"percent host":         {"ex%61mple.com", "not allowed in a domain name"},
		"bracket in host":      {"exa]mple.com", "not allowed in a domain name"},
		"comma host":           {"a,b.com", "not allowed in a domain name"},
		"bad idna":             {"a\u200d.example", "internationalised"},
		"bad punycode":         {"xn--zz.example", "punycode"},
		"ascii punycode":       {"xn--abc-.example", "punycode"},
		"bad percent":          {"example.com/%zz", "'%'"},
		"short percent":        {"example.com/%4", "'%'"},
		"dot segment":          {"example.com/a/../b", "segments"},
		"encoded dot segment":  {"example.com/a/%2E%2e/b", "segments"},
		"trailing dot segment": {"example.com/a/.", "segments"},
		"javascript":           {"javascript:alert(1)", "decimal"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := policy.ParseDomainPattern(tt.in)
			if err == nil {
				t.Fatalf("ParseDomainPattern(%q): got %+v, nil, want error containing %q", tt.in, got, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseDomainPattern(%q): got error %q, want one containing %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestDomainPatternMatch(t *testing.T) {
	tests := map[string]struct {
		pattern string
		referer string
		want    bool
	}{
		// Schemes.
		"no scheme http":           {"example.com", "http://example.com/", true},
		"no scheme https":          {"example.com", "https://example.com/page", true},
		"https only https":         {"https://example.com", "https://example.com/", true},
		"https only not http":      {"https://example.com", "http://example.com/", false},
		"http only not https":      {"http://example.com", "https://example.com/", false},
		"other host":               {"example.com", "https://example.org/", false},
		"suffix is not subdomain":  {"example.com", "https://badexample.com/", false},
		"subdomain needs wildcard": {"example.com", "https://www.example.com/", false},
		// Wildcards.
		"wildcard one level":        {"*.example.com", "https://www.example.com/", true},
		"wildcard deep":             {"*.example.com", "https://a.b.c.example.com/", true},
		"wildcard not apex":         {"*.example.com", "https://example.com/", false},
		"wildcard not suffix":       {"*.example.com", "https://badexample.com/", false},
		"wildcard not other":        {"*.example.com", "https://example.com.evil.com/", false},
		"wildcard scheme":           {"https://*.example.com", "http://www.example.com/", false},
		"wildcard port":             {"*.example.com:8443", "https://api.example.com:8443/", true},
		"wildcard port wrong":       {"*.example.com:8443", "https://api.example.com/", false},
		"wildcard path":             {"*.example.com/app", "https://x.example.com/app/y", true},
		"wildcard idna":             {"*.bücher.example", "https://shop.xn--bcher-kva.example/", true},
		"wildcard underscore label": {"*.example.com", "https://my_host.example.com/", true},
		// Paths.
		"path exact":             {"example.com/app", "https://example.com/app", true},
		"path slash":             {"example.com/app", "https://example.com/app/", true},
		"path deeper":            {"example.com/app", "https://example.com/app/x/y", true},
		"path segment aware":     {"example.com/app", "https://example.com/apple", false},
		"path other":             {"example.com/app", "https://example.com/", false},
		"path query ignored":     {"example.com/app", "https://example.com/app?x=1", true},
		"path in query no":       {"example.com/app", "https://example.com/?/app", false},
		"path in fragment no":    {"example.com/app", "https://example.com/#/app", false},
		"path case sensitive":    {"example.com/app", "https://example.com/App", false},
		"path trailing slash":    {"example.com/app/", "https://example.com/app/x", true},
		"path trailing no bare":  {"example.com/app/", "https://example.com/app", false},
		"path trailing no apple": {"example.com/app/", "https://example.com/apple", false},
		"path prefix plain":      {"example.com/a/b", "https://example.com/a/b/c", true},
		"path prefix partial":    {"example.com/a/b", "https://example.com/a/bc", false},
		"path any":               {"example.com/", "https://example.com/anything", true},
		"path origin header":     {"example.com/app", "https://example.com", false},
		"path encoded":           {"example.com/café", "https://example.com/caf%C3%A9/menu", true},
		// Ports.
		"port any":                  {"example.com", "https://example.com:8443/", true},
		"port explicit":             {"example.com:8080", "http://example.com:8080/", true},
		"port wrong":                {"example.com:8080", "http://example.com:8081/", false},
		"port absent not explicit":  {"example.com:8080", "http://example.com/", false},
		"port default https":        {"https://example.com:443", "https://example.com/", true},
		"port default http":         {"http://example.com:80", "http://example.com/", true},
		"port default written":      {"example.com:443", "https://example.com:443/", true},
		"port default no scheme":    {"example.com:443", "https://example.com/", true},
		"port 443 is not http's":    {"example.com:443", "http://example.com/", false},
		"port 80 is not https's":    {"example.com:80", "https://example.com/", false},
		"port http on 443":          {"example.com:443", "http://example.com:443/", true},
		"port localhost":            {"localhost:3000", "http://localhost:3000/app", true},
		"port localhost wrong":      {"localhost:3000", "http://localhost:3001/app", false},
		"port leading zero referer": {"localhost:3000", "http://localhost:03000/", true},
		// IP literals.
		"ipv4":              {"192.168.1.10", "http://192.168.1.10/", true},
		"ipv4 port":         {"192.168.1.10", "http://192.168.1.10:8080/", true},
		"ipv4 other":        {"192.168.1.10", "http://192.168.1.11/", false},
		"ipv6":              {"[2001:db8::1]", "https://[2001:db8::1]/", true},
		"ipv6 long form":    {"[2001:db8::1]", "https://[2001:0db8:0:0:0:0:0:1]/", true},
		"ipv6 port":         {"[2001:db8::1]:8443", "https://[2001:db8::1]:8443/", true},
		"ipv6 port wrong":   {"[2001:db8::1]:8443", "https://[2001:db8::1]/", false},
		"ipv6 other":        {"[2001:db8::1]", "https://[2001:db8::2]/", false},
		"ipv6 mapped":       {"[::ffff:1.2.3.4]", "http://[::ffff:102:304]/", true},
		"ipv6 mapped not 4": {"1.2.3.4", "http://[::ffff:1.2.3.4]/", false},
		// IDNA and case.
		"idna pattern":        {"bücher.example", "https://xn--bcher-kva.example/", true},
		"idna referer":        {"xn--bcher-kva.example", "https://bücher.example/", true},
		"idna upper":          {"BÜCHER.example", "https://Bücher.Example/", true},
		"idna other":          {"bücher.example", "https://bucher.example/", false},
		"case pattern":        {"EXAMPLE.com", "https://example.com/", true},
		"case referer":        {"example.com", "HTTPS://Example.COM/", true},
		"trailing dot ref":    {"example.com", "https://example.com./", true},
		"trailing dot pat":    {"example.com.", "https://example.com/", true},
		"trailing dot both":   {"*.example.com.", "https://www.example.com./", true},
		"trailing dot scheme": {"https://example.com.:443/", "https://example.com/", true},
		// Userinfo in the Referer.
		"userinfo stripped":         {"example.com", "https://user:pw@example.com/", true},
		"userinfo looks like host":  {"example.com", "https://evil.com@example.com/", true},
		"userinfo spoof":            {"example.com", "https://example.com@evil.com/", false},
		"userinfo spoof evil match": {"evil.com", "https://example.com@evil.com/", true},
		"userinfo spoof wildcard":   {"*.example.com", "https://www.example.com@evil.com/", false},
		"userinfo spoof port":       {"example.com", "https://example.com:443@evil.com/", false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			p, err := policy.ParseDomainPattern(tt.pattern)
			if err != nil {
				t.Fatalf("ParseDomainPattern(%q): %v", tt.pattern, err)
			}
			o, err := policy.ParseOrigin(tt.referer)
			if err != nil {
				t.Fatalf("ParseOrigin(%q): %v", tt.referer, err)
			}
			if got := p.Match(o); got != tt.want {
				t.Errorf("%q.Match(%q): got %v, want %v (origin %+v)", tt.pattern, tt.referer, got, tt.want, o)
			}
		})
	}
}

func TestDomainPatternMatchZero(t *testing.T) {
	// A zero Origin (as a caller might pass when no header was sent) must
	// not match a pattern, even one that allows any scheme, port and path.
	p, err := policy.ParseDomainPattern("example.com")
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Match(policy.Origin{}); got {
		t.Errorf("Match(Origin{}): got %v, want false", got)
	}
	if got := (policy.DomainPattern{}).Match(policy.Origin{}); got {
		t.Errorf("DomainPattern{}.Match(Origin{}): got %v, want false", got)
	}
}

func BenchmarkDomainMatch(b *testing.B) {
	var patterns []policy.DomainPattern
	for _, s := range []string{
		"https://example.org", "localhost:3000", "*.example.net",
		"[2001:db8::1]", "example.com/admin", "*.example.com/app",
	} {
		p, err := policy.ParseDomainPattern(s)
		if err != nil {
			b.Fatal(err)
		}
		patterns = append(patterns, p)
	}
	// The last pattern matches, so every check walks the whole list.
	const referer = "https://www.example.com/app/page?q=1"
	b.ReportAllocs()
	for b.Loop() {
		o, err := policy.ParseOrigin(referer)
		if err != nil {
			b.Fatal(err)
		}
		matched := false
		for _, p := range patterns {
			if p.Match(o) {
				matched = true
				break
			}
		}
		if !matched {
			b.Fatal("no pattern matched")
		}
	}
}

// FuzzParseOrigin checks that ParseOrigin never panics and that whatever it
// accepts is canonical: parsing it again gives the same Origin, and patterns
// built from it (exact, scheme-less, wildcard on the parent) parse and match.
func FuzzParseDomainPattern(f *testing.F) {
	for _, s := range []string{
		"example.com", "example.com/app", "https://example.com", "http://example.com:8080/app/",
		"*.example.com", "localhost:3000", "192.168.1.10", "[2001:db8::1]", "[2001:db8::1]:8443",
		"bücher.example", "*.bücher.example", "EXAMPLE.COM.", "example.com/café/{x}",
		"example.com/a%2Fb", "example.com/%2e%2E", "*.com", "*.", "www.*.example.com",
		"ftp://x.com", "user@example.com", "example.com?q", "example.com#f", "example.com:0",
		"example.com:65536", "example.com:08080", "2001:db8::1", "[fe80::1%25eth0]",
		"127.1", "0x7f.0.0.1", "xn--zz.example", "a\u200d.example", "//example.com",
		"https://*.example.com:8443/x", "*.1.2.3.4", "\x00", "\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := policy.ParseDomainPattern(s)
		if err != nil {
			return
		}
		str := p.String()
		again, err := policy.ParseDomainPattern(str)
		if err != nil || again != p {
			t.Fatalf("ParseDomainPattern(%q) (String of %q): got %+v, %v, want %+v, nil", str, s, again, err, p)
		}
		if got := again.String(); got != str {
			t.Fatalf("String() of re-parsed %q: got %q, want %q", s, got, str)
		}

		scheme := p.Scheme
		if scheme == "" {
			scheme = "https"
		}
		host := p.Host
		if p.Wildcard {
			host = "a." + host
		}
		if len(host) > 253 {
			return
		}
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		if p.Port != "" {
			host += ":" + p.Port
		}
		u := scheme + "://" + host + p.Path
		o, err := policy.ParseOrigin(u)
		if err != nil {
			t.Fatalf("ParseOrigin(%q) (from pattern %q): got error %v, want nil", u, s, err)
		}
		if !p.Match(o) {
			t.Fatalf("%+v.Match(%+v) (from pattern %q): got false, want true", p, o, s)
		}
	})
}
