package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tollgate/tollgate/internal/admin"
	"github.com/tollgate/tollgate/internal/cli"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// countingStore is the real store, counting the token look-ups the API
// makes, to show which requests reach the store at all.
type countingStore struct {
	*store.DB
	lookups atomic.Int64
}

func (s *countingStore) TokenByHash(ctx context.Context, h policy.Hash) (*policy.Token, *policy.Account, error) {
	s.lookups.Add(1)
	return s.DB.TokenByHash(ctx, h)
}

func (s *countingStore) Token(ctx context.Context, id string) (*policy.Token, error) {
	s.lookups.Add(1)
	return s.DB.Token(ctx, id)
}

// cartoFixture is the API over a real store, with the store's URL (for the
// CLI), the look-up counter, the secret token and a signed-in admin and
// member.
type cartoFixture struct {
	*fixture
	url   string
	count *countingStore
}

func newCartoFixture(t *testing.T, d store.Dialect) *cartoFixture {
	t.Helper()
	db, u := storetest.MustOpen(t, d)
	acc := &policy.Account{Name: "Acme", Premium: true}
	_, secret, err := db.CreateAccount(context.Background(), acc)
	if err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{DB: db}
	h := admin.New(cs, admin.Config{InsecureCookies: true}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	f := &fixture{t: t, db: db, h: h, srv: httptest.NewServer(h), acc: acc, secret: secret}
	t.Cleanup(f.srv.Close)
	f.root = &client{f: f, bearer: secret}
	f.admin = f.signIn("admin@acme.test", policy.RoleAdmin)
	f.alice = f.signIn("alice@acme.test", policy.RoleMember)
	return &cartoFixture{fixture: f, url: u, count: cs}
}

// cartoCase is one documented request of testdata/carto_requests.json.
type cartoCase struct {
	Name   string            `json:"name"`
	Source string            `json:"source"`
	Body   json.RawMessage   `json:"body"`
	WantV3 map[string]any    `json:"want_v3"`
	WantV1 []json.RawMessage `json:"want_v1"`
}

func loadCartoCases(t *testing.T) (create []cartoCase, update cartoCase) {
	t.Helper()
	raw, err := os.ReadFile("testdata/carto_requests.json")
	if err != nil {
		t.Fatal(err)
	}
	var fx struct {
		Create []cartoCase `json:"create"`
		Update cartoCase   `json:"update"`
	}
	if err := json.Unmarshal(raw, &fx); err != nil {
		t.Fatal(err)
	}
	return fx.Create, fx.Update
}

// subset reports the keys of want whose values differ in got.
func subset(got, want map[string]any) []string {
	var diff []string
	for k, w := range want {
		if !reflect.DeepEqual(got[k], w) {
			diff = append(diff, k)
		}
	}
	return diff
}

// wantCartoError checks CARTO's error shape: a top-level error string.
func (r resp) wantCartoError(t *testing.T, what string, status int, code string, contains ...string) {
	t.Helper()
	if r.status != status {
		t.Errorf("%s: status %d (%s), want %d", what, r.status, r.raw, status)
		return
	}
	msg, ok := r.body["error"].(string)
	if !ok || msg == "" {
		t.Errorf("%s: body %s, want {\"error\": \"…\"}", what, r.raw)
		return
	}
	if r.body["code"] != code {
		t.Errorf("%s: code %v, want %s", what, r.body["code"], code)
	}
	for _, s := range contains {
		if !strings.Contains(msg, s) {
			t.Errorf("%s: error %q, want it to mention %q", what, msg, s)
		}
	}
}

// TestCartoReplaysDocumentedRequests sends CARTO's documented request
// shapes to /v3 and checks the answers, the same tokens as /v1 sees them,
// and get, update and delete by the token's value.
func TestCartoReplaysDocumentedRequests(t *testing.T) {
	creates, update := loadCartoCases(t)
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			f := newCartoFixture(t, d)
			var values, ids []string
			var owners []*client
			for i, c := range creates {
				// The secret token and a console session both authenticate /v3.
				caller := f.root
				if i%2 == 1 {
					caller = f.admin
				}
				r := caller.do("POST", "/v3/tokens", string(c.Body)).want(t, c.Name, 201)
				if diff := subset(r.body, c.WantV3); diff != nil {
					t.Errorf("%s (%s): fields %v differ: got %s, want %v", c.Name, c.Source, diff, r.raw, c.WantV3)
				}
				value := r.str("token")
				if _, err := policy.ParseValue(value); err != nil || !strings.HasPrefix(value, "pk_") {
					t.Fatalf("%s: token %q is not a publishable value", c.Name, value)
				}
				values, ids, owners = append(values, value), append(ids, r.str("id")), append(owners, caller)

				got := caller.do("GET", "/v3/tokens/"+value, nil).want(t, c.Name+": get by value", 200)
				if _, shown := got.body["token"]; shown {
					t.Errorf("%s: get shows the value: %s", c.Name, got.raw)
				}
				if diff := subset(got.body, c.WantV3); diff != nil {
					t.Errorf("%s: get: fields %v differ: %s", c.Name, diff, got.raw)
				}
				v1 := f.root.do("GET", "/v1/tokens/"+r.str("id"), nil).want(t, c.Name+": /v1", 200)
				var wantGrants []any
				for _, g := range c.WantV1 {
					var m any
					json.Unmarshal(g, &m)
					wantGrants = append(wantGrants, m)
				}
				if !reflect.DeepEqual(v1.body["grants"], wantGrants) {
					t.Errorf("%s: /v1 grants %v, want %v", c.Name, v1.body["grants"], wantGrants)
				}
				if v1.body["core"] != false || v1.body["kind"] != "publishable" {
					t.Errorf("%s: /v1 core %v kind %v, want a publishable token without core data", c.Name, v1.body["core"], v1.body["kind"])
				}
			}

			list := f.root.do("GET", "/v3/tokens", nil).want(t, "list", 200)
			listed := map[string]bool{}
			for _, tok := range list.body["tokens"].([]any) {
				m := tok.(map[string]any)
				listed[m["id"].(string)] = true
				if _, shown := m["token"]; shown {
					t.Errorf("list shows a value: %v", m)
				}
			}
			for _, id := range ids {
				if !listed[id] {
					t.Errorf("list misses %s: %s", id, list.raw)
				}
			}

			// Whoever made the token changes it (a token a user made is
			// hers: the Service refuses the secret token's change).
			last, owner := values[len(values)-1], owners[len(owners)-1]
			if owner != f.root {
				f.root.do("PATCH", "/v3/tokens/"+last, string(update.Body)).wantCartoError(t, "another's token", 403, "forbidden")
			}
			r := owner.do("PATCH", "/v3/tokens/"+last, string(update.Body)).want(t, update.Name, 200)
			if diff := subset(r.body, update.WantV3); diff != nil {
				t.Errorf("%s (%s): fields %v differ: %s", update.Name, update.Source, diff, r.raw)
			}
			v1 := f.root.do("GET", "/v1/tokens/"+ids[len(ids)-1], nil).want(t, "update seen by /v1", 200)
			if !reflect.DeepEqual(v1.body["allowed_domains"], []any{"https://maps.example.com"}) {
				t.Errorf("/v1 allowed_domains %v after the /v3 update", v1.body["allowed_domains"])
			}
			// Tollgate's id names the token as well as its value does.
			f.root.do("GET", "/v3/tokens/"+ids[0], nil).want(t, "get by id", 200)

			for i, v := range values {
				f.root.do("DELETE", "/v3/tokens/"+v, nil).want(t, "delete "+creates[i].Name, 204)
				f.root.do("GET", "/v3/tokens/"+v, nil).wantCartoError(t, "get after delete", 404, "not_found")
				f.root.do("GET", "/v1/tokens/"+ids[i], nil).want(t, "/v1 after delete", 404)
			}
		})
	}
}

