package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/admin"
	"github.com/tollgate/tollgate/internal/manage"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// fixture is an account with an admin, a member, a second member and the
// secret token, behind a real API server over a real store.
type fixture struct {
	t      *testing.T
	db     *store.DB
	h      *admin.Handler
	srv    *httptest.Server
	acc    *policy.Account
	secret string
	admin  *client
	alice  *client // member
	bob    *client // member
	root   *client // the secret token
}

// client is one caller: a session (cookie jar and CSRF token) or a bearer.
type client struct {
	f      *fixture
	http   *http.Client
	csrf   string
	bearer string
	user   string
	// header is sent with every request; sign, when set, signs it last.
	header http.Header
	sign   func(*http.Request)
}

type resp struct {
	status int
	body   map[string]any
	raw    string
	header http.Header
}

func (c *client) do(method, path string, body any) resp {
	c.f.t.Helper()
	var rd io.Reader
	if s, ok := body.(string); ok {
		rd = strings.NewReader(s)
	} else if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.f.srv.URL+path, rd)
	if err != nil {
		c.f.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.csrf != "" {
		req.Header.Set("X-CSRF-Token", c.csrf)
	}
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	for k, vs := range c.header {
		req.Header[k] = vs
	}
	if c.sign != nil {
		c.sign(req)
	}
	hc := c.http
	if hc == nil {
		hc = http.DefaultClient
	}
	res, err := hc.Do(req)
	if err != nil {
		c.f.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := resp{status: res.StatusCode, raw: string(raw), header: res.Header}
	json.Unmarshal(raw, &r.body)
	return r
}

// want checks the status and, for errors, the code and field.
func (r resp) want(t *testing.T, what string, status int, codeField ...string) resp {
	t.Helper()
	if r.status != status {
		t.Errorf("%s: status %d (%s), want %d", what, r.status, r.raw, status)
		return r
	}
	if len(codeField) > 0 {
		e, _ := r.body["error"].(map[string]any)
		if e["code"] != codeField[0] || (len(codeField) > 1 && e["field"] != codeField[1]) {
			t.Errorf("%s: error %v, want code %v", what, e, codeField)
		}
		if e["message"] == "" {
			t.Errorf("%s: error without a message", what)
		}
	}
	return r
}

func (r resp) str(k string) string { s, _ := r.body[k].(string); return s }

func newFixture(t *testing.T, d store.Dialect) *fixture {
	t.Helper()
	return newFixtureWith(t, d, admin.Config{InsecureCookies: true})
}

// newFixtureWith is newFixture with the API configured by cfg.
func newFixtureWith(t *testing.T, d store.Dialect, cfg admin.Config) *fixture {
	t.Helper()
	db, _ := storetest.MustOpen(t, d)
	ctx := context.Background()
	acc := &policy.Account{Name: "Acme", Premium: true}
	_, secret, err := db.CreateAccount(ctx, acc)
	if err != nil {
		t.Fatal(err)
	}
	h := admin.New(db, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	f := &fixture{t: t, db: db, h: h, srv: httptest.NewServer(h), acc: acc, secret: secret}
	t.Cleanup(f.srv.Close)
	f.root = &client{f: f, bearer: secret}
	f.admin = f.signIn("admin@acme.test", policy.RoleAdmin)
	f.alice = f.signIn("alice@acme.test", policy.RoleMember)
	f.bob = f.signIn("bob@acme.test", policy.RoleMember)
	return f
}

// signIn makes a user and signs in through the API.
func (f *fixture) signIn(email string, role policy.Role) *client {
	f.t.Helper()
	hash, err := manage.HashPassword("correct horse battery")
	if err != nil {
		f.t.Fatal(err)
	}
	u := &policy.User{AccountID: f.acc.ID, Email: email, Role: role, PasswordHash: hash}
	if err := f.db.CreateUser(context.Background(), u); err != nil {
		f.t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	c := &client{f: f, http: &http.Client{Jar: jar}, user: u.ID}
	r := c.do("POST", "/v1/session", map[string]string{"email": email, "password": "correct horse battery"}).want(f.t, "sign in", 200)
	c.csrf = r.str("csrf_token")
	if c.csrf == "" {
		f.t.Fatalf("sign in gave no CSRF token: %s", r.raw)
	}
	return c
}

func TestAPI(t *testing.T) {
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, d)
			t.Run("authentication", f.testAuthentication)
			t.Run("token lifecycle", f.testTokenLifecycle)
			t.Run("ownership", f.testOwnership)
			t.Run("validation", f.testValidation)
			t.Run("teammates and audit", f.testTeammatesAndAudit)
		})
	}
}

