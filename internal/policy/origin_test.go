package policy_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/policy"
)

func TestParseOrigin(t *testing.T) {
	tests := map[string]struct {
		in   string
		want policy.Origin
	}{
		"origin header":        {"https://example.com", policy.Origin{Scheme: "https", Host: "example.com", Path: "/"}},
		"referer":              {"https://example.com/app/page?q=1#frag", policy.Origin{Scheme: "https", Host: "example.com", Path: "/app/page"}},
		"http":                 {"http://example.com/", policy.Origin{Scheme: "http", Host: "example.com", Path: "/"}},
		"query no path":        {"https://example.com?q=/app", policy.Origin{Scheme: "https", Host: "example.com", Path: "/"}},
		"fragment no path":     {"https://example.com#/app", policy.Origin{Scheme: "https", Host: "example.com", Path: "/"}},
		"question in fragment": {"https://example.com/a#b?c", policy.Origin{Scheme: "https", Host: "example.com", Path: "/a"}},
		"explicit port":        {"https://example.com:8443/x", policy.Origin{Scheme: "https", Host: "example.com", Port: "8443", Path: "/x"}},
		"https default port":   {"https://example.com:443/", policy.Origin{Scheme: "https", Host: "example.com", Path: "/"}},
		"http default port":    {"http://example.com:80", policy.Origin{Scheme: "http", Host: "example.com", Path: "/"}},
		"http on 443":          {"http://example.com:443/", policy.Origin{Scheme: "http", Host: "example.com", Port: "443", Path: "/"}},
		"port leading zeros":   {"http://example.com:0080/", policy.Origin{Scheme: "http", Host: "example.com", Path: "/"}},
		"userinfo":             {"https://user:pw@example.com/", policy.Origin{Scheme: "https", Host: "example.com", Path: "/"}},
		"userinfo host-like":   {"https://evil.com@example.com/", policy.Origin{Scheme: "https", Host: "example.com", Path: "/"}},
		"userinfo spoof":       {"https://example.com@evil.com/", policy.Origin{Scheme: "https", Host: "evil.com", Path: "/"}},
		"userinfo two ats":     {"https://a@example.com@evil.com/", policy.Origin{Scheme: "https", Host: "evil.com", Path: "/"}},
		"at in path":           {"https://example.com/@evil.com", policy.Origin{Scheme: "https", Host: "example.com", Path: "/@evil.com"}},
		"upper case":           {"HTTPS://EXAMPLE.COM/App", policy.Origin{Scheme: "https", Host: "example.com", Path: "/App"}},
		"trailing dot":         {"https://example.com./", policy.Origin{Scheme: "https", Host: "example.com", Path: "/"}},
		"idna":                 {"https://bücher.example/", policy.Origin{Scheme: "https", Host: "xn--bcher-kva.example", Path: "/"}},
		"punycode":             {"https://xn--bcher-kva.example/", policy.Origin{Scheme: "https", Host: "xn--bcher-kva.example", Path: "/"}},
		"ipv4":                 {"http://192.168.1.10:3000/", policy.Origin{Scheme: "http", Host: "192.168.1.10", Port: "3000", Path: "/"}},
		"ipv6":                 {"http://[2001:db8::1]/", policy.Origin{Scheme: "http", Host: "2001:db8::1", Path: "/"}},
		"ipv6 port":            {"https://[2001:DB8::0:1]:8443/a", policy.Origin{Scheme: "https", Host: "2001:db8::1", Port: "8443", Path: "/a"}},
		"localhost":            {"http://localhost:3000", policy.Origin{Scheme: "http", Host: "localhost", Port: "3000", Path: "/"}},
		"non-ascii path":       {"https://example.com/café", policy.Origin{Scheme: "https", Host: "example.com", Path: "/café"}},
		"double slash path":    {"https://example.com//a", policy.Origin{Scheme: "https", Host: "example.com", Path: "//a"}},
		"backslash in query":   {"https://example.com/a?x=\\", policy.Origin{Scheme: "https", Host: "example.com", Path: "/a"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := policy.ParseOrigin(tt.in)
			if err != nil {
				t.Fatalf("ParseOrigin(%q): got error %v, want nil", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseOrigin(%q): got %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseOriginErrors(t *testing.T) {
	tests := map[string]struct {
		in   string
		want string // a substring of the error
	}{
		"empty":                {"", "absolute"},
		"null":                 {"null", "null"},
		"relative":             {"/app/page", "absolute"},
		"scheme-relative":      {"//example.com/", "absolute"},
		"bare host":            {"example.com", "absolute"},
		"host and port":        {"example.com:443", "scheme"},
		"ftp":                  {"ftp://example.com/", "scheme"},
		"file":                 {"file:///etc/passwd", "scheme"},
		"javascript":           {"javascript:alert(1)", "scheme"},
		"data":                 {"data:text/html,hi", "scheme"},
		"no slashes":           {"https:example.com", "//"},
		"one slash":            {"https:/example.com", "//"},
		"backslashes":          {"https:\\\\example.com", "//"},
		"backslash host":       {"https://evil.com\\@example.com/", "backslash"},
		"backslash path":       {"https://example.com/a\\b", "backslash"},
		"no host":              {"https://", "host is empty"},
		"no host path":         {"https:///example.com", "host is empty"},
		"only userinfo":        {"https://user@/", "host is empty"},
		"only port":            {"https://:443/", "host is empty"},
		"nul":                  {"https://example.com\x00.evil.com/", "control"},
		"nul in path":          {"https://example.com/\x00", "control"},
		"newline":              {"https://example.com/\r\nX-Injected: 1", "control"},
		"space":                {"https://example .com/", "space"},
		"invalid utf8":         {"https://example.com/\xff", "UTF-8"},
		"invalid utf8 host":    {"https://ex\xc3ample.com/", "UTF-8"},
		"too long":             {"https://example.com/" + strings.Repeat("a", 8192), "8 KiB"},
		"empty port":           {"https://example.com:/", "port is empty"},
		"port zero":            {"https://example.com:0/", "1 to 65535"},
		"port too big":         {"https://example.com:70000/", "1 to 65535"},
		"port letters":         {"https://example.com:abc/", "decimal"},
		"ipv6 unbracketed":     {"http://2001:db8::1/", "brackets"},
		"ipv6 unclosed":        {"http://[2001:db8::1/", "closing bracket"},
		"ipv6 bad":             {"http://[::g]/", "IPv6"},
		"ipv6 zone":            {"http://[fe80::1%25en0]/", "zone"},
		"wildcard host":        {"https://*.example.com/", "not allowed in a domain name"},
		"percent host":         {"https://ex%61mple.com/", "not allowed in a domain name"},
		"empty label":          {"https://a..b/", "empty label"},
		"leading dot":          {"https://.example.com/", "empty label"},
		"two trailing dots":    {"https://example.com../", "empty label"},
		"long host":            {"https://" + strings.Repeat("a.", 127) + "b/", "longer than 253"},
		"long label":           {"https://" + strings.Repeat("a", 64) + ".com/", "longer than 63"},
		"short ipv4":           {"http://127.1/", "number"},
		"hex ipv4":             {"http://0x7f.0.0.1/", "number"},
		"bad punycode":         {"https://xn--zz.example/", "punycode"},
		"bad idna":             {"https://a\u200d.example/", "internationalised"},
		"idna to slash":        {"https://a\uff0fb.example/", "internationalised"},
		"garbage":              {"\x01\x02\x03", "absolute"},
		"control after scheme": {"https://\x01", "control"},
		"control in fragment":  {"https://example.com/#\x7f", "control"},
		"bad utf8 in query":    {"https://example.com/?\xc3", "UTF-8"},
		"only scheme":          {"https:", "//"},
		"scheme like number":   {"1http://example.com", "absolute"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := policy.ParseOrigin(tt.in)
			if err == nil {
				t.Fatalf("ParseOrigin(%q): got %+v, nil, want error containing %q", tt.in, got, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseOrigin(%q): got error %q, want one containing %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestParseOriginAllocs(t *testing.T) {
	for _, in := range []string{
		"https://example.com",
		"https://www.example.com:8443/app/page?q=1#top",
		"http://[2001:db8::1]:8080/",
		"null",
		"ftp://example.com/",
	} {
		got := testing.AllocsPerRun(100, func() { _, _ = policy.ParseOrigin(in) })
		if got != 0 {
			t.Errorf("ParseOrigin(%q) allocations: got %v, want 0", in, got)
		}
	}
}

func BenchmarkParseOrigin(b *testing.B) {
	benchmarks := map[string]string{
		"origin":  "https://app.example.com",
		"referer": "https://www.example.com:8443/dashboard/reports?range=7d&tab=usage#chart",
		"ipv6":    "http://[2001:db8::1]:8080/",
		"upper":   "HTTPS://WWW.Example.COM/app",
		"idna":    "https://bücher.example/",
		"null":    "null",
	}
	for name, in := range benchmarks {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := policy.ParseOrigin(in); err != nil && name != "null" {
					b.Fatal(err)
				}
			}
		})
	}
}

func FuzzParseOrigin(f *testing.F) {
	for _, s := range []string{
		"https://example.com",
		"https://www.example.com/app/page?q=1#frag",
		"http://localhost:3000/",
		"https://example.com:443/",
		"http://example.com:0080/x",
		"https://user:pw@example.com/",
		"https://example.com@evil.com/",
		"https://evil.com\\@example.com/",
		"HTTPS://Example.COM./",
		"https://bücher.example/",
		"https://xn--bcher-kva.example/",
		"https://xn--zz.example/",
		"http://[2001:db8::1]:8443/a",
		"http://[::ffff:1.2.3.4]/",
		"http://[fe80::1%25en0]/",
		"http://127.1/",
		"http://0x7f.0.0.1/",
		"null",
		"",
		"/relative",
		"//example.com",
		"ftp://example.com/",
		"javascript:alert(1)",
		"https://",
		"https://:80",
		"https://example.com:99999/",
		"https://a..b/",
		"https://example.com/\x00",
		"https://\xff\xfe/",
		"https://a\u200d.example/",
		"https://ｅｘａｍｐｌｅ.com/",
		"https://bücher。example。/",
		"https://r3---sn-abc.googlevideo.com/videoplayback",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := policy.ParseOrigin(s)
		if err != nil {
			return
		}
		if o.Scheme != "http" && o.Scheme != "https" {
			t.Fatalf("ParseOrigin(%q).Scheme: got %q, want http or https", s, o.Scheme)
		}
		if o.Host == "" || o.Host != strings.ToLower(o.Host) || strings.HasSuffix(o.Host, ".") || strings.ContainsFunc(o.Host, func(r rune) bool { return r >= 0x80 }) {
			t.Fatalf("ParseOrigin(%q).Host: got %q, want non-empty lower-case ASCII without trailing dot", s, o.Host)
		}
		if !strings.HasPrefix(o.Path, "/") || strings.ContainsAny(o.Path, "?#") {
			t.Fatalf("ParseOrigin(%q).Path: got %q, want a path starting with /", s, o.Path)
		}
		if o.Port == "443" && o.Scheme == "https" || o.Port == "80" && o.Scheme == "http" || strings.HasPrefix(o.Port, "0") {
			t.Fatalf("ParseOrigin(%q).Port: got %q, want no default port or leading zero", s, o.Port)
		}

		host := o.Host
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		if o.Port != "" {
			host += ":" + o.Port
		}
		canon := o.Scheme + "://" + host + o.Path
		again, err := policy.ParseOrigin(canon)
		if err != nil || again != o {
			t.Fatalf("ParseOrigin(%q) (from %q): got %+v, %v, want %+v, nil", canon, s, again, err, o)
		}

		isIPHost := func(h string) bool { _, err := netip.ParseAddr(h); return err == nil }
		patterns := []string{o.Scheme + "://" + host, host}
		if i := strings.IndexByte(o.Host, '.'); i >= 0 && !isIPHost(o.Host) && strings.Contains(o.Host[i+1:], ".") {
			patterns = append(patterns, "*."+o.Host[i+1:])
		}
		for _, ps := range patterns {
			p, err := policy.ParseDomainPattern(ps)
			if err != nil {
				t.Fatalf("ParseDomainPattern(%q) (from %q): got error %v, want nil", ps, s, err)
			}
			if !p.Match(o) {
				t.Fatalf("%+v.Match(%+v) (from %q): got false, want true", p, o, s)
			}
		}
	})
}

// FuzzParseDomainPattern checks that ParseDomainPattern never panics, that
// String round-trips, and that a URL built from an accepted pattern parses
// as an Origin the pattern matches.
