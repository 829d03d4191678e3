package admin_test

import (
	"context"
	"testing"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store"
)

// TestLeaksShownToWhoSeesTheToken: a reported leak shows on its token and
// in the account's list for whoever may see the token, and for no one else.
func TestLeaksShownToWhoSeesTheToken(t *testing.T) {
	f := newFixture(t, store.Postgres)
	tok := f.alice.do("POST", "/v1/tokens", map[string]any{"nickname": "alice-web"}).want(t, "create", 201)
	id := tok.str("id")
	leak := &policy.Leak{TokenID: id, AccountID: f.acc.ID, Reporter: "github", TokenType: "tollgate_publishable_token",
		URL: "https://github.com/alice/site/blob/main/index.html", Source: "content", Action: policy.LeakRecorded}
	if err := f.db.RecordLeak(context.Background(), leak); err != nil {
		t.Fatal(err)
	}
	count := func(r resp) int { l, _ := r.body["leaks"].([]any); return len(l) }
	for name, c := range map[string]*client{"owner": f.alice, "admin": f.admin, "secret token": f.root} {
		if n := count(c.do("GET", "/v1/tokens/"+id+"/leaks", nil).want(t, name+" token leaks", 200)); n != 1 {
			t.Errorf("%s: token leaks: got %d, want 1", name, n)
		}
		if n := count(c.do("GET", "/v1/leaks", nil).want(t, name+" leaks", 200)); n != 1 {
			t.Errorf("%s: account leaks: got %d, want 1", name, n)
		}
	}
	f.bob.do("GET", "/v1/tokens/"+id+"/leaks", nil).want(t, "another member's token", 404)
	if n := count(f.bob.do("GET", "/v1/leaks", nil).want(t, "bob's leaks", 200)); n != 0 {
		t.Errorf("another member sees %d leaks of alice's token, want 0", n)
	}
	got := f.alice.do("GET", "/v1/tokens/"+id+"/leaks", nil).body["leaks"].([]any)[0].(map[string]any)
	if got["url"] != leak.URL || got["action"] != "recorded" {
		t.Errorf("leak: got %v, want url %s and action recorded", got, leak.URL)
	}
}