// TestCartoErrors checks that /v3 refuses what /v1 refuses, by the same
// rules, in CARTO's error shape; and that a malformed value in the path is
// refused before any look-up.
func TestCartoErrors(t *testing.T) {
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			f := newCartoFixture(t, d)
			anon := &client{f: f.fixture}
			r := anon.do("GET", "/v3/tokens", nil)
			r.wantCartoError(t, "no credentials", 401, "unauthorized")
			if r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
			(&client{f: f.fixture, bearer: policy.NewValue(policy.Publishable)}).do("GET", "/v3/tokens", nil).
				wantCartoError(t, "a publishable token", 403, "forbidden")
			(&client{f: f.fixture, http: f.admin.http}).do("POST", "/v3/tokens", `{"allowed_apis":["sql"]}`).
				wantCartoError(t, "a session's change without CSRF", 403, "forbidden")

			// import + sql: the rule is policy's, so /v1 and /v3 give the
			// same message.
			v1 := f.root.do("POST", "/v1/tokens", map[string]any{"allowed_apis": []string{"import", "sql"}}).want(t, "/v1 import+sql", 400, "invalid", "allowed_apis")
			v1msg, _ := v1.body["error"].(map[string]any)["message"].(string)
			for _, apis := range []string{`["import","sql"]`, `["imports","sql"]`} {
				f.root.do("POST", "/v3/tokens", `{"grants":[],"allowed_apis":`+apis+`}`).
					wantCartoError(t, "/v3 "+apis, 400, "invalid", "allowed_apis: "+v1msg)
			}
			imp := f.root.do("POST", "/v3/tokens", `{"grants":[],"allowed_apis":["imports"]}`).want(t, "imports alone", 201)
			f.root.do("PATCH", "/v3/tokens/"+imp.str("token"), `{"allowed_apis":["import","maps"]}`).
				wantCartoError(t, "/v3 PATCH import+maps", 400, "invalid", "allowed_apis: "+v1msg)

			tok := f.root.do("POST", "/v3/tokens", `{"grants":[{"connection_name":"carto_dw","source":"a.b.c"}],"allowed_apis":["sql"]}`).want(t, "create", 201)
			value := tok.str("token")
			for name, c := range map[string]struct {
				method, path, body string
				status             int
				code, contains     string
			}{
				"expiry at update":     {"PATCH", "/v3/tokens/" + value, `{"expiration_date":"2031-01-01T00:00:00Z"}`, 400, "invalid", "expiration_date: can only be set when the token is created"},
				"referer not http":     {"POST", "/v3/tokens", `{"allowed_apis":["maps"],"referers":["ftp://files.example.com/"]}`, 400, "invalid", "referers: "},
				"referer with a query": {"POST", "/v3/tokens", `{"allowed_apis":["maps"],"referers":["https://app.example.com/?a=1"]}`, 400, "invalid", "query"},
				"unknown field":        {"POST", "/v3/tokens", `{"allowed_apis":["maps"],"scopes":["x"]}`, 400, "invalid", "scopes: "},
				"no allowed_apis":      {"POST", "/v3/tokens", `{"grants":[]}`, 400, "invalid", "allowed_apis: is required"},
				"empty allowed_apis":   {"PATCH", "/v3/tokens/" + value, `{"allowed_apis":[]}`, 400, "invalid", "allowed_apis: "},
				"unknown api":          {"POST", "/v3/tokens", `{"allowed_apis":["tiles"]}`, 400, "invalid", "allowed_apis: "},
				"bad table name":       {"POST", "/v3/tokens", `{"allowed_apis":["sql"],"grants":[{"connection_name":"carto_dw","source":"a;b"}]}`, 400, "invalid", "grants: "},
				"empty source":         {"POST", "/v3/tokens", `{"allowed_apis":["sql"],"grants":[{"connection_name":"carto_dw","source":""}]}`, 400, "invalid", "grants: "},
				"bad expiry":           {"POST", "/v3/tokens", `{"allowed_apis":["sql"],"expiration_date":"tomorrow"}`, 400, "invalid", "expiration_date: "},
				"not JSON":             {"POST", "/v3/tokens", `{"allowed_apis":`, 400, "invalid", ""},
				"not an object":        {"POST", "/v3/tokens", `null`, 400, "invalid", ""},
			} {
				f.root.do(c.method, c.path, c.body).wantCartoError(t, name, c.status, c.code, c.contains)
			}
			// The refusals changed nothing.
			got := f.root.do("GET", "/v3/tokens/"+value, nil).want(t, "unchanged", 200)
			if got.body["expiration_date"] != nil || !reflect.DeepEqual(got.body["allowed_apis"], []any{"sql"}) {
				t.Errorf("a refused change changed the token: %s", got.raw)
			}

			// A member sees only her own tokens: the admin's is not found.
			mine := f.admin.do("POST", "/v3/tokens", `{"allowed_apis":["maps"]}`).want(t, "admin creates", 201)
			f.alice.do("GET", "/v3/tokens/"+mine.str("token"), nil).wantCartoError(t, "another's token", 404, "not_found")
			f.alice.do("DELETE", "/v3/tokens/"+mine.str("token"), nil).wantCartoError(t, "delete another's token", 404, "not_found")

			// Malformed values and bad checksums are refused with no look-up;
			// a well-formed unknown value is looked up and not found. The
			// session authenticates without a token look-up.
			flipped := []byte(value)
			if flipped[len(flipped)-1] == 'A' {
				flipped[len(flipped)-1] = 'B'
			} else {
				flipped[len(flipped)-1] = 'A'
			}
			for name, v := range map[string]string{"bad checksum": string(flipped), "garbage": "pk_nope", "no prefix": "hello"} {
				before := f.count.lookups.Load()
				f.admin.do("GET", "/v3/tokens/"+v, nil).wantCartoError(t, name, 404, "not_found")
				f.admin.do("DELETE", "/v3/tokens/"+v, nil).wantCartoError(t, name+" delete", 404, "not_found")
				if n := f.count.lookups.Load() - before; n != 0 {
					t.Errorf("%s: %d token look-ups, want 0", name, n)
				}
			}
			before := f.count.lookups.Load()
			f.admin.do("GET", "/v3/tokens/"+policy.NewValue(policy.Publishable), nil).wantCartoError(t, "unknown value", 404, "not_found")
			if n := f.count.lookups.Load() - before; n != 1 {
				t.Errorf("unknown value: %d token look-ups, want 1", n)
			}
		})
	}
}

