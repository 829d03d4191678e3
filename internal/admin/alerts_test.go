package admin_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/store"
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

// TestFlagsShownAndResolved: a flag shows, with its evidence, to whoever
// may see its token; they may resolve it once; no one else may.
func TestFlagsShownAndResolved(t *testing.T) {
	f := newFixture(t, store.Postgres)
	ctx := context.Background()
	id := f.alice.do("POST", "/v1/tokens", map[string]any{"nickname": "alice-web"}).want(t, "create", 201).str("id")
	flag := &policy.Flag{TokenID: id, AccountID: f.acc.ID, Kind: policy.FlagDenials,
		Evidence: []byte(`{"code":"referer_denied","count":300,"share":0.9,"window":"10m0s"}`)}
	if opened, err := f.db.OpenFlag(ctx, flag, time.Time{}); err != nil || !opened {
		t.Fatalf("open flag: %v %v", opened, err)
	}
	count := func(r resp) int { l, _ := r.body["flags"].([]any); return len(l) }
	for name, c := range map[string]*client{"owner": f.alice, "admin": f.admin, "secret token": f.root} {
		if n := count(c.do("GET", "/v1/flags", nil).want(t, name+" flags", 200)); n != 1 {
			t.Errorf("%s: flags: got %d, want 1", name, n)
		}
	}
	got := f.alice.do("GET", "/v1/tokens/"+id+"/flags", nil).want(t, "token flags", 200).body["flags"].([]any)[0].(map[string]any)
	if ev, _ := got["evidence"].(map[string]any); ev["code"] != "referer_denied" || got["kind"] != "denials" {
		t.Errorf("flag: got %v, want the denials flag with its evidence", got)
	}
	if n := count(f.bob.do("GET", "/v1/flags", nil).want(t, "bob's flags", 200)); n != 0 {
		t.Errorf("another member sees %d flags of alice's token, want 0", n)
	}
	path := fmt.Sprintf("/v1/flags/%d/resolve", flag.ID)
	f.bob.do("POST", path, nil).want(t, "another member resolves", 404)
	f.alice.do("POST", path, nil).want(t, "owner resolves", 200)
	f.alice.do("POST", path, nil).want(t, "resolve again", 409)
	if n := count(f.alice.do("GET", "/v1/flags", nil).want(t, "open flags", 200)); n != 0 {
		t.Errorf("open flags after resolving: got %d, want 0", n)
	}
	if n := count(f.alice.do("GET", "/v1/flags?state=all", nil).want(t, "all flags", 200)); n != 1 {
		t.Errorf("all flags: got %d, want 1", n)
	}
	f.alice.do("GET", "/v1/flags?state=closed", nil).want(t, "bad state", 400)
	audit, err := f.db.ListAudit(ctx, f.acc.ID, 0, 50)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(audit, func(e policy.AuditEntry) bool { return e.Action == "token.flag_resolved" && e.Target == id }) {
		t.Errorf("no token.flag_resolved audit entry")
	}
}
