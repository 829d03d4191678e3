package admin_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/tollgate/tollgate/internal/admin"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// TestChangePassword (issue 18 item 9): users change their own password,
// the current one checked; their other sessions end, this one stays.
func TestChangePassword(t *testing.T) {
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			f := newFixture(t, d)
			other := f.signInUser("alice@acme.test", "correct horse battery", "")
			path := "/v1/users/" + f.alice.user + "/password"
			const next = "a brand new password"
			f.alice.do("PUT", path, map[string]string{"current_password": "wrong guess here", "new_password": next}).want(t, "wrong current", 400, "invalid", "current_password")
			f.alice.do("PUT", path, map[string]string{"current_password": "correct horse battery", "new_password": "short"}).want(t, "short new", 400, "invalid", "new_password")
			f.admin.do("PUT", path, map[string]string{"current_password": "correct horse battery", "new_password": next}).want(t, "admin sets alice's", 403, "forbidden")
			f.root.do("PUT", path, map[string]string{"current_password": "correct horse battery", "new_password": next}).want(t, "secret token sets alice's", 403, "forbidden")
			f.alice.do("PUT", path, map[string]string{"current_password": "correct horse battery", "new_password": next}).want(t, "change", 204)

			f.alice.do("GET", "/v1/session", nil).want(t, "the session that changed it", 200)
			other.do("GET", "/v1/session", nil).want(t, "another session of alice's", 401, "unauthorized")
			f.bob.do("GET", "/v1/session", nil).want(t, "bob's session", 200)
			anon := &client{f: f}
			anon.do("POST", "/v1/session", map[string]string{"email": "alice@acme.test", "password": "correct horse battery"}).want(t, "the old password", 401)
			f.signInUser("alice@acme.test", next, "")
		})
	}
}

// A wrong current password is a failed sign-in: guessing through a
// session left open is held to sign-in's limits.
func TestChangePasswordGuessesAreLimited(t *testing.T) {
	cfg := admin.Config{InsecureCookies: true, SignIn: admin.DefaultSignInConfig()}
	cfg.SignIn.EmailFailures = 3
	f := newFixtureWith(t, "sqlite", cfg)
	path := "/v1/users/" + f.alice.user + "/password"
	for range 3 {
		f.alice.do("PUT", path, map[string]string{"current_password": "wrong guess here", "new_password": "a brand new password"}).want(t, "guess", 400)
	}
	r := f.alice.do("PUT", path, map[string]string{"current_password": "correct horse battery", "new_password": "a brand new password"}).want(t, "after the limit", http.StatusTooManyRequests, "rate_limited")
	if r.header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
}

// TestChangeRole (issue 18 item 9): admins change teammates' roles, never
// leaving the account without an admin.
func TestChangeRole(t *testing.T) {
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			f := newFixture(t, d)
			f.alice.do("PATCH", "/v1/users/"+f.bob.user, map[string]string{"role": "admin"}).want(t, "member promotes", 403, "forbidden")
			f.admin.do("PATCH", "/v1/users/"+f.admin.user, map[string]string{"role": "member"}).want(t, "the last admin steps down", 409, "conflict", "role")
			f.admin.do("PATCH", "/v1/users/"+f.bob.user, map[string]string{"role": "owner"}).want(t, "no such role", 400, "invalid", "role")
			r := f.admin.do("PATCH", "/v1/users/"+f.bob.user, map[string]string{"role": "admin"}).want(t, "admin promotes bob", 200)
			if u, _ := r.body["user"].(map[string]any); u["role"] != "admin" {
				t.Errorf("promote: got %v, want role admin", r.body)
			}
			// Bob's open session is an admin's at once.
			f.bob.do("GET", "/v1/audit", nil).want(t, "bob reads the audit log", 200)
			f.bob.do("PATCH", "/v1/users/"+f.admin.user, map[string]string{"role": "member"}).want(t, "bob demotes the first admin", 200)
			f.admin.do("GET", "/v1/audit", nil).want(t, "the demoted admin reads the audit log", 403, "forbidden")
			u, err := f.db.User(context.Background(), f.admin.user)
			if err != nil || u.Role != policy.RoleMember {
				t.Errorf("stored role: got %v, %v; want member", u, err)
			}
			found := false
			for _, e := range f.bob.do("GET", "/v1/audit", nil).body["entries"].([]any) {
				m := e.(map[string]any)
				found = found || (m["action"] == "user.role" && m["target"] == f.admin.user)
			}
			if !found {
				t.Error("no user.role audit entry")
			}
		})
	}
}

// TestRemoveLastAdmin: removing the account's only admin is refused with
// 409 and a sentence saying what to do first (the secret token is an
// admin that is no user, so only it, or a race between two admins, can
// try); once another admin exists the removal goes through.
func TestRemoveLastAdmin(t *testing.T) {
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			f := newFixture(t, d)
			r := f.root.do("DELETE", "/v1/users/"+f.admin.user, nil).want(t, "the secret token removes the only admin", 409, "conflict")
			if e, _ := r.body["error"].(map[string]any); e["message"] != policy.ErrLastAdminRemoval.Message {
				t.Errorf("message: got %q, want %q", e["message"], policy.ErrLastAdminRemoval.Message)
			}
			f.admin.do("GET", "/v1/session", nil).want(t, "the refused removal kept the admin's session", 200)
			f.admin.do("PATCH", "/v1/users/"+f.bob.user, map[string]string{"role": "admin"}).want(t, "admin promotes bob", 200)
			f.root.do("DELETE", "/v1/users/"+f.admin.user, nil).want(t, "the secret token removes one of two admins", 204)
		})
	}
}
