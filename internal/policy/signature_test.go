package policy_test

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/seal"
	"github.com/tollgate/tollgate/signing"
)

// sigHeaders is a policy.Headers over a map keyed by lower-case name.
type sigHeaders map[string]string

var _ policy.Headers = sigHeaders(nil)

func (h sigHeaders) Get(name string) string { return h[name] }

const sigSkew = 5 * time.Minute

// sigFixture is a store holding one publishable token that requires signed
// requests, its signing secret sealed under box, and a clock.
type sigFixture struct {
	store  *fakeStore
	clock  *clock
	box    *seal.Box
	tok    *policy.Token
	value  string // the token itself
	secret []byte // its signing secret, in the clear
}

func newSigFixture(tb testing.TB, kind policy.Kind) *sigFixture {
	tb.Helper()
	box, err := seal.NewBox(bytes.Repeat([]byte{7}, seal.KeySize))
	if err != nil {
		tb.Fatal(err)
	}
	secret := policy.NewSigningSecret()
	tok := policy.NewToken("acc_1", kind)
	tok.Signed = true
	tok.SigningSecret = box.Seal(tok.ID, []byte(secret))
	if err := tok.Normalize(); err != nil {
		tb.Fatalf("normalize: %v", err)
	}
	f := &sigFixture{store: newFakeStore(), clock: newClock(), box: box, tok: tok, secret: []byte(secret)}
	f.value = f.store.add(tok)
	return f
}

// decider returns a Decider over a fresh cache that opens signing secrets
// with open.
func (f *sigFixture) decider(tb testing.TB, open policy.Opener, opt policy.SignatureOptions) *policy.Decider {
	tb.Helper()
	cache, err := policy.NewCache(f.store, testCacheConfig(), f.clock.now, open)
	if err != nil {
		tb.Fatal(err)
	}
	return policy.NewDecider(cache, nil, f.clock.now, policy.EvalOptions{Signatures: opt})
}

// request returns an unsigned request for the token, as extauthz lifts it
// out of a CheckRequest.
func (f *sigFixture) request() policy.Request {
	return policy.Request{Token: f.value, Method: "GET", Path: "/v1/prices/AAPL", RawQuery: "symbol=AAPL&range=1d",
		Headers: sigHeaders{"host": "api.example.com", "x-client": "acme/1.0", "user-agent": "curl/8.5"}}
}