// TestCartoTokenIsTheSameObject checks that a token made through /v3 is
// the one /v1 and the command line show, and that a change through /v1
// shows in /v3.
func TestCartoTokenIsTheSameObject(t *testing.T) {
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			f := newCartoFixture(t, d)
			made := f.root.do("POST", "/v3/tokens", `{"grants":[{"connection_name":"carto_dw","source":"*"},{"connection_name":"carto_dw","source":"SELECT  1"}],"allowed_apis":["sql","maps"],"referers":["https://app.example.com/"]}`).want(t, "create", 201)
			id := made.str("id")
			v1 := f.root.do("GET", "/v1/tokens/"+id, nil).want(t, "/v1", 200)
			for k, want := range map[string]any{
				"id": id, "prefix": made.body["prefix"], "allowed_apis": []any{"sql", "maps"},
				"allowed_domains": []any{"https://app.example.com"},
				"grants": []any{map[string]any{"connection": "carto_dw", "type": "all"},
					map[string]any{"connection": "carto_dw", "type": "query", "source": "SELECT 1"}},
			} {
				if !reflect.DeepEqual(v1.body[k], want) {
					t.Errorf("/v1 %s = %v, want %v", k, v1.body[k], want)
				}
			}

			var out, errOut bytes.Buffer
			env := cli.Env{Stdout: &out, Stderr: &errOut, Getenv: func(k string) string {
				if k == "TOLLGATE_DATABASE_URL" {
					return f.url
				}
				return ""
			}}
			if err := cli.Run(context.Background(), []string{"tokens", "list", "--account", f.acc.ID, "-o", "json"}, env); err != nil {
				t.Fatalf("tollgate tokens list: %v: %s", err, errOut.String())
			}
			var listed []map[string]any
			if err := json.Unmarshal(out.Bytes(), &listed); err != nil {
				t.Fatalf("tokens list printed %q: %v", out.String(), err)
			}
			found := false
			for _, tok := range listed {
				if tok["id"] != id {
					continue
				}
				found = true
				for _, k := range []string{"grants", "allowed_apis", "allowed_domains", "prefix", "kind"} {
					if !reflect.DeepEqual(tok[k], v1.body[k]) {
						t.Errorf("CLI %s = %v, /v1 has %v", k, tok[k], v1.body[k])
					}
				}
			}
			if !found {
				t.Errorf("the CLI's listing has no %s: %s", id, out.String())
			}

			f.root.do("PATCH", "/v1/tokens/"+id, map[string]any{"allowed_domains": []string{"*.example.org"}}).want(t, "/v1 change", 200)
			got := f.root.do("GET", "/v3/tokens/"+made.str("token"), nil).want(t, "/v3 after /v1 change", 200)
			if !reflect.DeepEqual(got.body["referers"], []any{"*.example.org"}) {
				t.Errorf("/v3 referers %v after the /v1 change", got.body["referers"])
			}

			// A roll through /v1: the new value names the token, and so does
			// the old one during its grace period.
			rolled := f.root.do("POST", "/v1/tokens/"+id+"/roll", map[string]string{"grace_period": "1h"}).want(t, "/v1 roll", 200)
			for _, v := range []string{rolled.str("token"), made.str("token")} {
				if r := f.root.do("GET", "/v3/tokens/"+v, nil).want(t, "get after roll", 200); r.str("id") != id {
					t.Errorf("value %s… names %s after the roll, want %s", v[:9], r.str("id"), id)
				}
			}
			f.root.do("POST", "/v1/tokens/"+id+"/roll", map[string]string{"grace_period": "0s"}).want(t, "/v1 roll without grace", 200)
			f.root.do("GET", "/v3/tokens/"+rolled.str("token"), nil).wantCartoError(t, "a value rolled away", 404, "not_found")
		})
	}
}
