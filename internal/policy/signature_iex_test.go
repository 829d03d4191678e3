package policy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/signing"
)

// iexSign signs req the IEX way in form as of at: it sets x-iex-date and
// Authorization, the payload being the body's hash or the empty body's.
func iexSign(tb testing.TB, req *policy.Request, credential string, secret []byte, at time.Time, form signing.IEXForm) {
	tb.Helper()
	h := req.Headers.(sigHeaders)
	at = at.UTC()
	day := at.Format("20060102")
	h[signing.IEXDateHeader] = at.Format(signing.DateFormat)
	r := signing.IEXRequest{Method: req.Method, Path: req.Path, RawQuery: req.RawQuery, Host: h["host"],
		Date: h[signing.IEXDateHeader], PayloadHash: signing.HashPayload(req.Body)}
	a := signing.IEXAuthorization{Credential: credential, Day: day,
		Signature: signing.IEXSignature(signing.IEXKey(secret, day), signing.IEXStringToSign(r.Date, day, signing.IEXCanonicalRequest(r, form)))}
	req.Authorization = a.String()
}

// TestIEXSignedRequests is every allow and deny path of a token that
// requires signed requests, signed with IEX Cloud's scheme.
func TestIEXSignedRequests(t *testing.T) {
	body := []byte(`{"symbol":"AAPL","side":"buy","quantity":10}`)
	withBody := func(_ *sigFixture, r *policy.Request) {
		r.Method, r.Path, r.RawQuery = "POST", "/v1/orders", "dry_run=true&token="+r.Token
		r.Body, r.HasBody = body, true
	}
	cases := map[string]struct {
		before  func(f *sigFixture, r *policy.Request)
		form    signing.IEXForm            // 0: IEXFullPath
		cred    func(f *sigFixture) string // nil: the token itself
		at      time.Duration              // the signing time less the server's
		after   func(r *policy.Request)    // what changes on the way
		want    policy.DenyCode            // "" = allow
		wantMsg string
	}{
		// Allowed.
		"IEX's Python sample's form":       {},
		"IEXSharp's form":                  {form: signing.IEXRelativePath},
		"body hashed (Envoy sends it)":     {before: withBody},
		"body hashed, IEXSharp's form":     {before: withBody, form: signing.IEXRelativePath},
		"unsigned header changed":          {after: func(r *policy.Request) { r.Headers.(sigHeaders)["user-agent"] = "other" }},
		"exactly skew in the past":         {at: -sigSkew},
		"exactly skew in the future":       {at: sigSkew},
		"IEXSharp's form, version differs": {form: signing.IEXRelativePath, after: func(r *policy.Request) { r.Path = "/stable/prices/AAPL" }},

		// signature_invalid.
		"unparsable authorization": {after: func(r *policy.Request) {
			r.Authorization = strings.Replace(r.Authorization, "SignedHeaders=host;", "SignedHeaders=", 1)
		}, want: policy.CodeSignatureInvalid, wantMsg: "SignedHeaders must be host;x-iex-date"},
		"credential is the token id": {cred: func(f *sigFixture) string { return f.tok.ID },
			want: policy.CodeSignatureInvalid, wantMsg: "names another token"},
		"credential is another token": {cred: func(*sigFixture) string { return policy.NewValue(policy.Publishable) },
			want: policy.CodeSignatureInvalid, wantMsg: "names another token"},
		"partial body": {before: withBody, after: func(r *policy.Request) { r.Partial = true },
			want: policy.CodeSignatureInvalid, wantMsg: "larger than the proxy forwards"},
		"method tampered": {after: func(r *policy.Request) { r.Method = "DELETE" },
			want: policy.CodeSignatureInvalid, wantMsg: "signature does not match"},
		"path tampered": {after: func(r *policy.Request) { r.Path = "/v1/prices/MSFT" }, want: policy.CodeSignatureInvalid},
		"path tampered, IEXSharp's form": {form: signing.IEXRelativePath, after: func(r *policy.Request) { r.Path = "/v1/prices/MSFT" },
			want: policy.CodeSignatureInvalid},
		"query tampered":     {after: func(r *policy.Request) { r.RawQuery = strings.Replace(r.RawQuery, "1d", "5y", 1) }, want: policy.CodeSignatureInvalid},
		"query reordered":    {after: func(r *policy.Request) { r.RawQuery = "range=1d&" + strings.Replace(r.RawQuery, "&range=1d", "", 1) }, want: policy.CodeSignatureInvalid},
		"query added":        {form: signing.IEXRelativePath, after: func(r *policy.Request) { r.RawQuery += "&limit=1000" }, want: policy.CodeSignatureInvalid},
		"host tampered":      {after: func(r *policy.Request) { r.Headers.(sigHeaders)["host"] = "api.example.net" }, want: policy.CodeSignatureInvalid},
		"body tampered":      {before: withBody, after: func(r *policy.Request) { r.Body = []byte(`{}`) }, want: policy.CodeSignatureInvalid},
		"body not forwarded": {before: withBody, after: func(r *policy.Request) { r.Body, r.HasBody = nil, false }, want: policy.CodeSignatureInvalid},
		"date header tampered": {after: func(r *policy.Request) { r.Headers.(sigHeaders)[signing.IEXDateHeader] = "20260601T120001Z" },
			want: policy.CodeSignatureInvalid},
		"date header garbled": {after: func(r *policy.Request) {
			r.Headers.(sigHeaders)[signing.IEXDateHeader] = "Mon, 01 Jun 2026 12:00:00 GMT"
		},
			want: policy.CodeSignatureInvalid, wantMsg: "YYYYMMDDTHHMMSSZ"},
		"date in Tollgate's header only": {after: func(r *policy.Request) {
			h := r.Headers.(sigHeaders)
			h[signing.DateHeader], h[signing.IEXDateHeader] = h[signing.IEXDateHeader], ""
		}, want: policy.CodeSignatureInvalid, wantMsg: "x-iex-date"},
		"signed with another secret": {before: func(f *sigFixture, _ *policy.Request) { f.secret = []byte(policy.NewSigningSecret()) },
			want: policy.CodeSignatureInvalid, wantMsg: "signature does not match"},

		// signature_expired.
		"a second beyond skew in the past":   {at: -sigSkew - time.Second, want: policy.CodeSignatureExpired, wantMsg: "more than 5m0s"},
		"a second beyond skew in the future": {at: sigSkew + time.Second, want: policy.CodeSignatureExpired, wantMsg: "check the client's clock"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			f := newSigFixture(t, policy.Publishable)
			d := f.decider(t, f.box.Open, policy.SignatureOptions{Skew: sigSkew, Replay: mustReplayCache(t, 100, 100, f.clock)})
			req := f.request()
			req.RawQuery += "&token=" + f.value
			if c.before != nil {
				c.before(f, &req)
			}
			cred := f.value
			if c.cred != nil {
				cred = c.cred(f)
			}
			iexSign(t, &req, cred, f.secret, f.clock.now().Add(c.at), max(c.form, signing.IEXFullPath))
			if c.after != nil {
				c.after(&req)
			}
			dec := mustDecide(t, d, req)
			if dec.Code != c.want || dec.Allow != (c.want == "") {
				t.Fatalf("got allow=%v code=%q (%s), want code %q", dec.Allow, dec.Code, dec.Message, c.want)
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
		})
	}
}

