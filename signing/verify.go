package signing

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"
)

// Problem says what kind of fault a signature has.
type Problem int

// Problems.
const (
	Invalid Problem = iota + 1 // malformed, or it does not match
	Expired                    // its time is outside the allowed skew
)

// Error is a verification failure with a message that helps a developer fix
// the client: which part is wrong, never the expected signature.
type Error struct {
	Problem Problem
	Message string
}

func (e *Error) Error() string { return e.Message }

func invalid(format string, args ...any) *Error {
	return &Error{Problem: Invalid, Message: fmt.Sprintf(format, args...)}
}

// Verify checks a signature against the request and the signing secret at
// now, allowing skew either way. It compares in constant time. It returns
// nil or an *Error.
func Verify(a Authorization, r Request, secret []byte, now time.Time, skew time.Duration) error {
	return VerifyWithKey(a, r, func(day string) []byte { return Key(secret, day) }, now, skew)
}

// VerifyWithKey is Verify for a verifier that keeps the day's key (see Key)
// rather than deriving it for every request.
func VerifyWithKey(a Authorization, r Request, key func(day string) []byte, now time.Time, skew time.Duration) error {
	date := r.Header(DateHeader)
	if err := checkDate(DateHeader, date, a.Day, now, skew); err != nil {
		return err
	}
	canonical := CanonicalRequest(r, a.SignedHeaders)
	sts := StringToSign(date, a.Day, canonical)
	want := Signature(key(a.Day), sts)
	if !hmac.Equal(want[:], a.Signature[:]) {
		// The canonical request's hash lets the client compare its own
		// canonical request; it reveals nothing about the key.
		return invalid("the signature does not match: compare your canonical request (its SHA-256 here is %s) and string to sign with docs/signing.md",
			hex.EncodeToString(sha(canonical)))
	}
	return nil
}

func sha(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// checkDate checks a signed request's date header (named header, holding
// date): its form, that the credential's day is its day, and that it is
// within skew of now either way. Both schemes date their requests alike.
func checkDate(header, date, day string, now time.Time, skew time.Duration) error {
	t, err := time.Parse(DateFormat, date)
	if err != nil || len(date) != len(DateFormat) {
		return invalid("the %s header must hold the request's time as YYYYMMDDTHHMMSSZ (UTC)", header)
	}
	if d := t.Format(dayFormat); d != day {
		return invalid("the Credential's date %s is not the day of %s (%s)", day, header, d)
	}
	if d := now.Sub(t); d > skew || d < -skew {
		return &Error{Problem: Expired, Message: fmt.Sprintf(
			"the request was signed at %s, more than %s from the server's time %s: sign each request when it is sent, and check the client's clock",
			t.Format(time.RFC3339), skew, now.UTC().Format(time.RFC3339))}
	}
	return nil
}
