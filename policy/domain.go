package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
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

// Origin is the caller's page as read from a Referer or Origin header. Its
// fields are canonical, in the same form as DomainPattern's.
type Origin struct {
	// Scheme is "http" or "https".
	Scheme string
	// Host is lower-case ASCII, IDNA names in punycode, without brackets
	// (for IPv6) or a trailing dot.
	Host string
	// Port is "" when absent or the scheme's default, otherwise decimal
	// digits without leading zeros.
	Port string
	// Path is the URL path without query or fragment, "/" when empty. An
	// Origin header has no path, so its Path is always "/".
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
		return DomainPattern{}, fmt.Errorf("%q: %w", s, err)
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

// ParseOrigin parses the value of a Referer or Origin header: an absolute
// http or https URL. It keeps the scheme, host, port and path, drops userinfo,
// query and fragment, and canonicalises the rest as ParseDomainPattern does,
// dropping the scheme's default port.
//
// The input is untrusted: ParseOrigin never panics, rejects anything a
// browser would not send (the opaque origin "null", relative references,
// other schemes, control characters, spaces, invalid UTF-8, more than 8 KiB)
// and, for the lower-case ASCII URLs browsers do send, does not allocate.
// Its errors do not repeat the input.
func ParseOrigin(s string) (Origin, error) {
	var o Origin
	if len(s) > maxOriginLen {
		return o, errOriginTooLong
	}
	if s == "null" {
		return o, errOriginNull
	}
	n := schemeLen(s)
	if n == 0 || n == len(s) || s[n] != ':' {
		return o, errNotAbsolute
	}
	switch {
	case n == 4 && strings.EqualFold(s[:n], "http"):
		o.Scheme = "http"
	case n == 5 && strings.EqualFold(s[:n], "https"):
		o.Scheme = "https"
	default:
		return o, errScheme
	}
	rest, ok := strings.CutPrefix(s[n+1:], "//")
	if !ok {
		return o, errMissingSlashes
	}

	// One pass checks every byte and finds where the authority (up to the
	// first '/', '?' or '#') and the path (up to the first '?' or '#') end.
	authEnd, pathEnd := -1, -1
	nonASCII := false
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' {
			continue // most bytes are these; skip the checks below
		}
		switch {
		case c == ' ':
			return o, errSpace
		case c < ' ' || c == 0x7f:
			return o, errControl
		case c >= utf8.RuneSelf:
			nonASCII = true
		case pathEnd >= 0:
			// Query and fragment: only the checks above apply.
		case c == '/':
			if authEnd < 0 {
				authEnd = i
			}
		case c == '?' || c == '#':
			if authEnd < 0 {
				authEnd = i
			}
			pathEnd = i
		case c == '\\':
			// A backslash is a path separator to browsers but not to
			// most URL parsers, so "http://evil.com\@example.com" means
			// different hosts to different readers. Browsers never send
			// one; refuse it.
			return o, errBackslash
		}
	}
	if nonASCII && !utf8.ValidString(rest) {
		return o, errUTF8
	}
	if pathEnd < 0 {
		pathEnd = len(rest)
	}
	if authEnd < 0 {
		authEnd = len(rest)
	}
	authority, path := rest[:authEnd], rest[authEnd:pathEnd]
	// Userinfo ends at the last '@', as in browsers:
	// "https://example.com@evil.com/" is a page on evil.com.
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		authority = authority[i+1:]
	}

	rawHost, rawPort, hasPort, err := splitHostPort(authority)
	if err != nil {
		return o, err
	}
	if o.Host, err = canonHost(rawHost); err != nil {
		return o, err
	}
	if hasPort {
		if o.Port, err = canonPort(rawPort); err != nil {
			return o, err
		}
		if o.Port == defaultPort(o.Scheme) {
			o.Port = ""
		}
	}
	if path == "" {
		path = "/"
	}
	o.Path = path
	return o, nil
}

// defaultPort returns the port a URL of the given scheme uses when none is
// written.
func defaultPort(scheme string) string {
	switch scheme {
	case "http":
		return "80"
	case "https":
		return "443"
	}
	return ""
}

// schemeLen returns the length of the RFC 3986 scheme at the start of s
// (ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )), or 0 if there is none.
func schemeLen(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return i
		}
	}
	return len(s)
}

// splitHostPort splits an authority without userinfo into its host (with
// brackets, for IPv6) and port. hasPort reports whether a ':' was present,
// so that "example.com:" is an empty port rather than no port.
func splitHostPort(a string) (host, port string, hasPort bool, err error) {
	if a == "" {
		return "", "", false, errEmptyHost
	}
	if a[0] == '[' {
		end := strings.IndexByte(a, ']')
		if end < 0 {
			return "", "", false, errUnclosedIPv6
		}
		host, rest := a[:end+1], a[end+1:]
		if rest == "" {
			return host, "", false, nil
		}
		if rest[0] != ':' {
			return "", "", false, errAfterIPv6
		}
		return host, rest[1:], true, nil
	}
	host, port, hasPort = strings.Cut(a, ":")
	if strings.IndexByte(port, ':') >= 0 {
		return "", "", false, errIPv6Brackets
	}
	return host, port, hasPort, nil
}

