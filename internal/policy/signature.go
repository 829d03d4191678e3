package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/signing"
)

// SignatureOptions are the operator's choices for signed requests.
type SignatureOptions struct {
	// Skew is how far a request's time may be from the server's, either way.
	Skew time.Duration
	// AllowUnsignedPayload accepts x-tollgate-content-sha256:
	// UNSIGNED-PAYLOAD, leaving the body out of the signature.
	AllowUnsignedPayload bool
	// Replay remembers the signatures of allowed requests, so that each
	// is allowed once; nil turns replay detection off. The Decider uses it,
	// not Evaluate: see Decider.Decide.
	Replay ReplayStore
}

// signingKey holds a token's signing secret and the day's key derived
// from it, which every request of that day reuses.
type signingKey struct {
	secret []byte
	day    atomic.Pointer[dayKey]
	iexDay atomic.Pointer[dayKey] // IEX-HMAC-SHA256 derives its own
}

type dayKey struct {
	day string
	key []byte
}

func (k *signingKey) forDay(day string) []byte { return dayKeyOf(&k.day, k.secret, day, signing.Key) }

func (k *signingKey) forIEXDay(day string) []byte {
	return dayKeyOf(&k.iexDay, k.secret, day, signing.IEXKey)
}

// dayKeyOf returns the day's key from cache, deriving and caching it when
// the cache holds another day's.
func dayKeyOf(cache *atomic.Pointer[dayKey], secret []byte, day string, derive func([]byte, string) []byte) []byte {
	if d := cache.Load(); d != nil && d.day == day {
		return d.key
	}
	d := &dayKey{day: day, key: derive(secret, day)}
	cache.Store(d)
	return d.key
}

// signed is what the Decider needs of a verified signature to remember it.
type signed struct {
	sig   [sha256.Size]byte
	until time.Time // the last moment the request is fresh
	ok    bool
}

// checkSignature verifies a signed request: the Authorization header, the
// credential, the time, the body and the signature. It does not look for
// replays: the Decider remembers the signature once the request is allowed
// (see Decider.Decide), and into s it puts what that needs.
func (p *Policy) checkSignature(req *Request, now time.Time, opt SignatureOptions, s *signed) (Decision, bool) {
	if signing.IsIEXSigned(req.Authorization) {
		return p.checkIEXSignature(req, now, opt, s)
	}
	if !signing.IsSigned(req.Authorization) {
		return deny(CodeSignatureRequired, "this token requires signed requests: add an Authorization: "+signing.Algorithm+
			" (or "+signing.IEXAlgorithm+") header (see docs/signing.md)"), false
	}
	a, err := signing.ParseAuthorization(req.Authorization)
	if err != nil {
		return deny(CodeSignatureInvalid, err.Error()), false
	}
	if a.Credential != p.TokenID && a.Credential != req.Token {
		return deny(CodeSignatureInvalid, "the Credential names another token: use this token's id or the token itself"), false
	}
	payload, d, ok := payloadHash(req, a, opt)
	if !ok {
		return d, false
	}
	r := signing.Request{Method: req.Method, Path: req.Path, RawQuery: req.RawQuery, PayloadHash: payload, Header: req.header}
	if err := signing.VerifyWithKey(a, r, p.signing.forDay, now, opt.Skew); err != nil {
		e, _ := err.(*signing.Error)
		if e != nil && e.Problem == signing.Expired {
			return deny(CodeSignatureExpired, e.Message), false
		}
		return deny(CodeSignatureInvalid, err.Error()), false
	}
	// VerifyWithKey has parsed the date already; it cannot fail here.
	date, _ := time.Parse(signing.DateFormat, req.header(signing.DateHeader))
	*s = signed{sig: a.Signature, until: date.Add(opt.Skew), ok: true}
	return Decision{}, true
}

// checkIEXSignature is checkSignature for IEX Cloud's scheme. Its
// Credential is the publishable token itself, which must be the token the
// request carries; it has no content-hash header, so the body is the one
// Envoy forwarded, or none.
func (p *Policy) checkIEXSignature(req *Request, now time.Time, opt SignatureOptions, s *signed) (Decision, bool) {
	a, err := signing.ParseIEXAuthorization(req.Authorization)
	if err != nil {
		return deny(CodeSignatureInvalid, err.Error()), false
	}
	if a.Credential != req.Token {
		return deny(CodeSignatureInvalid, "the Credential names another token: use the publishable token the request carries"), false
	}
	payload := signing.HashPayload(nil)
	if req.HasBody {
		if req.Partial {
			return deny(CodeSignatureInvalid, "the body is larger than the proxy forwards for checking, so its signature cannot be verified"), false
		}
		payload = signing.HashPayload(req.Body)
	}
	r := signing.IEXRequest{Method: req.Method, Path: req.Path, RawQuery: req.RawQuery, Host: req.header("host"),
		Date: req.header(signing.IEXDateHeader), PayloadHash: payload}
	if err := signing.VerifyIEX(a, r, p.signing.forIEXDay, now, opt.Skew); err != nil {
		e, _ := err.(*signing.Error)
		if e != nil && e.Problem == signing.Expired {
			return deny(CodeSignatureExpired, e.Message), false
		}
		return deny(CodeSignatureInvalid, err.Error()), false
	}
	// VerifyIEX has parsed the date already; it cannot fail here.
	date, _ := time.Parse(signing.DateFormat, r.Date)
	*s = signed{sig: a.Signature, until: date.Add(opt.Skew), ok: true}
	return Decision{}, true
}

// payloadHash decides what the signature covers of the body: its hash when
// Envoy sent it, else the signed x-tollgate-content-sha256 header, else an
// empty body.
func payloadHash(req *Request, a signing.Authorization, opt SignatureOptions) (string, Decision, bool) {
	declared := req.header(signing.ContentHeader)
	signedDecl := false
	for _, h := range a.SignedHeaders {
		signedDecl = signedDecl || h == signing.ContentHeader
	}
	if declared != "" && !signedDecl {
		return "", deny(CodeSignatureInvalid, signing.ContentHeader+" is sent but not signed: add it to SignedHeaders"), false
	}
	if declared == signing.UnsignedPayload {
		if !opt.AllowUnsignedPayload {
			return "", deny(CodeSignatureInvalid, "UNSIGNED-PAYLOAD is not accepted here: sign the body's SHA-256"), false
		}
		return declared, Decision{}, true
	}
	if req.HasBody {
		if req.Partial {
			return "", deny(CodeSignatureInvalid, "the body is larger than the proxy forwards for checking, so its signature cannot be verified"), false
		}
		h := sha256.Sum256(req.Body)
		computed := hex.EncodeToString(h[:])
		if declared != "" && declared != computed {
			return "", deny(CodeSignatureInvalid, "the body's SHA-256 does not match "+signing.ContentHeader), false
		}
		return computed, Decision{}, true
	}
	if declared != "" {
		return declared, Decision{}, true
	}
	return signing.HashPayload(nil), Decision{}, true
}

func (req *Request) header(name string) string {
	if req.Headers == nil {
		return ""
	}
	return req.Headers.Get(name)
}