func (f *fixture) testAuthentication(t *testing.T) {
	anon := &client{f: f}
	anon.do("GET", "/v1/tokens", nil).want(t, "no credentials", 401, "unauthorized")
	pub := &client{f: f, bearer: policy.NewValue(policy.Publishable)}
	pub.do("GET", "/v1/tokens", nil).want(t, "a publishable token", 403, "forbidden")
	(&client{f: f, bearer: "sk_garbage"}).do("GET", "/v1/tokens", nil).want(t, "a malformed token", 401, "unauthorized")
	(&client{f: f, bearer: policy.NewValue(policy.Secret)}).do("GET", "/v1/tokens", nil).want(t, "an unknown secret token", 401, "unauthorized")
	anon.do("POST", "/v1/session", map[string]string{"email": "admin@acme.test", "password": "wrong password!"}).want(t, "wrong password", 401, "unauthorized")
	anon.do("POST", "/v1/session", map[string]string{"email": "nobody@acme.test", "password": "correct horse battery"}).want(t, "unknown email", 401, "unauthorized")

	// A session's changes need its CSRF token; reads do not.
	noCSRF := &client{f: f, http: f.alice.http}
	noCSRF.do("GET", "/v1/tokens", nil).want(t, "read without CSRF", 200)
	noCSRF.do("POST", "/v1/tokens", map[string]any{}).want(t, "change without CSRF", 403, "forbidden", "X-CSRF-Token")
	wrong := &client{f: f, http: f.alice.http, csrf: "forged"}
	wrong.do("POST", "/v1/tokens", map[string]any{}).want(t, "change with a wrong CSRF token", 403, "forbidden")

	who := f.alice.do("GET", "/v1/session", nil).want(t, "who am I", 200)
	if who.str("csrf_token") != f.alice.csrf || who.body["admin"] != false {
		t.Errorf("who am I: %s", who.raw)
	}
	f.root.do("GET", "/v1/session", nil).want(t, "who am I (secret token)", 200)

	// Sign out ends the session.
	jarClient := f.signIn("carol@acme.test", policy.RoleMember)
	jarClient.do("DELETE", "/v1/session", nil).want(t, "sign out", 204)
	jarClient.do("GET", "/v1/tokens", nil).want(t, "after signing out", 401)

	// The cookie is HttpOnly and SameSite.
	anon2 := &client{f: f}
	r := anon2.do("POST", "/v1/session", map[string]string{"email": "admin@acme.test", "password": "correct horse battery"})
	if c := r.header.Get("Set-Cookie"); !strings.Contains(c, "HttpOnly") || !strings.Contains(c, "SameSite=Strict") {
		t.Errorf("session cookie %q, want HttpOnly and SameSite=Strict", c)
	}
}

