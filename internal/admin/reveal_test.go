package admin_test

import (
	"testing"

	"github.com/tollgate/tollgate/internal/admin"
	"github.com/tollgate/tollgate/internal/seal"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

func mustBox(t *testing.T) *seal.Box {
	t.Helper()
	box, err := seal.NewBox(make([]byte, seal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return box
}

// TestRevealToken (issue 18 item 3): a publishable token's value can be
// copied again, by whoever sees the token, and each time is audited; a
// secret token's never.
func TestRevealToken(t *testing.T) {
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			f := newFixtureWith(t, d, admin.Config{InsecureCookies: true, Box: mustBox(t)})
			made := f.alice.do("POST", "/v1/tokens", map[string]any{}).want(t, "create", 201)
			id, value := made.str("id"), made.str("token")
			if got := f.alice.do("GET", "/v1/account", nil).want(t, "account", 200).body["values_kept"]; got != true {
				t.Errorf("account with a key: values_kept %v, want true", got)
			}
			if made.body["value_kept"] != true {
				t.Errorf("create: value_kept %v, want true", made.body["value_kept"])
			}
			got := f.alice.do("GET", "/v1/tokens/"+id+"/value", nil).want(t, "owner reveals", 200)
			if got.str("token") != value {
				t.Errorf("owner reveals: got %q, want %q", got.str("token"), value)
			}
			if got := f.admin.do("GET", "/v1/tokens/"+id+"/value", nil).want(t, "admin reveals", 200); got.str("token") != value {
				t.Errorf("admin reveals: got %q, want %q", got.str("token"), value)
			}
			f.bob.do("GET", "/v1/tokens/"+id+"/value", nil).want(t, "another member reveals", 404, "not_found")

			var secretID string
			for _, tok := range f.root.do("GET", "/v1/tokens", nil).body["tokens"].([]any) {
				if m := tok.(map[string]any); m["kind"] == "secret" {
					secretID = m["id"].(string)
					if m["value_kept"] != false {
						t.Errorf("the secret token: value_kept %v, want false", m["value_kept"])
					}
				}
			}
			r := f.admin.do("GET", "/v1/tokens/"+secretID+"/value", nil).want(t, "reveal the secret token", 403, "forbidden")
			if e, _ := r.body["error"].(map[string]any); e["message"] != manage403 {
				t.Errorf("reveal the secret token: message %q, want %q", e["message"], manage403)
			}

			rolled := f.alice.do("POST", "/v1/tokens/"+id+"/roll", map[string]any{}).want(t, "roll", 200)
			if got := f.alice.do("GET", "/v1/tokens/"+id+"/value", nil).want(t, "reveal after roll", 200); got.str("token") != rolled.str("token") {
				t.Errorf("reveal after roll: got %q, want %q", got.str("token"), rolled.str("token"))
			}
			n := 0
			for _, e := range f.admin.do("GET", "/v1/audit", nil).body["entries"].([]any) {
				if m := e.(map[string]any); m["action"] == "token.reveal" && m["target"] == id {
					n++
				}
			}
			if n != 3 {
				t.Errorf("audit: got %d token.reveal entries, want 3", n)
			}
		})
	}
}

const manage403 = "a secret token's value is shown only once, when it is made or rolled, and only its hash is kept: roll it for a new value"

func TestRevealWithoutKey(t *testing.T) {
	f := newFixtureWith(t, "sqlite", admin.Config{InsecureCookies: true})
	made := f.alice.do("POST", "/v1/tokens", map[string]any{}).want(t, "create", 201)
	if made.body["value_kept"] != false {
		t.Errorf("create without a key: value_kept %v, want false", made.body["value_kept"])
	}
	f.alice.do("GET", "/v1/tokens/"+made.str("id")+"/value", nil).want(t, "reveal without a key", 409, "conflict")
	if got := f.alice.do("GET", "/v1/account", nil).want(t, "account", 200).body["values_kept"]; got != false {
		t.Errorf("account without a key: values_kept %v, want false", got)
	}
}
