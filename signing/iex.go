package signing

// IEX Cloud's request-signing scheme, IEX-HMAC-SHA256, accepted beside
// Tollgate's own so that code written for IEX Cloud keeps working. Its
// differences from TOLLGATE-HMAC-SHA256 are in docs/signing.md: the signed
// headers are fixed, the query is signed as sent (not sorted), and each
// derived key is the hex text of the previous HMAC, not its bytes.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Names fixed by IEX's scheme.
const (
	IEXAlgorithm  = "IEX-HMAC-SHA256"
	IEXDateHeader = "x-iex-date"
	IEXService    = "iex_request"
	// IEXSignedHeaders is the only SignedHeaders value the scheme has.
	IEXSignedHeaders = "host;" + IEXDateHeader
)

// IEXForm is which of the two reference clients' canonical requests a
// signature covers. Both are accepted.
type IEXForm int

// The forms.
const (
	// IEXFullPath is IEX's Python sample: the full path ("/stable/stock/aapl/quote")
	// and the query without its '?' ("token=pk_…").
	IEXFullPath IEXForm = iota + 1
	// IEXRelativePath is IEXSharp's: the path relative to the client's base
	// URL, after the version prefix and without a leading '/'
	// ("stock/aapl/quote"), and the query with its '?' ("?token=pk_…").
	IEXRelativePath
)

// IEXAuthorization is a parsed IEX-HMAC-SHA256 Authorization header.
type IEXAuthorization struct {
	// Credential is the publishable token's value.
	Credential string
	// Day is the credential scope's date, YYYYMMDD.
	Day string
	// Signature is the 32-byte HMAC.
	Signature [sha256.Size]byte
}

// IsIEXSigned reports whether an Authorization header value uses IEX's scheme.
func IsIEXSigned(authorization string) bool {
	return len(authorization) > len(IEXAlgorithm) && strings.EqualFold(authorization[:len(IEXAlgorithm)], IEXAlgorithm) &&
		authorization[len(IEXAlgorithm)] == ' '
}

// ParseIEXAuthorization parses the header's value. Its errors say what is
// wrong, for a developer fixing a client; they never quote the signature.
func ParseIEXAuthorization(v string) (IEXAuthorization, error) {
	var a IEXAuthorization
	if len(v) > maxHeaderLen {
		return a, errors.New("the Authorization header is too long")
	}
	if !IsIEXSigned(v) {
		return a, fmt.Errorf("the Authorization header must start with %q", IEXAlgorithm+" ")
	}
	var parts [3]string
	var seen [3]bool
	names := [3]string{"Credential", "SignedHeaders", "Signature"}
	for part := range strings.SplitSeq(v[len(IEXAlgorithm)+1:], ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return a, errors.New("the Authorization header has a part without '=': want Credential=…, SignedHeaders=…, Signature=…")
		}
		i := 0
		for i < len(names) && names[i] != k {
			i++
		}
		if i == len(names) {
			if isName(k) {
				return a, fmt.Errorf("the Authorization header has an unknown part %q", k)
			}
			return a, errors.New("the Authorization header has an unknown part: want Credential=…, SignedHeaders=…, Signature=…")
		}
		if seen[i] {
			return a, fmt.Errorf("the Authorization header repeats %s", k)
		}
		parts[i], seen[i] = val, true
	}
	if !seen[0] || !seen[1] || !seen[2] {
		return a, errors.New("the Authorization header needs Credential, SignedHeaders and Signature")
	}
	scope := strings.Split(parts[0], "/")
	if len(scope) != 3 || scope[0] == "" || scope[2] != IEXService {
		return a, fmt.Errorf("Credential must be <publishable token>/<YYYYMMDD>/%s", IEXService)
	}
	for i := 0; i < len(scope[0]); i++ {
		if c := scope[0][i]; c <= ' ' || c > '~' {
			return a, errors.New("the Credential's token must be printable ASCII without spaces")
		}
	}
	if _, err := time.Parse(dayFormat, scope[1]); err != nil || len(scope[1]) != len(dayFormat) {
		return a, errors.New("the Credential's date must be YYYYMMDD")
	}
	if parts[1] != IEXSignedHeaders {
		return a, fmt.Errorf("SignedHeaders must be %s", IEXSignedHeaders)
	}
	if len(parts[2]) != 2*sha256.Size {
		return a, errors.New("Signature must be 64 hex digits")
	}
	if _, err := hex.Decode(a.Signature[:], []byte(parts[2])); err != nil {
		return a, errors.New("Signature must be 64 hex digits")
	}
	a.Credential, a.Day = scope[0], scope[1]
	return a, nil
}

// String formats the header's value as the reference clients do.
func (a IEXAuthorization) String() string {
	return fmt.Sprintf("%s Credential=%s/%s/%s, SignedHeaders=%s, Signature=%s",
		IEXAlgorithm, a.Credential, a.Day, IEXService, IEXSignedHeaders, hex.EncodeToString(a.Signature[:]))
}