func (f *fixture) testTokenLifecycle(t *testing.T) {
	c := f.alice
	created := c.do("POST", "/v1/tokens", map[string]any{
		"nickname": "web", "datasets": map[string][]string{"sales.*": {"read", "write"}},
		"allowed_domains": []string{"example.com"}, "allowed_apis": []string{"maps"}, "credit_limit": 500,
		"rate_limit": map[string]int{"rps": 10, "burst": 20},
	}).want(t, "create", 201)
	id, value := created.str("id"), created.str("token")
	if !strings.HasPrefix(value, "pk_") || created.str("kind") != "publishable" || created.body["core"] != true {
		t.Fatalf("create answered %s", created.raw)
	}
	got := c.do("GET", "/v1/tokens/"+id, nil).want(t, "get", 200)
	if got.str("token") != "" || strings.Contains(got.raw, value) {
		t.Error("a read shows the token's value")
	}
	if got.body["credit_limit"] != float64(500) || got.body["credits_used"] != float64(0) {
		t.Errorf("get: %s", got.raw)
	}

	// PATCH changes only what it names; null clears.
	p := c.do("PATCH", "/v1/tokens/"+id, map[string]any{"allowed_ips": []string{"10.0.0.0/8"}, "credit_limit": nil}).want(t, "patch", 200)
	if p.body["credit_limit"] != nil || p.body["nickname"] != "web" || len(p.body["allowed_ips"].([]any)) != 1 {
		t.Errorf("patch: %s", p.raw)
	}
	c.do("PATCH", "/v1/tokens/"+id, map[string]any{"enabled": false}).want(t, "disable", 200)

	// List: oldest first, paginated.
	for range 3 {
		c.do("POST", "/v1/tokens", map[string]any{}).want(t, "create more", 201)
	}
	page := c.do("GET", "/v1/tokens?limit=2", nil).want(t, "list page 1", 200)
	toks := page.body["tokens"].([]any)
	if len(toks) != 2 || toks[0].(map[string]any)["id"] != id || page.body["next"] == nil {
		t.Errorf("page 1: %s", page.raw)
	}
	page2 := c.do("GET", "/v1/tokens?limit=2&after="+page.str("next"), nil).want(t, "list page 2", 200)
	if len(page2.body["tokens"].([]any)) != 2 || page2.body["next"] != nil {
		t.Errorf("page 2: %s", page2.raw)
	}

	// Roll with a grace period: both values resolve meanwhile.
	rolled := c.do("POST", "/v1/tokens/"+id+"/roll", map[string]any{"grace_period": "1h"}).want(t, "roll", 200)
	newValue := rolled.str("token")
	if newValue == "" || newValue == value || rolled.body["previous_token_expires_at"] == nil {
		t.Errorf("roll: %s", rolled.raw)
	}
	for _, v := range []string{value, newValue} {
		if _, _, err := f.db.TokenByHash(context.Background(), policy.HashValue(v)); err != nil {
			t.Errorf("value after a roll with grace: %v", err)
		}
	}
	c.do("POST", "/v1/tokens/"+id+"/roll", nil).want(t, "roll without grace", 200)
	if _, _, err := f.db.TokenByHash(context.Background(), policy.HashValue(newValue)); err == nil {
		t.Error("a value rolled without grace still works")
	}
	c.do("POST", "/v1/tokens/"+id+"/roll", map[string]any{"grace_period": "soon"}).want(t, "bad grace", 400, "invalid", "grace_period")

	use := c.do("GET", "/v1/tokens/"+id+"/usage?days=7", nil).want(t, "usage", 200)
	if use.body["token_id"] != id {
		t.Errorf("usage: %s", use.raw)
	}
	c.do("GET", "/v1/tokens/"+id+"/usage?days=0", nil).want(t, "bad days", 400, "invalid", "days")

	c.do("DELETE", "/v1/tokens/"+id, nil).want(t, "delete", 204)
	c.do("GET", "/v1/tokens/"+id, nil).want(t, "get deleted", 404, "not_found")
	c.do("DELETE", "/v1/tokens/"+id, nil).want(t, "delete twice", 404, "not_found")

	acc := f.root.do("GET", "/v1/account", nil).want(t, "account", 200)
	if acc.str("plan") != "premium" || acc.str("period") != "month" {
		t.Errorf("account: %s", acc.raw)
	}
}

