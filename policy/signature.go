package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/tollgate/tollgate/signing"
)

// SignatureOptions are the operator's choices for signed requests.
type SignatureOptions struct {
	// Skew is how far a request's time may be from the server's, either way.
	Skew time.Duration
	// AllowUnsignedPayload accepts x-tollgate-content-sha256:
	// UNSIGNED-PAYLOAD, leaving the body out of the signature.
	AllowUnsignedPayload bool
	// Replay remembers signatures seen within the skew window; nil turns
	// replay detection off.
	Replay *ReplayCache
}

// signingKey holds a token's signing secret and the day's key derived
// from it, which every request of that day reuses.
type signingKey struct {
	secret []byte
	mu     sync.Mutex
	day    string
	key    []byte
}

func (k *signingKey) forDay(day string) []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.day != day {
		k.day, k.key = day, signing.Key(k.secret, day)
	}
	return k.key
}

// checkSignature verifies a signed request: the Authorization header, the
// credential, the time, the body and the signature, then that it is not a
// replay.
func (p *Policy) checkSignature(req *Request, now time.Time, opt SignatureOptions) (Decision, bool) {
	if !signing.IsSigned(req.Authorization) {
		return deny(CodeSignatureRequired, "this token requires signed requests: add an Authorization: "+signing.Algorithm+" header (see docs/signing.md)"), false
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
	if opt.Replay != nil && opt.Replay.seen(a.Signature, now, opt.Skew) {
		return deny(CodeSignatureReplayed, "this signed request was already used: sign every request afresh"), false
	}
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

// ReplayCache remembers the signatures seen recently on this replica. A
// signature can only be replayed within the skew window (after it, the
// request has expired), so entries older than that are forgotten. Each
// replica has its own: a replay sent to another replica is caught only
// there if it was seen there.
type ReplayCache struct {
	seenAt *lru.Cache[[sha256.Size]byte, int64]
}

// NewReplayCache returns a cache of up to size signatures.
func NewReplayCache(size int) (*ReplayCache, error) {
	c, err := lru.New[[sha256.Size]byte, int64](size)
	if err != nil {
		return nil, err
	}
	return &ReplayCache{seenAt: c}, nil
}

// seen records sig and reports whether it was already seen within the
// window.
func (r *ReplayCache) seen(sig [sha256.Size]byte, now time.Time, skew time.Duration) bool {
	t := now.UnixNano()
	prev, found, _ := r.seenAt.PeekOrAdd(sig, t)
	if !found {
		return false
	}
	if t-prev <= int64(2*skew) {
		return true
	}
	r.seenAt.Add(sig, t)
	return false
}