// TestIEXSignatureReplay: an IEX signature is remembered like Tollgate's,
// in either form, and a required signature names both schemes.
func TestIEXSignatureReplay(t *testing.T) {
	for _, form := range []signing.IEXForm{signing.IEXFullPath, signing.IEXRelativePath} {
		f := newSigFixture(t, policy.Publishable)
		d := f.decider(t, f.box.Open, policy.SignatureOptions{Skew: sigSkew, Replay: mustReplayCache(t, 100, 100, f.clock)})
		req := f.request()
		iexSign(t, &req, f.value, f.secret, f.clock.now(), form)
		expect(t, d, req, "")
		expect(t, d, req, policy.CodeSignatureReplayed)
		f.clock.advance(sigSkew)
		expect(t, d, req, policy.CodeSignatureReplayed)
		f.clock.advance(time.Second)
		expect(t, d, req, policy.CodeSignatureExpired)
	}
	f := newSigFixture(t, policy.Publishable)
	d := f.decider(t, f.box.Open, policy.SignatureOptions{Skew: sigSkew})
	if dec := mustDecide(t, d, f.request()); dec.Code != policy.CodeSignatureRequired || !strings.Contains(dec.Message, signing.IEXAlgorithm) {
		t.Errorf("got %q (%s), want %q naming %s", dec.Code, dec.Message, policy.CodeSignatureRequired, signing.IEXAlgorithm)
	}
}

// TestIEXSignedAcrossMidnight: the IEX day key is derived again for a new
// day, beside Tollgate's, on the same token.
func TestIEXSignedAcrossMidnight(t *testing.T) {
	f := newSigFixture(t, policy.Publishable)
	f.clock.t.Store(time.Date(2026, 6, 1, 23, 59, 0, 0, time.UTC).UnixNano())
	d := f.decider(t, f.box.Open, policy.SignatureOptions{Skew: sigSkew})
	for i, at := range []time.Duration{0, 2 * time.Minute, 0, -time.Minute, 3 * time.Minute} {
		req := f.request()
		if i%2 == 0 {
			iexSign(t, &req, f.value, f.secret, f.clock.now().Add(at), signing.IEXFullPath)
		} else {
			sigSign(t, &req, f.tok.ID, f.secret, f.clock.now().Add(at))
		}
		if dec := mustDecide(t, d, req); !dec.Allow {
			t.Errorf("signed at %v: got %q (%s), want allowed", f.clock.now().Add(at), dec.Code, dec.Message)
		}
	}
}