func (f *fixture) testOwnership(t *testing.T) {
	mine := f.alice.do("POST", "/v1/tokens", map[string]any{"nickname": "alice's"}).want(t, "alice creates", 201).str("id")
	unowned := f.root.do("POST", "/v1/tokens", map[string]any{"nickname": "account's"}).want(t, "secret token creates", 201).str("id")

	// Members see only their own; others' are not found.
	f.bob.do("GET", "/v1/tokens/"+mine, nil).want(t, "bob reads alice's", 404)
	f.bob.do("PATCH", "/v1/tokens/"+mine, map[string]any{"enabled": false}).want(t, "bob disables alice's", 404)
	f.bob.do("DELETE", "/v1/tokens/"+mine, nil).want(t, "bob deletes alice's", 404)
	f.bob.do("GET", "/v1/tokens/"+unowned, nil).want(t, "bob reads the account's", 404)
	for _, tok := range f.bob.do("GET", "/v1/tokens", nil).want(t, "bob lists", 200).body["tokens"].([]any) {
		if tok.(map[string]any)["user_id"] != f.bob.user {
			t.Errorf("bob's list shows %v", tok)
		}
	}

	for _, tok := range f.admin.do("GET", "/v1/tokens?owner=me", nil).want(t, "admin lists their own", 200).body["tokens"].([]any) {
		if tok.(map[string]any)["user_id"] != f.admin.user {
			t.Errorf("owner=me shows %v", tok)
		}
	}
	f.root.do("GET", "/v1/tokens?owner=me", nil).want(t, "owner=me with the secret token", 400, "invalid", "owner")
	f.admin.do("GET", "/v1/tokens?owner=bob", nil).want(t, "owner=bob", 400, "invalid", "owner")

	// Admins list, disable and delete any token, but change nothing else
	// and never see or make a value of another's token.
	f.admin.do("GET", "/v1/tokens/"+mine, nil).want(t, "admin reads alice's", 200)
	f.admin.do("PATCH", "/v1/tokens/"+mine, map[string]any{"enabled": false}).want(t, "admin disables alice's", 200)
	f.admin.do("PATCH", "/v1/tokens/"+mine, map[string]any{"allowed_domains": []string{"x.com"}}).want(t, "admin edits alice's", 403, "forbidden", "allowed_domains")
	f.admin.do("POST", "/v1/tokens/"+mine+"/roll", nil).want(t, "admin rolls alice's", 403, "forbidden")
	f.root.do("POST", "/v1/tokens/"+mine+"/roll", nil).want(t, "secret token rolls alice's", 403, "forbidden")
	f.root.do("PATCH", "/v1/tokens/"+unowned, map[string]any{"allowed_domains": []string{"x.com"}}).want(t, "secret token edits the account's", 200)
	f.admin.do("POST", "/v1/tokens/"+unowned+"/roll", nil).want(t, "admin rolls the account's", 200)
	f.admin.do("DELETE", "/v1/tokens/"+mine, nil).want(t, "admin deletes alice's", 204)

	// The secret token cannot lock the account out.
	list := f.root.do("GET", "/v1/tokens", nil).want(t, "secret token lists", 200)
	var secretID string
	for _, tok := range list.body["tokens"].([]any) {
		if m := tok.(map[string]any); m["kind"] == "secret" {
			secretID = m["id"].(string)
		}
	}
	f.root.do("PATCH", "/v1/tokens/"+secretID, map[string]any{"enabled": false}).want(t, "disable the secret token", 409, "conflict")
	f.root.do("DELETE", "/v1/tokens/"+secretID, nil).want(t, "delete the secret token", 409, "conflict")
	f.alice.do("POST", "/v1/tokens", map[string]any{"kind": "secret"}).want(t, "member makes a secret token", 403, "forbidden")
	f.root.do("POST", "/v1/tokens", map[string]any{"kind": "secret"}).want(t, "second secret token", 409, "conflict")
}

func (f *fixture) testValidation(t *testing.T) {
	c := f.alice
	for name, tc := range map[string]struct {
		body  string
		field string
	}{
		"bad cidr":      {`{"allowed_ips":["10.0.0.300/8"]}`, "allowed_ips"},
		"bad domain":    {`{"allowed_domains":["ftp://x.com"]}`, "allowed_domains"},
		"import + maps": {`{"allowed_apis":["import","maps"]}`, "allowed_apis"},
		"unknown api":   {`{"allowed_apis":["teleport"]}`, "allowed_apis"},
		"negative":      {`{"credit_limit":-1}`, "credit_limit"},
		"wrong type":    {`{"core":"yes"}`, "core"},
		"null bool":     {`{"core":null}`, "core"},
		"unknown field": {`{"colour":"red"}`, "colour"},
		"read-only":     {`{"id":"tok_x"}`, "id"},
		"bad actions":   {`{"datasets":{"sales":["fly"]}}`, "datasets"},
		"rate extra":    {`{"rate_limit":{"rps":1,"bust":2}}`, "rate_limit"},
		"signed no key": {`{"signed_requests":true}`, "signed_requests"},
	} {
		status, code := 400, "invalid"
		if name == "signed no key" {
			status, code = 409, "conflict"
		}
		c.do("POST", "/v1/tokens", tc.body).want(t, "create: "+name, status, code, tc.field)
	}
	c.do("POST", "/v1/tokens", `{"nickname":`).want(t, "broken JSON", 400, "invalid")
	c.do("POST", "/v1/tokens", `{} {}`).want(t, "two values", 400, "invalid")
	c.do("POST", "/v1/tokens", `{"nickname":"`+strings.Repeat("a", 70<<10)+`"}`).want(t, "oversized body", 413)
	id := c.do("POST", "/v1/tokens", map[string]any{"nickname": "keep"}).want(t, "create", 201).str("id")
	c.do("PATCH", "/v1/tokens/"+id, `{"allowed_ips":["nope"],"nickname":"changed"}`).want(t, "failed patch", 400, "invalid", "allowed_ips")
	if got := c.do("GET", "/v1/tokens/"+id, nil).str("nickname"); got != "keep" {
		t.Errorf("a failed patch changed the nickname to %q", got)
	}
}

