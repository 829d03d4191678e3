package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync"
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
	// Replay remembers signatures seen within the skew window; nil turns
	// replay detection off.
	Replay *ReplayCache
}

// signingKey holds a token's signing secret and the day's key derived
// from it, which every request of that day reuses.
type signingKey struct {
	secret []byte
	day    atomic.Pointer[dayKey]
}

type dayKey struct {
	day string
	key []byte
}

func (k *signingKey) forDay(day string) []byte {
	if d := k.day.Load(); d != nil && d.day == day {
		return d.key
	}
	d := &dayKey{day: day, key: signing.Key(k.secret, day)}
	k.day.Store(d)
	return d.key
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
// signature can only be replayed within the skew window either side of its
// date (after it, the request has expired), so the cache keeps two
// generations of 2×skew each and drops the older as a new one starts. Its
// maps hold no pointers, so a million signatures cost the garbage
// collector nothing to scan. Each replica has its own: a replay sent to a
// replica that never saw the original is not caught there.
type ReplayCache struct {
	mu        sync.Mutex
	size      int // signatures per generation; when full, a new one starts early
	cur, prev map[[sha256.Size]byte]struct{}
	started   int64 // unix nanoseconds when cur began
}

// NewReplayCache returns a cache of up to size signatures per generation.
func NewReplayCache(size int) (*ReplayCache, error) {
	if size < 1 {
		return nil, errors.New("policy: replay cache size must be at least 1")
	}
	return &ReplayCache{size: size, cur: map[[sha256.Size]byte]struct{}{}, prev: map[[sha256.Size]byte]struct{}{}}, nil
}

// seen records sig and reports whether it was already seen within the
// window.
func (r *ReplayCache) seen(sig [sha256.Size]byte, now time.Time, skew time.Duration) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := now.UnixNano()
	switch elapsed := t - r.started; {
	case elapsed >= int64(4*skew):
		// Both generations are past the window.
		clear(r.prev)
		clear(r.cur)
		r.started = t
	case elapsed >= int64(2*skew) || len(r.cur) >= r.size:
		r.prev, r.cur, r.started = r.cur, make(map[[sha256.Size]byte]struct{}, len(r.cur)), t
	}
	if _, ok := r.cur[sig]; ok {
		return true
	}
	if _, ok := r.prev[sig]; ok {
		return true
	}
	r.cur[sig] = struct{}{}
	return false
}
