package policy

import (
	"net/netip"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

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
			// idna's own text speaks of Go's rules, not of the input.
			return "", errIDNA
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
