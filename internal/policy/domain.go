package policy

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/publicsuffix"
)

// Limits on what the parsers look at. A Referer is bounded so that a hostile
// header cannot make every check scan megabytes; 8 KiB is what common proxies
// allow for a single header line. A pattern is typed by a person, so 1 KiB is
// generous.
const (
	maxOriginLen  = 8 << 10
	maxPatternLen = 1 << 10
	maxHostLen    = 253 // RFC 1035, without the root label's dot
	maxLabelLen   = 63
	// maxRawHostLen bounds a host before IDNA mapping, which costs far more
	// per byte than the rest of parsing. It leaves room for 4-byte UTF-8.
	maxRawHostLen = 4 * maxHostLen
)

// DomainPattern is one entry of a token's allowed domains, parsed and
// canonicalised on write so that Match only compares strings.
//
// A DomainPattern built by hand must hold canonical values (as
// ParseDomainPattern produces them); Match does not canonicalise.
type DomainPattern struct {
	// Scheme is "http" or "https"; "" matches both.
	Scheme string
	// Wildcard makes "*.example.com" match any subdomain of Host, at any
	// depth, but not Host itself.
	Wildcard bool
	// Host is lower-case ASCII (IDNA names in punycode) without a trailing
	// dot, or an IPv4 or IPv6 literal (IPv6 without brackets).
	Host string
	// Port is "" for any port, otherwise decimal digits 1..65535 without
	// leading zeros.
	Port string
	// Path is "" for any path, otherwise a prefix starting with "/". A prefix
	// ending in "/" matches as a plain prefix; any other matches whole
	// segments only, so "/app" matches "/app/x" but not "/apple".
	Path string
}

// parseError is a fixed error message. Returning a constant of a string type
// as an error does not allocate, which matters because ParseOrigin rejects
// hostile or opaque ("null") headers on the hot path.
type parseError string

// Error returns the message.
func (e parseError) Error() string { return string(e) }

// Errors shared by both parsers. Pattern errors are wrapped with the pattern
// itself; origin errors are not, since the value is untrusted and up to 8 KiB.
const (
	errEmptyHost      parseError = "host is empty"
	errHostTooLong    parseError = "host is longer than 253 bytes"
	errEmptyLabel     parseError = "host has an empty label"
	errLabelTooLong   parseError = "host has a label longer than 63 bytes"
	errHostChar       parseError = "host contains a character not allowed in a domain name"
	errNumericHost    parseError = "host ends in a number but is not a dotted-decimal IPv4 address"
	errPunycode       parseError = "host has an invalid or non-canonical punycode (xn--) label"
	errIDNA           parseError = "host is not a valid internationalised domain name"
	errIPv6           parseError = "host in brackets is not a valid IPv6 address"
	errIPv6Zone       parseError = "IPv6 host must not have a zone"
	errIPv6Brackets   parseError = "IPv6 host must be enclosed in brackets"
	errUnclosedIPv6   parseError = "IPv6 host has no closing bracket"
	errAfterIPv6      parseError = "unexpected characters after IPv6 host"
	errEmptyPort      parseError = "port is empty"
	errPortDigits     parseError = "port must be a decimal number"
	errPortRange      parseError = "port must be from 1 to 65535"
	errScheme         parseError = "scheme must be http or https"
	errControl        parseError = "contains a control character"
	errSpace          parseError = "contains a space"
	errUTF8           parseError = "is not valid UTF-8"
	errBackslash      parseError = "contains a backslash"
	errOriginTooLong  parseError = "is longer than 8 KiB"
	errOriginNull     parseError = "is the opaque origin \"null\""
	errNotAbsolute    parseError = "is not an absolute http or https URL"
	errMissingSlashes parseError = "scheme must be followed by \"//\" and a host"
	errPublicSuffix   parseError = "wildcard over a public suffix would allow every site registered under it; write your own domain, as in \"*.example.co.uk\""
)

// publicSuffix reports whether host is on the Public Suffix List, such as
// "co.uk" or "github.io": a name under which anyone may register their own.
// Private entries count as much as ICANN ones, since each "*.github.io" site
// has its own owner. A TLD the list does not know is its own suffix, but a
// wildcard's host always has two labels or more.
func publicSuffix(host string) bool {
	s, _ := publicsuffix.PublicSuffix(host)
	return s == host
}

// ParseDomainPattern parses one allowed-domain entry, such as "example.com",
// "https://example.com:8443/app/", "*.example.com", "localhost:3000",
// "192.168.1.10" or "[2001:db8::1]:8443", into its canonical form.
//
// Hosts are lower-cased, IDNA names converted to punycode and a trailing dot
// removed. In the path, characters a browser would percent-encode (non-ASCII,
// '"', '<', '>', '`', '{', '}') are percent-encoded so the pattern compares
// equal to what browsers send. The error says what is wrong with s; the
// caller adds the field name.
func ParseDomainPattern(s string) (DomainPattern, error) {
	p, err := parseDomainPattern(s)
	if err != nil {
		return DomainPattern{}, fmt.Errorf("The domain %q is not valid (%w).", s, err)
	}
	return p, nil
}