// IEXRequest is what an IEX signature covers.
type IEXRequest struct {
	Method string
	// Path is the request path as sent, without the query.
	Path string
	// RawQuery is the query string as sent, without the '?'.
	RawQuery string
	// Host is the Host header.
	Host string
	// Date is the x-iex-date header.
	Date string
	// PayloadHash is the body's SHA-256 in hex.
	PayloadHash string
}

// IEXCanonicalRequest builds the text that is hashed and signed, in form.
func IEXCanonicalRequest(r IEXRequest, form IEXForm) string {
	uri, query := r.Path, r.RawQuery
	if form == IEXRelativePath {
		uri = relativePath(r.Path)
		if query != "" {
			query = "?" + query
		}
	}
	return r.Method + "\n" + uri + "\n" + query + "\nhost:" + r.Host + "\n" + IEXDateHeader + ":" + r.Date + "\n\n" +
		IEXSignedHeaders + "\n" + r.PayloadHash
}

// relativePath is the path as IEXSharp names it: relative to a base URL
// that ends in the version ("/stable/", "/v1/"), so without its first
// segment and without a leading '/'.
func relativePath(path string) string {
	rest := strings.TrimPrefix(path, "/")
	if _, after, ok := strings.Cut(rest, "/"); ok {
		return after
	}
	return ""
}

// IEXStringToSign is what the key signs: the algorithm, the request's
// time, the credential scope and the canonical request's hash.
func IEXStringToSign(date, day, canonicalRequest string) string {
	return IEXAlgorithm + "\n" + date + "\n" + day + "/" + IEXService + "\n" + hex.EncodeToString(sha(canonicalRequest))
}

// IEXKey derives the day's signing key from a signing secret. Unlike
// Key, each step keys the next HMAC with the previous one's hex text.
func IEXKey(secret []byte, day string) []byte {
	kDate := hexMAC(secret, day)
	return hexMAC(kDate, IEXService)
}

// hexMAC is HMAC-SHA256 of data under key, as lower-case hex text.
func hexMAC(key []byte, data string) []byte {
	m := mac(key, data)
	out := make([]byte, hex.EncodedLen(len(m)))
	hex.Encode(out, m)
	return out
}

// IEXSignature computes the signature of a string to sign with a day's key
// (see IEXKey).
func IEXSignature(key []byte, stringToSign string) [sha256.Size]byte {
	var s [sha256.Size]byte
	copy(s[:], mac(key, stringToSign))
	return s
}

// VerifyIEX checks an IEX signature against the request, in either form,
// with the day's key from key, at now, allowing skew either way. It
// compares in constant time. It returns nil or an *Error.
func VerifyIEX(a IEXAuthorization, r IEXRequest, key func(day string) []byte, now time.Time, skew time.Duration) error {
	if err := checkDate(IEXDateHeader, r.Date, a.Day, now, skew); err != nil {
		return err
	}
	k := key(a.Day)
	for _, form := range []IEXForm{IEXFullPath, IEXRelativePath} {
		want := IEXSignature(k, IEXStringToSign(r.Date, a.Day, IEXCanonicalRequest(r, form)))
		if hmac.Equal(want[:], a.Signature[:]) {
			return nil
		}
	}
	return invalid("the signature does not match: compare your canonical request (its SHA-256 here is %s with the full path, %s with IEXSharp's relative path) and string to sign with docs/signing.md",
		hex.EncodeToString(sha(IEXCanonicalRequest(r, IEXFullPath))), hex.EncodeToString(sha(IEXCanonicalRequest(r, IEXRelativePath))))
}

// SignIEX signs an outgoing request in place the IEX way, in form, for a
// publishable token with its signing secret: it sets x-iex-date and
// Authorization. The body is read and put back.
func SignIEX(req *http.Request, publishable string, secret []byte, now time.Time, form IEXForm) error {
	if publishable == "" || len(secret) == 0 {
		return errors.New("signing: a publishable token and a secret are needed")
	}
	if form != IEXFullPath && form != IEXRelativePath {
		return fmt.Errorf("signing: unknown IEX form %d", form)
	}
	body, err := readBody(req)
	if err != nil {
		return err
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	now = now.UTC()
	day := now.Format(dayFormat)
	r := IEXRequest{Method: req.Method, Path: req.URL.EscapedPath(), RawQuery: req.URL.RawQuery, Host: host,
		Date: now.Format(DateFormat), PayloadHash: HashPayload(body)}
	a := IEXAuthorization{Credential: publishable, Day: day,
		Signature: IEXSignature(IEXKey(secret, day), IEXStringToSign(r.Date, day, IEXCanonicalRequest(r, form)))}
	req.Header.Set(IEXDateHeader, r.Date)
	req.Header.Set("Authorization", a.String())
	return nil
}
