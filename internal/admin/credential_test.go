package admin_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/admin"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/seal"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/internal/store/storetest"
	"github.com/tollgate/tollgate/signing"
)

// MustSecurityFixture is a fixture whose API holds the secret token to
// Check's rules as a production server would: an encryption key for
// signing secrets and a replay cache.
func MustSecurityFixture(tb testing.TB, t *testing.T, d store.Dialect, hops int, allowBrowser bool) *fixture {
	tb.Helper()
	box, err := seal.NewBox(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		tb.Fatal(err)
	}
	replay, err := policy.NewReplayCache(policy.ReplayConfig{Size: 1000, PerToken: 1000}, time.Now)
	if err != nil {
		tb.Fatal(err)
	}
	return newFixtureWith(t, d, admin.Config{InsecureCookies: true, Box: box, TrustedHops: hops, Eval: policy.EvalOptions{
		AllowSecretInBrowser: allowBrowser,
		Signatures:           policy.SignatureOptions{Skew: 5 * time.Minute, Replay: replay},
	}})
}

// secretID returns the id of the account's secret token.
func (f *fixture) secretID() string {
	f.t.Helper()
	id := f.root.do("GET", "/v1/session", nil).str("token_id")
	if id == "" {
		f.t.Fatal("the secret token does not know its id")
	}
	return id
}

// setSecret resets the secret token to no restrictions and applies fn, as
// the operator's CLI would (the store, not the API, so that no lockout
// rule stands in the way).
func (f *fixture) setSecret(id string, fn func(*policy.Token)) {
	f.t.Helper()
	_, err := f.db.UpdateToken(context.Background(), id, func(t *policy.Token) error {
		t.Enabled, t.ExpiresAt, t.IPs, t.Domains, t.Signed, t.SigningSecret = true, nil, nil, nil, false, nil
		if fn != nil {
			fn(t)
		}
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

// signer signs a request with the secret token in X-API-Key and the
// token's id as the Credential, as docs/signing.md tells a client to.
func (f *fixture) signer(id, secret string) *client {
	return &client{f: f, header: http.Header{"X-Api-Key": {f.secret}}, sign: func(r *http.Request) {
		if err := signing.SignHTTP(r, id, []byte(secret), time.Now()); err != nil {
			f.t.Fatal(err)
		}
	}}
}

// wantDeny checks an error answer and that its message starts with Check's
// stable code for the same deny.
func (r resp) wantDeny(t *testing.T, what string, status int, checkCode policy.DenyCode) {
	t.Helper()
	r.want(t, what, status)
	e, _ := r.body["error"].(map[string]any)
	if msg, _ := e["message"].(string); checkCode != "" && !strings.HasPrefix(msg, string(checkCode)+": ") {
		t.Errorf("%s: message %q, want it to start with %q", what, msg, checkCode)
	}
}

// TestSecretTokenHeldToCheckRules is the catalogue of issue 12 item 3: a
// secret token's restrictions apply to the Tokens API exactly as to Check.
func TestSecretTokenHeldToCheckRules(t *testing.T) {
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			f := MustSecurityFixture(t, t, d, 0, false)
			id := f.secretID()
			const signingSecret = "tss_0123456789abcdefghijABCDEFGHIJ0123456789"
			box, _ := seal.NewBox(bytes.Repeat([]byte{7}, 32))
			signed := func(t *policy.Token) { t.Signed, t.SigningSecret = true, box.Seal(t.ID, []byte(signingSecret)) }
			past := time.Now().Add(-time.Hour)
			for name, tc := range map[string]struct {
				token  func(*policy.Token)
				caller *client
				header map[string]string
				status int
				code   policy.DenyCode
			}{
				"no restrictions":                   {status: 200},
				"disabled":                          {token: func(t *policy.Token) { t.Enabled = false }, status: 401, code: policy.CodeTokenDisabled},
				"expired":                           {token: func(t *policy.Token) { t.ExpiresAt = &past }, status: 401, code: policy.CodeTokenExpired},
				"ip range leaves the caller out":    {token: func(t *policy.Token) { t.IPs = []string{"10.0.0.0/8"} }, status: 403, code: policy.CodeIPDenied},
				"ip range and a forged xff":         {token: func(t *policy.Token) { t.IPs = []string{"10.0.0.0/8"} }, header: map[string]string{"X-Forwarded-For": "10.1.2.3"}, status: 403, code: policy.CodeIPDenied},
				"ip range holds the caller":         {token: func(t *policy.Token) { t.IPs = []string{"127.0.0.0/8", "::1/128"} }, status: 200},
				"from a browser: origin":            {header: map[string]string{"Origin": "https://app.example.com"}, status: 403, code: policy.CodeSecretTokenInBrowser},
				"from a browser: referer only":      {header: map[string]string{"Referer": "https://app.example.com/x"}, status: 403, code: policy.CodeSecretTokenInBrowser},
				"from a browser: sec-fetch-site":    {header: map[string]string{"Sec-Fetch-Site": "cross-site"}, status: 403, code: policy.CodeSecretTokenInBrowser},
				"signatures required, unsigned":     {token: signed, status: 401, code: policy.CodeSignatureRequired},
				"signatures required, signed":       {token: signed, caller: f.signer(id, signingSecret), status: 200},
				"signatures required, wrong secret": {token: signed, caller: f.signer(id, "tss_wrongwrongwrongwrongwrongwrongwrongwrong"), status: 401, code: policy.CodeSignatureInvalid},
				"signature without the token":       {token: signed, caller: &client{f: f, header: http.Header{"Authorization": {"TOLLGATE-HMAC-SHA256 Credential=x"}}}, status: 401},
				"two different tokens":              {header: map[string]string{"X-API-Key": policy.NewValue(policy.Secret)}, status: 401},
				"publishable in x-api-key":          {caller: &client{f: f, header: http.Header{"X-Api-Key": {policy.NewValue(policy.Publishable)}}}, status: 403},
				"not a bearer":                      {caller: &client{f: f, header: http.Header{"Authorization": {"Basic " + f.secret}}}, status: 401},
			} {
				t.Run(name, func(t *testing.T) {
					f.setSecret(id, tc.token)
					c := tc.caller
					if c == nil {
						c = &client{f: f, bearer: f.secret, header: http.Header{}}
					}
					for k, v := range tc.header {
						c.header.Set(k, v)
					}
					c.do("GET", "/v1/tokens", nil).wantDeny(t, "list tokens", tc.status, tc.code)
				})
			}

			// A signature is good once, and covers the body.
			f.setSecret(id, signed)
			var kept *http.Request
			once := f.signer(id, signingSecret)
			sign := once.sign
			once.sign = func(r *http.Request) { sign(r); kept = r.Clone(context.Background()) }
			// Another query than the table's signed case: signatures made in
			// the same second over the same request are the same.
			once.do("GET", "/v1/tokens?limit=7", nil).want(t, "signed", 200)
			again := &client{f: f, sign: func(r *http.Request) { r.Header = kept.Header.Clone() }}
			again.do("GET", "/v1/tokens?limit=7", nil).wantDeny(t, "replayed", 401, policy.CodeSignatureReplayed)
			tamper := f.signer(id, signingSecret)
			sign2 := tamper.sign
			tamper.sign = func(r *http.Request) {
				sign2(r)
				r.Body = io.NopCloser(strings.NewReader(`{"nickname":"changed"}`))
				r.ContentLength = int64(len(`{"nickname":"changed"}`))
			}
			tamper.do("PATCH", "/v1/tokens/"+id, map[string]any{"nickname": "signed"}).wantDeny(t, "body changed after signing", 401, policy.CodeSignatureInvalid)
			f.signer(id, signingSecret).do("PATCH", "/v1/tokens/"+id, map[string]any{"nickname": "signed"}).want(t, "signed change", 200)
		})
	}
}