func parseDomainPattern(s string) (DomainPattern, error) {
	var p DomainPattern
	if s == "" {
		return p, parseError("is empty")
	}
	if len(s) > maxPatternLen {
		return p, parseError("is longer than 1 KiB")
	}
	if !utf8.ValidString(s) {
		return p, errUTF8
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == ' ':
			return p, errSpace
		case c < ' ' || c == 0x7f:
			return p, errControl
		case c == '?':
			return p, parseError("must not contain a query string")
		case c == '#':
			return p, parseError("must not contain a fragment")
		case c == '\\':
			return p, errBackslash
		}
	}

	rest := s
	if n := schemeLen(s); n > 0 && strings.HasPrefix(s[n:], "://") {
		switch strings.ToLower(s[:n]) {
		case "http":
			p.Scheme = "http"
		case "https":
			p.Scheme = "https"
		default:
			return p, errScheme
		}
		rest = s[n+3:]
	} else if strings.HasPrefix(s, "//") {
		return p, parseError("has \"//\" but no scheme; write the host alone to allow http and https")
	}

	authority, path := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		authority, path = rest[:i], rest[i:]
	}
	if strings.IndexByte(authority, '@') >= 0 {
		return p, parseError("must not contain userinfo (user@)")
	}
	if h, ok := strings.CutPrefix(authority, "*."); ok {
		p.Wildcard = true
		authority = h
	}
	if strings.IndexByte(authority, '*') >= 0 {
		return p, parseError("may use '*' only as a whole leading label, as in \"*.example.com\"")
	}

	rawHost, rawPort, hasPort, err := splitHostPort(authority)
	if err != nil {
		return p, err
	}
	if p.Host, err = canonHost(rawHost); err != nil {
		return p, err
	}
	if p.Wildcard {
		if isIPLiteral(p.Host) {
			return p, parseError("wildcard needs a domain name, not an IP address")
		}
		if strings.IndexByte(p.Host, '.') < 0 {
			return p, parseError("wildcard must cover at least two labels, as in \"*.example.com\"")
		}
		if publicSuffix(p.Host) {
			return p, errPublicSuffix
		}
	}
	if hasPort {
		if p.Port, err = canonPort(rawPort); err != nil {
			return p, err
		}
	}
	if p.Path, err = canonPatternPath(path); err != nil {
		return p, err
	}
	return p, nil
}

// String returns the canonical form of p, which ParseDomainPattern parses
// back to p.
func (p DomainPattern) String() string {
	s := p.Host
	if strings.IndexByte(s, ':') >= 0 {
		s = "[" + s + "]"
	}
	if p.Wildcard {
		s = "*." + s
	}
	if p.Scheme != "" {
		s = p.Scheme + "://" + s
	}
	if p.Port != "" {
		s += ":" + p.Port
	}
	return s + p.Path
}

// Match reports whether o is allowed by p: the scheme (if p has one), the
// host (exactly, or as a strict subdomain for a wildcard), the port (if p has
// one; an absent port is the scheme's default) and the path prefix (if p has
// one) must all agree. It does not allocate.
func (p DomainPattern) Match(o Origin) bool {
	// A zero Origin (no header) never matches, even a hand-built zero
	// pattern.
	if o.Host == "" || p.Scheme != "" && p.Scheme != o.Scheme {
		return false
	}
	if p.Wildcard {
		// The byte before the suffix must be a dot, so that "*.example.com"
		// does not match "badexample.com".
		n := len(o.Host) - len(p.Host)
		if n < 2 || o.Host[n-1] != '.' || o.Host[n:] != p.Host {
			return false
		}
	} else if o.Host != p.Host {
		return false
	}
	if p.Port != "" {
		port := o.Port
		if port == "" {
			port = defaultPort(o.Scheme)
		}
		if port != p.Port {
			return false
		}
	}
	return matchPath(p.Path, o.Path)
}

// matchPath applies the path rule of DomainPattern.Path.
func matchPath(prefix, path string) bool {
	if prefix == "" {
		return true
	}
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || prefix[len(prefix)-1] == '/' || path[len(prefix)] == '/'
}

// canonPatternPath checks a pattern's path and returns it canonical: "" for
// any path, otherwise with the characters browsers percent-encode in a path
// percent-encoded (WHATWG's path percent-encode set).
func canonPatternPath(p string) (string, error) {
	if p == "" || p == "/" {
		return "", nil
	}
	encode := false
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '%':
			if i+2 >= len(p) || !isHex(p[i+1:i+3]) {
				return "", parseError("path has a '%' not followed by two hex digits")
			}
		case pathEscaped(c):
			encode = true
		}
	}
	if encode {
		const hex = "0123456789ABCDEF"
		var b strings.Builder
		b.Grow(len(p) + 16)
		for i := 0; i < len(p); i++ {
			if c := p[i]; pathEscaped(c) {
				b.WriteByte('%')
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&15])
			} else {
				b.WriteByte(c)
			}
		}
		p = b.String()
	}
	// Browsers resolve "." and ".." before sending a Referer, so a pattern
	// containing them could never match.
	for seg := range strings.SplitSeq(p[1:], "/") {
		switch strings.ToLower(seg) {
		case ".", "..", "%2e", ".%2e", "%2e.", "%2e%2e":
			return "", parseError("path must not contain \".\" or \"..\" segments")
		}
	}
	return p, nil
}

// pathEscaped reports whether a browser percent-encodes c in a URL path.
// Controls, space, '#' and '?' are refused before this is asked.
func pathEscaped(c byte) bool {
	switch c {
	case '"', '<', '>', '`', '{', '}':
		return true
	}
	return c >= utf8.RuneSelf
}
