package extauthz

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// errPath reports a path Tollgate will not guess at: the upstream could
// read it as a different path than the one the route rules would match.
var errPath = errors.New("extauthz: ambiguous or malformed path")

// canonicalPath returns the one form of path that route rules match and
// that Envoy configured as docs/deploy.md says (normalize_path,
// merge_slashes, escaped slashes rejected) forwards upstream:
//
//   - percent-escapes of unreserved characters (A-Z a-z 0-9 - . _ ~) are
//     decoded, every other escape is kept with upper-case hex digits;
//   - runs of slashes become one slash;
//   - "." and ".." segments are resolved.
//
// It refuses (errPath) what an upstream might read differently: a path not
// starting with '/', an escaped '/' or '\', a raw '\', NUL or another
// control character (raw or escaped), '#', an invalid escape, invalid
// UTF-8, a ".." above the root, and a dot segment spelled with escapes
// ("%2e%2e"), which some servers resolve and others do not. Letter case is
// kept: matching is case-sensitive, as Envoy's routes are by default.
//
// A path that is already canonical is returned as it is, without
// allocating.
func canonicalPath(path string) (string, error) {
	if path == "" || path[0] != '/' {
		return "", errPath
	}
	clean := true
	for i := 0; i < len(path); i++ {
		c := path[i]
		switch {
		case c < 0x20 || c == 0x7f || c == '\\' || c == '#':
			return "", errPath
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRuneInString(path[i:])
			if r == utf8.RuneError && size <= 1 {
				return "", errPath
			}
			i += size - 1
		case c == '%':
			clean = false
		case c == '/' && i+1 < len(path) && (path[i+1] == '/' || path[i+1] == '.'):
			clean = false
		}
	}
	if clean {
		return path, nil
	}
	return rebuildPath(path)
}

// rebuildPath is canonicalPath's slow path, for a path that holds an
// escape, a doubled slash or a segment starting with a dot. Its bytes are
// already known to be free of control characters and invalid UTF-8.
func rebuildPath(path string) (string, error) {
	out := make([]string, 0, strings.Count(path, "/"))
	var seg strings.Builder
	for rest := path[1:]; ; {
		raw, tail, more := strings.Cut(rest, "/")
		seg.Reset()
		escapedDot := false
		for i := 0; i < len(raw); i++ {
			c := raw[i]
			if c != '%' {
				seg.WriteByte(c)
				continue
			}
			if i+2 >= len(raw) {
				return "", errPath
			}
			hi, ok1 := unhex(raw[i+1])
			lo, ok2 := unhex(raw[i+2])
			if !ok1 || !ok2 {
				return "", errPath
			}
			b := hi<<4 | lo
			switch {
			case b == '/' || b == '\\' || b < 0x20 || b == 0x7f:
				return "", errPath
			case unreserved(b):
				seg.WriteByte(b)
				escapedDot = escapedDot || b == '.'
			default:
				seg.WriteByte('%')
				seg.WriteByte(upperHex[b>>4])
				seg.WriteByte(upperHex[b&15])
			}
			i += 2
		}
		switch s := seg.String(); {
		case (s == "." || s == "..") && escapedDot:
			return "", errPath
		case s == "..":
			if len(out) == 0 {
				return "", errPath
			}
			out = out[:len(out)-1]
		case s == "." || s == "":
			// "." and the empty segment of a doubled slash vanish; a
			// final empty segment is the trailing slash, kept below.
		default:
			out = append(out, s)
		}
		if !more {
			trailing := raw == "" || raw == "." || raw == ".."
			p := "/" + strings.Join(out, "/")
			if trailing && len(out) > 0 {
				p += "/"
			}
			return p, nil
		}
		rest = tail
	}
}

const upperHex = "0123456789ABCDEF"

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// unreserved reports RFC 3986's unreserved characters, whose escapes mean
// the same as the characters themselves.
func unreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}