// TestSecretTokenDomainsWhenBrowsersAllowed: with secret tokens let into
// browsers, the token's domain list applies as in Check.
func TestSecretTokenDomainsWhenBrowsersAllowed(t *testing.T) {
	f := MustSecurityFixture(t, t, store.SQLite, 0, true)
	id := f.secretID()
	f.setSecret(id, func(t *policy.Token) { t.Domains = []string{"app.example.com"} })
	for name, tc := range map[string]struct {
		referer string
		status  int
		code    policy.DenyCode
	}{
		"allowed domain": {"https://app.example.com/page", 200, ""},
		"other domain":   {"https://evil.example.net/", 403, policy.CodeRefererDenied},
		"no referer":     {"", 403, policy.CodeRefererDenied},
	} {
		t.Run(name, func(t *testing.T) {
			c := &client{f: f, bearer: f.secret, header: http.Header{}}
			if tc.referer != "" {
				c.header.Set("Referer", tc.referer)
			}
			c.do("GET", "/v1/tokens", nil).wantDeny(t, "list tokens", tc.status, tc.code)
		})
	}
}

// TestAPIClientIP: behind --api-xff-trusted-hops proxies, the caller is the
// entry that many from the right of every X-Forwarded-For line; what cannot
// be placed is outside every IP range.
func TestAPIClientIP(t *testing.T) {
	f := MustSecurityFixture(t, t, store.SQLite, 1, false)
	id := f.secretID()
	f.setSecret(id, func(t *policy.Token) { t.IPs = []string{"203.0.113.0/24"} })
	for name, tc := range map[string]struct {
		xff    []string
		status int
	}{
		"appended by the proxy":           {[]string{"203.0.113.7"}, 200},
		"client's own entry on the left":  {[]string{"203.0.113.7, 10.0.0.1"}, 403},
		"last line counts":                {[]string{"203.0.113.7", "10.0.0.1"}, 403},
		"allowed entry in the last line":  {[]string{"10.0.0.1", "203.0.113.9"}, 200},
		"no header: cannot be placed":     {nil, 403},
		"not an address":                  {[]string{"203.0.113.7, bogus"}, 403},
		"ipv4-mapped ipv6 is the same ip": {[]string{"::ffff:203.0.113.7"}, 200},
	} {
		t.Run(name, func(t *testing.T) {
			c := &client{f: f, bearer: f.secret, header: http.Header{}}
			for _, v := range tc.xff {
				c.header.Add("X-Forwarded-For", v)
			}
			c.do("GET", "/v1/tokens", nil).want(t, "list tokens", tc.status)
		})
	}
}

