// Package signing is Tollgate's request-signing scheme, TOLLGATE-HMAC-SHA256,
// modelled on AWS Signature Version 4. Tollgate uses it to verify requests;
// customers use it (or docs/signing.md and its openssl example) to sign
// them. It depends on the standard library only. IEX Cloud's scheme,
// IEX-HMAC-SHA256, is in iex.go, so that IEX clients' requests verify too.
//
// A signed request carries:
//
//	x-tollgate-date: 20261122T063000Z
//	Authorization: TOLLGATE-HMAC-SHA256 Credential=<token id or publishable token>/20261122/tollgate_request,
//	    SignedHeaders=host;x-tollgate-date, Signature=<64 hex digits>
//
// and optionally x-tollgate-content-sha256 (the body's SHA-256 in hex, or
// UNSIGNED-PAYLOAD). The signature is
//
//	HMAC-SHA256(key, StringToSign), key = HMAC-SHA256(HMAC-SHA256("TOLLGATE"+secret, day), "tollgate_request")
//
// over a canonical request: method, path, sorted query, the signed headers
// and the payload hash, one per line.
package signing

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Names fixed by the scheme.
const (
	Algorithm       = "TOLLGATE-HMAC-SHA256"
	DateHeader      = "x-tollgate-date"
	ContentHeader   = "x-tollgate-content-sha256"
	Service         = "tollgate_request"
	UnsignedPayload = "UNSIGNED-PAYLOAD"
	// DateFormat is x-tollgate-date's format (ISO 8601 basic, UTC).
	DateFormat = "20060102T150405Z"
	dayFormat  = "20060102"
	// maxHeaderLen bounds what the parser reads of an Authorization header.
	maxHeaderLen = 4 << 10
)

// Authorization is a parsed TOLLGATE-HMAC-SHA256 Authorization header.
type Authorization struct {
	// Credential names the signer: a token id or a publishable token.
	Credential string
	// Day is the credential scope's date, YYYYMMDD.
	Day string
	// SignedHeaders are lower-case, sorted and unique.
	SignedHeaders []string
	// Signature is the 32-byte HMAC.
	Signature [sha256.Size]byte
}

// IsSigned reports whether an Authorization header value uses this scheme.
func IsSigned(authorization string) bool {
	return len(authorization) > len(Algorithm) && strings.EqualFold(authorization[:len(Algorithm)], Algorithm) &&
		authorization[len(Algorithm)] == ' '
}

// ParseAuthorization parses the header's value. Its errors say what is
// wrong, for a developer fixing a client; they never quote the signature.
func ParseAuthorization(v string) (Authorization, error) {
	var a Authorization
	if len(v) > maxHeaderLen {
		return a, errors.New("the Authorization header is too long")
	}
	if !IsSigned(v) {
		return a, fmt.Errorf("the Authorization header must start with %q", Algorithm+" ")
	}
	var cred, signed, sig string
	var haveCred, haveSigned, haveSig bool
	for part := range strings.SplitSeq(v[len(Algorithm)+1:], ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return a, errors.New("the Authorization header has a part without '=': want Credential=…, SignedHeaders=…, Signature=…")
		}
		var dst *string
		var seen *bool
		switch k {
		case "Credential":
			dst, seen = &cred, &haveCred
		case "SignedHeaders":
			dst, seen = &signed, &haveSigned
		case "Signature":
			dst, seen = &sig, &haveSig
		default:
			if isName(k) {
				return a, fmt.Errorf("the Authorization header has an unknown part %q", k)
			}
			// Quote nothing that could be part of a signature.
			return a, errors.New("the Authorization header has an unknown part: want Credential=…, SignedHeaders=…, Signature=…")
		}
		if *seen {
			return a, fmt.Errorf("the Authorization header repeats %s", k)
		}
		*dst, *seen = val, true
	}
	if !haveCred || !haveSigned || !haveSig {
		return a, errors.New("the Authorization header needs Credential, SignedHeaders and Signature")
	}
	scope := strings.Split(cred, "/")
	if len(scope) != 3 || scope[0] == "" || scope[2] != Service {
		return a, fmt.Errorf("Credential must be <token id or publishable token>/<YYYYMMDD>/%s", Service)
	}
	if _, err := time.Parse(dayFormat, scope[1]); err != nil || len(scope[1]) != len(dayFormat) {
		return a, errors.New("the Credential's date must be YYYYMMDD")
	}
	a.Credential, a.Day = scope[0], scope[1]
	if signed == "" {
		return a, errors.New("SignedHeaders is empty")
	}
	a.SignedHeaders = strings.Split(signed, ";")
	for i, h := range a.SignedHeaders {
		if h == "" || h != strings.ToLower(h) || strings.ContainsAny(h, " \t:") {
			return a, fmt.Errorf("SignedHeaders must be lower-case header names separated by ';'")
		}
		if i > 0 && a.SignedHeaders[i-1] >= h {
			return a, errors.New("SignedHeaders must be sorted and unique")
		}
	}
	if !slices.Contains(a.SignedHeaders, "host") || !slices.Contains(a.SignedHeaders, DateHeader) {
		return a, fmt.Errorf("SignedHeaders must include host and %s", DateHeader)
	}
	if len(sig) != 2*sha256.Size {
		return a, errors.New("Signature must be 64 hex digits")
	}
	if _, err := hex.Decode(a.Signature[:], []byte(sig)); err != nil {
		return a, errors.New("Signature must be 64 hex digits")
	}
	return a, nil
}