// sigSign signs req as of at: host, x-tollgate-date, x-tollgate-content-sha256
// when req carries it, and extra. The payload hash is the content header's,
// else the body's, else the empty body's.
func sigSign(tb testing.TB, req *policy.Request, credential string, secret []byte, at time.Time, extra ...string) {
	tb.Helper()
	h := req.Headers.(sigHeaders)
	h[signing.DateHeader] = at.UTC().Format(signing.DateFormat)
	names := append([]string{"host", signing.DateHeader}, extra...)
	payload := h[signing.ContentHeader]
	switch {
	case payload != "":
		names = append(names, signing.ContentHeader)
	case req.HasBody:
		payload = signing.HashPayload(req.Body)
	default:
		payload = signing.HashPayload(nil)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	r := signing.Request{Method: req.Method, Path: req.Path, RawQuery: req.RawQuery, Header: h.Get, PayloadHash: payload}
	req.Authorization = signing.Sign(r, credential, secret, at, names).String()
}

func mustDecide(tb testing.TB, d *policy.Decider, req policy.Request) policy.Decision {
	tb.Helper()
	dec, err := d.Decide(context.Background(), &req)
	if err != nil {
		tb.Fatalf("decide: %v", err)
	}
	return dec
}

// sigOf returns the hex signature an Authorization header carries, or "".
func sigOf(authorization string) string {
	_, sig, _ := strings.Cut(authorization, "Signature=")
	return strings.ToLower(sig)
}

func TestSignedRequests(t *testing.T) {
	body := []byte(`{"symbol":"AAPL","side":"buy","quantity":10}`)
	withBody := func(_ *sigFixture, r *policy.Request) {
		r.Method, r.Path, r.RawQuery = "POST", "/v1/orders", "dry_run=true"
		r.Body, r.HasBody = body, true
	}
	declare := func(hash string) func(*sigFixture, *policy.Request) {
		return func(f *sigFixture, r *policy.Request) {
			withBody(f, r)
			r.Body, r.HasBody = nil, false // Envoy does not send the body
			r.Headers.(sigHeaders)[signing.ContentHeader] = hash
		}
	}
	cases := map[string]struct {
		before   func(f *sigFixture, r *policy.Request)
		unsigned bool                       // send no signature
		cred     func(f *sigFixture) string // nil: the token's id
		at       time.Duration              // the signing time less the server's
		extra    []string                   // signed beyond host, the date and the content header
		after    func(r *policy.Request)    // what changes on the way
		allowUP  bool                       // AllowUnsignedPayload
		want     policy.DenyCode            // "" = allow
		wantMsg  string
	}{
		// Allowed.
		"credential is the token id":    {},
		"credential is the token value": {cred: func(f *sigFixture) string { return f.value }},
		"extra signed header":           {extra: []string{"x-client"}},
		"unsigned header changed":       {after: func(r *policy.Request) { r.Headers.(sigHeaders)["user-agent"] = "other" }},
		"query reordered":               {after: func(r *policy.Request) { r.RawQuery = "range=1d&symbol=AAPL" }},
		"body hashed (Envoy sends it)":  {before: withBody},
		"body hashed, content header agrees": {before: func(f *sigFixture, r *policy.Request) {
			withBody(f, r)
			r.Headers.(sigHeaders)[signing.ContentHeader] = signing.HashPayload(body)
		}},
		"body not sent, content header signed": {before: declare(signing.HashPayload(body))},
		"unsigned payload allowed":             {before: declare(signing.UnsignedPayload), allowUP: true},
		"unsigned payload allowed, body sent": {before: func(f *sigFixture, r *policy.Request) {
			withBody(f, r)
			r.Headers.(sigHeaders)[signing.ContentHeader] = signing.UnsignedPayload
		}, allowUP: true, after: func(r *policy.Request) { r.Body = []byte("anything") }},
		"exactly skew in the past":   {at: -sigSkew},
		"exactly skew in the future": {at: sigSkew},

		// signature_required.
		"no authorization": {unsigned: true, want: policy.CodeSignatureRequired, wantMsg: "requires signed requests"},
		"bearer authorization": {unsigned: true, before: func(f *sigFixture, r *policy.Request) { r.Authorization = "Bearer " + f.value },
			want: policy.CodeSignatureRequired},
		"another scheme": {unsigned: true, before: func(_ *sigFixture, r *policy.Request) {
			r.Authorization = "AWS4-HMAC-SHA256 Credential=x/20260601/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00"
		}, want: policy.CodeSignatureRequired},

		// signature_invalid.
		"unparsable authorization": {after: func(r *policy.Request) {
			r.Authorization = strings.Replace(r.Authorization, "SignedHeaders=host;", "SignedHeaders=", 1)
		}, want: policy.CodeSignatureInvalid, wantMsg: "must include host"},
		"credential names another token id": {cred: func(*sigFixture) string { return policy.NewID("tok") },
			want: policy.CodeSignatureInvalid, wantMsg: "names another token"},
		"credential is another token": {cred: func(*sigFixture) string { return policy.NewValue(policy.Publishable) },
			want: policy.CodeSignatureInvalid, wantMsg: "names another token"},
		"content header sent unsigned": {after: func(r *policy.Request) {
			r.Headers.(sigHeaders)[signing.ContentHeader] = signing.HashPayload(nil)
		}, want: policy.CodeSignatureInvalid, wantMsg: "sent but not signed"},
		"body does not match content header": {before: func(f *sigFixture, r *policy.Request) {
			withBody(f, r)
			r.Headers.(sigHeaders)[signing.ContentHeader] = signing.HashPayload(body)
		}, after: func(r *policy.Request) { r.Body = []byte(`{"symbol":"AAPL","side":"buy","quantity":1000}`) },
			want: policy.CodeSignatureInvalid, wantMsg: "does not match x-tollgate-content-sha256"},
		"partial body": {before: withBody, after: func(r *policy.Request) { r.Partial = true },
			want: policy.CodeSignatureInvalid, wantMsg: "larger than the proxy forwards"},
		"unsigned payload not allowed": {before: declare(signing.UnsignedPayload),
			want: policy.CodeSignatureInvalid, wantMsg: "UNSIGNED-PAYLOAD is not accepted"},
		"method tampered": {after: func(r *policy.Request) { r.Method = "DELETE" },
			want: policy.CodeSignatureInvalid, wantMsg: "signature does not match"},
		"path tampered":  {after: func(r *policy.Request) { r.Path = "/v1/prices/MSFT" }, want: policy.CodeSignatureInvalid},
		"query tampered": {after: func(r *policy.Request) { r.RawQuery = "symbol=AAPL&range=5y" }, want: policy.CodeSignatureInvalid},
		"query added":    {after: func(r *policy.Request) { r.RawQuery += "&limit=1000" }, want: policy.CodeSignatureInvalid},
		"signed header tampered": {extra: []string{"x-client"}, after: func(r *policy.Request) { r.Headers.(sigHeaders)["x-client"] = "evil/1.0" },
			want: policy.CodeSignatureInvalid},
		"host tampered": {after: func(r *policy.Request) { r.Headers.(sigHeaders)["host"] = "api.example.net" },
			want: policy.CodeSignatureInvalid},
		"body tampered": {before: withBody, after: func(r *policy.Request) { r.Body = []byte(`{}`) },
			want: policy.CodeSignatureInvalid},
		"body dropped": {before: withBody, after: func(r *policy.Request) { r.Body, r.HasBody = nil, false },
			want: policy.CodeSignatureInvalid},
		"declared body changed": {before: declare(signing.HashPayload(body)), after: func(r *policy.Request) {
			r.Headers.(sigHeaders)[signing.ContentHeader] = signing.HashPayload(nil)
		}, want: policy.CodeSignatureInvalid},
		"date header tampered": {after: func(r *policy.Request) { r.Headers.(sigHeaders)[signing.DateHeader] = "20260601T120001Z" },
			want: policy.CodeSignatureInvalid},
		"date header garbled": {after: func(r *policy.Request) { r.Headers.(sigHeaders)[signing.DateHeader] = "Mon, 01 Jun 2026 12:00:00 GMT" },
			want: policy.CodeSignatureInvalid, wantMsg: "YYYYMMDDTHHMMSSZ"},
		"signed with another secret": {before: func(f *sigFixture, _ *policy.Request) { f.secret = []byte(policy.NewSigningSecret()) },
			want: policy.CodeSignatureInvalid, wantMsg: "signature does not match"},

		// signature_expired.
		"a second beyond skew in the past":   {at: -sigSkew - time.Second, want: policy.CodeSignatureExpired, wantMsg: "more than 5m0s"},
		"a second beyond skew in the future": {at: sigSkew + time.Second, want: policy.CodeSignatureExpired, wantMsg: "check the client's clock"},
		"a day old":                          {at: -24 * time.Hour, want: policy.CodeSignatureExpired},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			f := newSigFixture(t, policy.Publishable)
			replay := mustReplayCache(t, 100, 100, f.clock)
			d := f.decider(t, f.box.Open, policy.SignatureOptions{Skew: sigSkew, AllowUnsignedPayload: c.allowUP, Replay: replay})
			req := f.request()
			if c.before != nil {
				c.before(f, &req)
			}
			if !c.unsigned {
				cred := f.tok.ID
				if c.cred != nil {
					cred = c.cred(f)
				}
				sigSign(t, &req, cred, f.secret, f.clock.now().Add(c.at), c.extra...)
			}
			if c.after != nil {
				c.after(&req)
			}
			dec := mustDecide(t, d, req)
			if dec.Code != c.want || dec.Allow != (c.want == "") {
				t.Fatalf("got allow=%v code=%q (%s), want code %q", dec.Allow, dec.Code, dec.Message, c.want)
			}
			if dec.TokenID != f.tok.ID {
				t.Errorf("got token id %v, want %v", dec.TokenID, f.tok.ID)
			}
			if c.want == "" {
				return
			}
			if !strings.Contains(dec.Message, c.wantMsg) {
				t.Errorf("got message %q, want it to contain %q", dec.Message, c.wantMsg)
			}
			if s := sigOf(req.Authorization); len(s) >= 16 && strings.Contains(strings.ToLower(dec.Message), s[:16]) {
				t.Errorf("the message %q quotes the signature", dec.Message)
			}
			if !dec.Code.Unauthenticated() {
				t.Errorf("code %q: got authenticated, want a failure to prove who the caller is", dec.Code)
			}
		})
	}
}