// TestSecretTokenCannotBeLockedOut is the catalogue of every path through
// the API that could leave the account's secret token unusable.
func TestSecretTokenCannotBeLockedOut(t *testing.T) {
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			f := MustSecurityFixture(t, t, d, 0, false)
			id := f.secretID()
			past := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
			future := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
			for name, tc := range map[string]struct {
				caller       *client
				method, path string
				body         any
				status       int
				field        string
			}{
				"disable":                          {f.root, "PATCH", "", map[string]any{"enabled": false}, 409, ""},
				"disable, by an admin":             {f.admin, "PATCH", "", map[string]any{"enabled": false}, 409, ""},
				"delete":                           {f.root, "DELETE", "", nil, 409, ""},
				"delete, by an admin":              {f.admin, "DELETE", "", nil, 409, ""},
				"expiry in the past":               {f.root, "PATCH", "", map[string]any{"expires_at": past}, 409, "expires_at"},
				"expiry in the past, by an admin":  {f.admin, "PATCH", "", map[string]any{"expires_at": past}, 409, "expires_at"},
				"expiry in the future":             {f.root, "PATCH", "", map[string]any{"expires_at": future}, 200, ""},
				"ip range that leaves it out":      {f.root, "PATCH", "", map[string]any{"allowed_ips": []string{"10.0.0.0/8"}}, 409, ""},
				"ip range that keeps it in":        {f.root, "PATCH", "", map[string]any{"allowed_ips": []string{"127.0.0.0/8", "::1/128"}}, 200, ""},
				"ip range, by an admin":            {f.admin, "PATCH", "", map[string]any{"allowed_ips": []string{"10.0.0.0/8"}}, 200, ""},
				"allowed domains":                  {f.root, "PATCH", "", map[string]any{"allowed_domains": []string{"app.example.com"}}, 409, "allowed_domains"},
				"allowed domains, by an admin":     {f.admin, "PATCH", "", map[string]any{"allowed_domains": []string{"app.example.com"}}, 409, "allowed_domains"},
				"a second secret token":            {f.root, "POST", "/v1/tokens", map[string]any{"kind": "secret"}, 409, ""},
				"a disabled change and a good one": {f.root, "PATCH", "", map[string]any{"enabled": false, "nickname": "x"}, 409, ""},
			} {
				t.Run(name, func(t *testing.T) {
					f.setSecret(id, nil)
					path := tc.path
					if path == "" {
						path = "/v1/tokens/" + id
					}
					r := tc.caller.do(tc.method, path, tc.body)
					if tc.status == 409 {
						if tc.field != "" {
							r.want(t, name, 409, "conflict", tc.field)
						} else {
							r.want(t, name, 409, "conflict")
						}
						// Refused means nothing changed: the token still
						// answers.
						f.root.do("GET", "/v1/tokens", nil).want(t, "the secret token after a refused change", 200)
					} else {
						r.want(t, name, tc.status)
					}
				})
			}

			// Switching signatures on is not a lockout: the answer carries
			// the signing secret, and the next request signs with it.
			f.setSecret(id, nil)
			on := f.root.do("PATCH", "/v1/tokens/"+id, map[string]any{"signed_requests": true}).want(t, "signatures on", 200)
			secret := on.str("signing_secret")
			if secret == "" {
				t.Fatalf("signatures on gave no signing secret: %s", on.raw)
			}
			f.root.do("GET", "/v1/tokens", nil).wantDeny(t, "unsigned after signatures on", 401, policy.CodeSignatureRequired)
			f.signer(id, secret).do("PATCH", "/v1/tokens/"+id, map[string]any{"signed_requests": false}).want(t, "signed: signatures off", 200)
			f.root.do("GET", "/v1/tokens", nil).want(t, "unsigned after signatures off", 200)
		})
	}
}