func (f *fixture) testTeammatesAndAudit(t *testing.T) {
	f.alice.do("POST", "/v1/users", map[string]any{"email": "dave@acme.test"}).want(t, "member invites", 403, "forbidden")
	inv := f.admin.do("POST", "/v1/users", map[string]any{"email": "Dave@Acme.test", "role": "member"}).want(t, "admin invites", 201)
	if inv.str("password") == "" {
		t.Errorf("invite gave no first password: %s", inv.raw)
	}
	f.admin.do("POST", "/v1/users", map[string]any{"email": "dave@acme.test"}).want(t, "invite twice", 409, "conflict", "email")
	f.admin.do("POST", "/v1/users", map[string]any{"email": "not an email"}).want(t, "bad email", 400, "invalid", "email")
	f.admin.do("POST", "/v1/users", map[string]any{"email": "eve@acme.test", "role": "owner"}).want(t, "bad role", 400, "invalid", "role")
	users := f.alice.do("GET", "/v1/users", nil).want(t, "list users", 200).body["users"].([]any)
	var dave string
	for _, u := range users {
		if m := u.(map[string]any); m["email"] == "dave@acme.test" {
			dave = m["id"].(string)
		}
		if strings.Contains(f.alice.do("GET", "/v1/users", nil).raw, "password_hash") {
			t.Fatal("user list shows password hashes")
		}
	}
	f.alice.do("DELETE", "/v1/users/"+dave, nil).want(t, "member removes", 403)
	f.admin.do("DELETE", "/v1/users/"+f.admin.user, nil).want(t, "admin removes themself", 409, "conflict")
	f.admin.do("DELETE", "/v1/users/"+dave, nil).want(t, "admin removes", 204)
	f.admin.do("DELETE", "/v1/users/"+dave, nil).want(t, "remove twice", 404)

	f.alice.do("GET", "/v1/audit", nil).want(t, "member reads audit", 403)
	entries := f.admin.do("GET", "/v1/audit", nil).want(t, "audit", 200).body["entries"].([]any)
	actions := map[string]bool{}
	for _, e := range entries {
		m := e.(map[string]any)
		actions[m["action"].(string)] = true
		if m["ip"] == "" || m["actor"] == "" {
			t.Errorf("audit entry without ip or actor: %v", m)
		}
	}
	for _, want := range []string{"token.create", "token.update", "token.delete", "token.roll", "user.invite", "user.remove", "session.create"} {
		if !actions[want] {
			t.Errorf("audit log has no %s entry (has %v)", want, actions)
		}
	}
}

// TestOpenAPIMatchesRoutes checks the served document against the routes:
// every route is documented, and every documented operation exists.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	f := newFixture(t, store.SQLite)
	r := (&client{f: f}).do("GET", "/v1/openapi.json", nil).want(t, "openapi", 200)
	paths, _ := r.body["paths"].(map[string]any)
	documented := map[[2]string]bool{}
	for path, ops := range paths {
		for method := range ops.(map[string]any) {
			documented[[2]string{strings.ToUpper(method), path}] = true
		}
	}
	routes := admin.Routes()
	for _, rt := range routes {
		if !documented[rt] {
			t.Errorf("route %s %s is not in the OpenAPI document", rt[0], rt[1])
		}
	}
	for d := range documented {
		if !slices.Contains(routes, d) {
			t.Errorf("the OpenAPI document has %s %s, which is not a route", d[0], d[1])
		}
	}
	if _, err := os.Stat("openapi.json"); err != nil {
		t.Fatal(err)
	}
}