// canonPort returns p without leading zeros after checking it is a port
// number from 1 to 65535. It returns a substring of p, so it does not
// allocate.
func canonPort(p string) (string, error) {
	if p == "" {
		return "", errEmptyPort
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return "", errPortDigits
		}
	}
	p = strings.TrimLeft(p, "0")
	if p == "" || len(p) > 5 {
		return "", errPortRange
	}
	n := 0
	for i := 0; i < len(p); i++ {
		n = n*10 + int(p[i]-'0')
	}
	if n > 65535 {
		return "", errPortRange
	}
	return p, nil
}

// isIPLiteral reports whether a canonical host is an IP address rather than
// a domain name. A canonical domain name never ends in a numeric label, and
// never contains a ':'.
func isIPLiteral(host string) bool {
	if strings.IndexByte(host, ':') >= 0 {
		return true
	}
	last := host[strings.LastIndexByte(host, '.')+1:]
	return last != "" && last[0] >= '0' && last[0] <= '9' && allDigits(last)
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// canonHost returns the canonical form of a host as written in a URL
// authority: an IPv6 literal in brackets (returned without them), a
// dotted-decimal IPv4 address, or a domain name. Canonical hosts map to
// themselves, which is what lets a pattern built from a parsed Origin match
// it. Hosts that are already canonical come back as a substring of h, without
// allocating.
func canonHost(h string) (string, error) {
	if h == "" {
		return "", errEmptyHost
	}
	if h[0] == '[' {
		return canonIPv6(h)
	}
	if !isASCII(h) {
		if len(h) > maxRawHostLen {
			return "", errHostTooLong
		}
		// Lookup is the profile RFC 5891 recommends for lookups: it maps
		// case and width, normalises, and checks the Bidi and joiner rules.
		a, err := idna.Lookup.ToASCII(h)
		if err != nil {
			return "", fmt.Errorf("host is not a valid internationalised domain name: %w", err)
		}
		h = a
	}
	h = strings.TrimSuffix(h, ".")
	if h == "" {
		return "", errEmptyHost
	}
	if len(h) > maxHostLen {
		return "", errHostTooLong
	}
	// ASCII names are checked by hand rather than by IDNA, which would
	// refuse names browsers accept, such as "r3---sn-abc.googlevideo.com"
	// or "my_host.example.com".
	upper, punycode := false, false
	start := 0
	for i := 0; i <= len(h); i++ {
		if i == len(h) || h[i] == '.' {
			switch n := i - start; {
			case n == 0:
				return "", errEmptyLabel
			case n > maxLabelLen:
				return "", errLabelTooLong
			case n >= 4 && strings.EqualFold(h[start:start+4], "xn--"):
				punycode = true
			}
			start = i + 1
			continue
		}
		switch c := h[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		case 'A' <= c && c <= 'Z':
			upper = true
		default:
			return "", errHostChar
		}
	}
	if upper {
		h = strings.ToLower(h)
	}
	// Like browsers (the WHATWG "ends in a number" rule), a name whose last
	// label is numeric must be an IPv4 address; "127.1" and "0x7f.0.0.1"
	// would otherwise mean one host to a browser and another here.
	last := h[strings.LastIndexByte(h, '.')+1:]
	if allDigits(last) || strings.HasPrefix(last, "0x") && isHex(last[2:]) {
		a, err := netip.ParseAddr(h)
		if err != nil || !a.Is4() {
			return "", errNumericHost
		}
		return h, nil
	}
	if punycode {
		if err := checkPunycode(h); err != nil {
			return "", err
		}
	}
	return h, nil
}

// checkPunycode checks that every "xn--" label of a lower-case ASCII name
// decodes to a valid IDNA label and encodes back to itself, so that two
// spellings of one name cannot both be canonical.
func checkPunycode(h string) error {
	for label := range strings.SplitSeq(h, ".") {
		if !strings.HasPrefix(label, "xn--") {
			continue
		}
		a, err := idna.Lookup.ToASCII(label)
		if err != nil || a != label {
			return errPunycode
		}
	}
	return nil
}

// canonIPv6 parses "[addr]" and returns the address in RFC 5952 form
// without brackets. Already canonical addresses are returned as a substring.
func canonIPv6(h string) (string, error) {
	if len(h) < 2 || h[len(h)-1] != ']' {
		return "", errUnclosedIPv6
	}
	inner := h[1 : len(h)-1]
	a, err := netip.ParseAddr(inner)
	if err != nil || !a.Is6() {
		return "", errIPv6
	}
	if a.Zone() != "" {
		return "", errIPv6Zone
	}
	var buf [64]byte
	b := a.AppendTo(buf[:0])
	if string(b) == inner {
		return inner, nil
	}
	return string(b), nil
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

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