func TestSignedSecretToken(t *testing.T) {
	f := newSigFixture(t, policy.Secret)
	d := f.decider(t, f.box.Open, policy.SignatureOptions{Skew: sigSkew})
	for _, cred := range []string{f.tok.ID, f.value} {
		req := f.request()
		sigSign(t, &req, cred, f.secret, f.clock.now())
		if dec := mustDecide(t, d, req); !dec.Allow {
			t.Errorf("credential %.7s…: got %q (%s), want allowed", cred, dec.Code, dec.Message)
		}
	}
}

// expect decides req and checks its code ("" = allowed).
func expect(tb testing.TB, d *policy.Decider, req policy.Request, want policy.DenyCode) {
	tb.Helper()
	if dec := mustDecide(tb, d, req); dec.Code != want || dec.Allow != (want == "") {
		tb.Errorf("got allow=%v code=%q (%s), want code %q", dec.Allow, dec.Code, dec.Message, want)
	}
}

// mustReplayCache returns a replay cache over c's time (the real time when
// c is nil).
func mustReplayCache(tb testing.TB, size, perToken int, c *clock) *policy.ReplayCache {
	tb.Helper()
	now := time.Now
	if c != nil {
		now = c.now
	}
	r, err := policy.NewReplayCache(policy.ReplayConfig{Size: size, PerToken: perToken}, now)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

func TestSignatureReplay(t *testing.T) {

	t.Run("inside the window", func(t *testing.T) {
		f := newSigFixture(t, policy.Publishable)
		d := f.decider(t, f.box.Open, policy.SignatureOptions{Skew: sigSkew, Replay: mustReplayCache(t, 100, 100, f.clock)})
		req := f.request()
		sigSign(t, &req, f.tok.ID, f.secret, f.clock.now())
		expect(t, d, req, "")
		expect(t, d, req, policy.CodeSignatureReplayed)
		f.clock.advance(sigSkew) // the last moment the request is fresh
		expect(t, d, req, policy.CodeSignatureReplayed)
		// A fresh signature for the same request is not a replay.
		again := f.request()
		sigSign(t, &again, f.tok.ID, f.secret, f.clock.now())
		expect(t, d, again, "")
		// Past the window, the old signature has expired: the replay
		// cache need not remember it.
		f.clock.advance(time.Second)
		expect(t, d, req, policy.CodeSignatureExpired)
		f.clock.advance(sigSkew)
		expect(t, d, req, policy.CodeSignatureExpired)
	})

	t.Run("the same signature is a replay whatever else changes", func(t *testing.T) {
		f := newSigFixture(t, policy.Publishable)
		d := f.decider(t, f.box.Open, policy.SignatureOptions{Skew: sigSkew, Replay: mustReplayCache(t, 100, 100, f.clock)})
		req := f.request()
		sigSign(t, &req, f.tok.ID, f.secret, f.clock.now())
		expect(t, d, req, "")
		req.Headers.(sigHeaders)["user-agent"] = "replayer/1.0" // not signed
		expect(t, d, req, policy.CodeSignatureReplayed)
	})

	t.Run("a refused request is not remembered", func(t *testing.T) {
		f := newSigFixture(t, policy.Publishable)
		d := f.decider(t, f.box.Open, policy.SignatureOptions{Skew: sigSkew, Replay: mustReplayCache(t, 100, 100, f.clock)})
		req := f.request()
		sigSign(t, &req, f.tok.ID, f.secret, f.clock.now())
		bad := req
		bad.Method = "DELETE"
		expect(t, d, bad, policy.CodeSignatureInvalid)
		expect(t, d, req, "")
	})

	// A signature is remembered for as long as its request is fresh,
	// however the skew changed since (here: two deciders sharing one
	// cache, as when an operator shortens --signature-skew).
	t.Run("remembered while fresh under the longest skew", func(t *testing.T) {
		f := newSigFixture(t, policy.Publishable)
		replay := mustReplayCache(t, 100, 100, f.clock)
		long := f.decider(t, f.box.Open, policy.SignatureOptions{Skew: 6 * sigSkew, Replay: replay})
		short := f.decider(t, f.box.Open, policy.SignatureOptions{Skew: sigSkew, Replay: replay})
		req := f.request()
		sigSign(t, &req, f.tok.ID, f.secret, f.clock.now().Add(5*sigSkew))
		expect(t, long, req, "")
		f.clock.advance(4*sigSkew + time.Second) // still fresh for short
		expect(t, short, req, policy.CodeSignatureReplayed)
		f.clock.advance(6 * sigSkew) // the last moment it is fresh for long
		expect(t, long, req, policy.CodeSignatureReplayed)
	})

	// The cache refuses rather than forgets: it used to start a new
	// generation early, forgetting the oldest signatures, which could
	// then be replayed.
	t.Run("a full replay cache refuses", func(t *testing.T) {
		f := newSigFixture(t, policy.Publishable)
		d := f.decider(t, f.box.Open, policy.SignatureOptions{Skew: sigSkew, Replay: mustReplayCache(t, 2, 2, f.clock)})
		var reqs []policy.Request
		for i := range 5 {
			req := f.request()
			req.RawQuery += "&n=" + string(rune('0'+i))
			sigSign(t, &req, f.tok.ID, f.secret, f.clock.now())
			reqs = append(reqs, req)
		}
		// The first takes the first generation, which the second starts
		// the next of; two more fit in that one.
		for _, req := range reqs[:3] {
			expect(t, d, req, "")
		}
		dec := mustDecide(t, d, reqs[3])
		if dec.Code != policy.CodeReplayUnverifiable || dec.Allow {
			t.Fatalf("got allow=%v code=%q, want code %q", dec.Allow, dec.Code, policy.CodeReplayUnverifiable)
		}
		if dec.Usage.RetryAfter <= 0 || dec.Usage.RetryAfter > 2*sigSkew {
			t.Errorf("got retry after %v, want it within 2×skew", dec.Usage.RetryAfter)
		}
		for _, req := range reqs[:3] {
			expect(t, d, req, policy.CodeSignatureReplayed)
		}
		// Once the first generation's signatures are past, there is room.
		f.clock.advance(dec.Usage.RetryAfter)
		again := reqs[4]
		sigSign(t, &again, f.tok.ID, f.secret, f.clock.now())
		expect(t, d, again, "")
	})

	t.Run("each replica has its own cache", func(t *testing.T) {
		f := newSigFixture(t, policy.Publishable)
		a := f.decider(t, f.box.Open, policy.SignatureOptions{Skew: sigSkew, Replay: mustReplayCache(t, 100, 100, f.clock)})
		b := f.decider(t, f.box.Open, policy.SignatureOptions{Skew: sigSkew, Replay: mustReplayCache(t, 100, 100, f.clock)})
		req := f.request()
		sigSign(t, &req, f.tok.ID, f.secret, f.clock.now())
		expect(t, a, req, "")
		expect(t, b, req, "") // the replay reaches a replica that never saw it
		expect(t, a, req, policy.CodeSignatureReplayed)
		expect(t, b, req, policy.CodeSignatureReplayed)
	})

	t.Run("no replay cache", func(t *testing.T) {
		f := newSigFixture(t, policy.Publishable)
		d := f.decider(t, f.box.Open, policy.SignatureOptions{Skew: sigSkew})
		req := f.request()
		sigSign(t, &req, f.tok.ID, f.secret, f.clock.now())
		expect(t, d, req, "")
		expect(t, d, req, "")
	})
}

// A token that requires signed requests cannot be checked without its
// signing secret: Decide fails (Envoy answers 503, failure_mode_allow is
// off) rather than allowing it unchecked or denying it as the caller's
// fault.
func TestSignedTokenWithoutSecret(t *testing.T) {
	otherBox, err := seal.NewBox(bytes.Repeat([]byte{8}, seal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		open   func(f *sigFixture) policy.Opener
		change func(tok *policy.Token)
	}{
		"no encryption key": {open: func(*sigFixture) policy.Opener { return nil }},
		"another key":       {open: func(*sigFixture) policy.Opener { return otherBox.Open }},
		"secret sealed for another token": {open: func(f *sigFixture) policy.Opener { return f.box.Open },
			change: func(tok *policy.Token) { tok.ID = policy.NewID("tok") }},
		"damaged secret": {open: func(f *sigFixture) policy.Opener { return f.box.Open },
			change: func(tok *policy.Token) { tok.SigningSecret[len(tok.SigningSecret)-1] ^= 1 }},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			f := newSigFixture(t, policy.Publishable)
			if c.change != nil {
				c.change(f.tok)
			}
			d := f.decider(t, c.open(f), policy.SignatureOptions{Skew: sigSkew})
			req := f.request()
			sigSign(t, &req, f.tok.ID, f.secret, f.clock.now())
			dec, err := d.Decide(context.Background(), &req)
			if err == nil {
				t.Fatalf("got %+v and no error, want an error", dec)
			}
			if dec.Allow {
				t.Error("allowed")
			}
			if got := policy.ErrorCode(err); got != policy.EInternal {
				t.Errorf("got code %v (%v), want %v", got, err, policy.EInternal)
			}
			if strings.Contains(err.Error(), string(f.secret)) {
				t.Errorf("the error %q quotes the signing secret", err)
			}
		})
	}
}

// The verifier keeps one day's key per token: requests signed on either
// side of midnight, interleaved, all verify.
func TestSignedAcrossMidnight(t *testing.T) {
	f := newSigFixture(t, policy.Publishable)
	f.clock.t.Store(time.Date(2026, 6, 1, 23, 59, 0, 0, time.UTC).UnixNano())
	d := f.decider(t, f.box.Open, policy.SignatureOptions{Skew: sigSkew})
	for _, at := range []time.Duration{0, 2 * time.Minute, 0, -time.Minute, 3 * time.Minute} {
		req := f.request()
		sigSign(t, &req, f.tok.ID, f.secret, f.clock.now().Add(at))
		if dec := mustDecide(t, d, req); !dec.Allow {
			t.Errorf("signed at %v: got %q (%s), want allowed", f.clock.now().Add(at), dec.Code, dec.Message)
		}
	}
	if bytes.Equal(signing.Key(f.secret, "20260601"), signing.Key(f.secret, "20260602")) {
		t.Error("got the same key on two days, want one per day")
	}
}