// isName reports whether s looks like a part's name (a short run of
// letters), and so may be quoted back in an error.
func isName(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i] | 0x20; c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// String formats the header's value.
func (a Authorization) String() string {
	return fmt.Sprintf("%s Credential=%s/%s/%s, SignedHeaders=%s, Signature=%s",
		Algorithm, a.Credential, a.Day, Service, strings.Join(a.SignedHeaders, ";"), hex.EncodeToString(a.Signature[:]))
}

// Request is what a signature covers.
type Request struct {
	Method string
	// Path is the request path as sent, without the query.
	Path string
	// RawQuery is the query string as sent, without the '?'.
	RawQuery string
	// Header returns a header's value by lower-case name ("" if absent).
	Header func(name string) string
	// PayloadHash is the body's SHA-256 in hex, or UnsignedPayload.
	PayloadHash string
}

// CanonicalRequest builds the text that is hashed and signed.
func CanonicalRequest(r Request, signedHeaders []string) string {
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte('\n')
	if r.Path == "" {
		b.WriteByte('/')
	} else {
		b.WriteString(r.Path)
	}
	b.WriteByte('\n')
	b.WriteString(CanonicalQuery(r.RawQuery))
	b.WriteByte('\n')
	for _, h := range signedHeaders {
		b.WriteString(h)
		b.WriteByte(':')
		b.WriteString(strings.Join(strings.Fields(r.Header(h)), " "))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.WriteString(strings.Join(signedHeaders, ";"))
	b.WriteByte('\n')
	b.WriteString(r.PayloadHash)
	return b.String()
}

// CanonicalQuery decodes the query's parameters, encodes each key and value
// again (RFC 3986: only unreserved characters stay as they are, space is
// %20), and sorts them by key, then value. A key or value that cannot be
// decoded is taken literally and encoded as it is ("%zz" becomes "%25zz").
func CanonicalQuery(raw string) string {
	if raw == "" {
		return ""
	}
	type kv struct{ k, v string }
	var params []kv
	for pair := range strings.SplitSeq(raw, "&") {
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		params = append(params, kv{encode(decode(k)), encode(decode(v))})
	}
	slices.SortFunc(params, func(a, b kv) int {
		if c := strings.Compare(a.k, b.k); c != 0 {
			return c
		}
		return strings.Compare(a.v, b.v)
	})
	var b strings.Builder
	for i, p := range params {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.k)
		b.WriteByte('=')
		b.WriteString(p.v)
	}
	return b.String()
}

func decode(s string) string {
	d, err := url.QueryUnescape(s)
	if err != nil {
		return s
	}
	return d
}

func encode(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

// StringToSign is what the key signs: the algorithm, the request's time,
// the credential scope and the canonical request's hash.
func StringToSign(date, day, canonicalRequest string) string {
	h := sha256.Sum256([]byte(canonicalRequest))
	return Algorithm + "\n" + date + "\n" + day + "/" + Service + "\n" + hex.EncodeToString(h[:])
}

// Key derives the day's signing key from a signing secret.
func Key(secret []byte, day string) []byte {
	k := mac(append([]byte("TOLLGATE"), secret...), day)
	return mac(k, Service)
}

func mac(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// Signature computes the signature of a string to sign with a day's key.
func Signature(key []byte, stringToSign string) [sha256.Size]byte {
	var s [sha256.Size]byte
	copy(s[:], mac(key, stringToSign))
	return s
}

// HashPayload returns the hex SHA-256 of a body.
func HashPayload(body []byte) string {
	h := sha256.Sum256(body)
	return hex.EncodeToString(h[:])
}
