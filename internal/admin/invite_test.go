package admin_test

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"slices"
	"testing"

	"github.com/tollgate/tollgate/internal/manage"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// TestInviteSaysNothingAboutOtherAccounts (issue 12 item 10): inviting an
// email that another account has answers exactly as inviting a new one;
// sign-in stays unambiguous (the account that added the email first,
// unless account_id names another).
func TestInviteSaysNothingAboutOtherAccounts(t *testing.T) {
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, d)
			other := &policy.Account{Name: "Other"}
			if _, _, err := f.db.CreateAccount(context.Background(), other); err != nil {
				t.Fatal(err)
			}
			hash, err := adminHash(t)
			if err != nil {
				t.Fatal(err)
			}
			boss := &policy.User{AccountID: other.ID, Email: "boss@other.test", Role: policy.RoleAdmin, PasswordHash: hash}
			if err := f.db.CreateUser(context.Background(), boss); err != nil {
				t.Fatal(err)
			}
			b := f.signInUser("boss@other.test", rightPassword, "")

			taken := b.do("POST", "/v1/users", map[string]any{"email": "admin@acme.test"}).want(t, "invite an email another account has", 201)
			fresh := b.do("POST", "/v1/users", map[string]any{"email": "fresh@other.test"}).want(t, "invite a new email", 201)
			if got, want := keys(taken.body), keys(fresh.body); !slices.Equal(got, want) {
				t.Errorf("answer keys: got %v, want %v (as for a new email)", got, want)
			}
			b.do("POST", "/v1/users", map[string]any{"email": "admin@acme.test"}).want(t, "the same email twice in one account", 409, "conflict", "email")

			// Sign-in: the email alone names Acme's user (added first);
			// account_id names the other.
			invited := taken.str("password")
			anon := &client{f: f}
			anon.do("POST", "/v1/session", map[string]string{"email": "admin@acme.test", "password": invited}).want(t, "the invited password without account_id", 401)
			f.signInUser("admin@acme.test", rightPassword, "")
			c := f.signInUser("admin@acme.test", invited, other.ID)
			who := c.do("GET", "/v1/session", nil).want(t, "who am I", 200)
			if who.str("account_id") != other.ID {
				t.Errorf("signed in to %s, want %s", who.str("account_id"), other.ID)
			}
			anon.do("POST", "/v1/session", map[string]string{"email": "admin@acme.test", "password": rightPassword, "account_id": other.ID}).want(t, "Acme's password for the other account", 401)
		})
	}
}

func adminHash(t *testing.T) (string, error) {
	t.Helper()
	return manage.HashPassword(rightPassword)
}

// signInUser signs in through the API, in accountID when it is set.
func (f *fixture) signInUser(email, password, accountID string) *client {
	f.t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &client{f: f, http: &http.Client{Jar: jar}}
	body := map[string]string{"email": email, "password": password}
	if accountID != "" {
		body["account_id"] = accountID
	}
	r := c.do("POST", "/v1/session", body).want(f.t, "sign in as "+email, 200)
	c.csrf = r.str("csrf_token")
	return c
}

func keys(m map[string]any) []string {
	var out []string
	for k, v := range m {
		out = append(out, k)
		if sub, ok := v.(map[string]any); ok {
			for _, s := range keys(sub) {
				out = append(out, k+"."+s)
			}
		}
	}
	slices.Sort(out)
	return out
}
