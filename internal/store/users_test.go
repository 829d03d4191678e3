package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// MustAccount creates an account.
func MustAccount(tb testing.TB, db *store.DB, name string) *policy.Account {
	tb.Helper()
	a := &policy.Account{Name: name}
	if _, _, err := db.CreateAccount(context.Background(), a); err != nil {
		tb.Fatal(err)
	}
	return a
}

// TestEmailUniquePerAccount: an email is unique within an account only, so
// adding it says nothing about other accounts; looking it up without an
// account finds the user that was added first.
func TestEmailUniquePerAccount(t *testing.T) {
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			db, _ := storetest.MustOpen(t, d)
			ctx := context.Background()
			a, b := MustAccount(t, db, "A"), MustAccount(t, db, "B")
			first := &policy.User{AccountID: a.ID, Email: "pat@example.com", Role: policy.RoleAdmin}
			if err := db.CreateUser(ctx, first); err != nil {
				t.Fatal(err)
			}
			second := &policy.User{AccountID: b.ID, Email: "pat@example.com", Role: policy.RoleMember}
			if err := db.CreateUser(ctx, second); err != nil {
				t.Fatalf("the same email in another account: got %v, want it added", err)
			}
			again := &policy.User{AccountID: b.ID, Email: "pat@example.com", Role: policy.RoleMember}
			if err := db.CreateUser(ctx, again); policy.ErrorCode(err) != policy.EConflict {
				t.Errorf("the same email twice in one account: got %v, want a conflict", err)
			}
			if u, err := db.UserByEmail(ctx, "pat@example.com"); err != nil || u.ID != first.ID {
				t.Errorf("by email: got %v, %v, want %s (added first)", u, err, first.ID)
			}
			if u, err := db.UserByAccountEmail(ctx, b.ID, "pat@example.com"); err != nil || u.ID != second.ID {
				t.Errorf("by account and email: got %v, %v, want %s", u, err, second.ID)
			}
			if _, err := db.UserByAccountEmail(ctx, b.ID, "nobody@example.com"); !errors.Is(err, policy.ErrNotFound) {
				t.Errorf("unknown email: got %v, want not found", err)
			}
		})
	}
}

// TestEmailMigrationKeepsReferences: the migration that makes emails
// unique per account rebuilds SQLite's users table; tokens and sessions
// that refer to users must keep their references and their cascades.
func TestEmailMigrationKeepsReferences(t *testing.T) {
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			db, _ := storetest.MustOpen(t, d)
			ctx := context.Background()
			if err := db.MigrateTo(ctx, 9); err != nil {
				t.Fatal(err)
			}
			a := MustAccount(t, db, "A")
			u := &policy.User{AccountID: a.ID, Email: "pat@example.com", Role: policy.RoleAdmin}
			if err := db.CreateUser(ctx, u); err != nil {
				t.Fatal(err)
			}
			tok := policy.NewToken(a.ID, policy.Publishable)
			tok.UserID = u.ID
			if _, err := db.CreateToken(ctx, tok); err != nil {
				t.Fatal(err)
			}
			if err := db.CreateSession(ctx, "session", policy.Session{UserID: u.ID, CSRF: "c", ExpiresAt: db.Now().Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			if got, err := db.Token(ctx, tok.ID); err != nil || got.UserID != u.ID {
				t.Fatalf("token after the migration: got %v, %v, want owned by %s", got, err, u.ID)
			}
			if _, err := db.SessionByID(ctx, "session"); err != nil {
				t.Fatalf("session after the migration: got %v, want it kept", err)
			}
			if err := db.DeleteUser(ctx, u.ID, func(*policy.User, []policy.User) error { return nil }); err != nil {
				t.Fatal(err)
			}
			if got, err := db.Token(ctx, tok.ID); err != nil || got.UserID != "" {
				t.Errorf("token after its owner left: got %v, %v, want kept and owned by no one", got, err)
			}
			if _, err := db.SessionByID(ctx, "session"); !errors.Is(err, policy.ErrNotFound) {
				t.Errorf("session after its user left: got %v, want it gone", err)
			}
			if err := db.MigrateTo(ctx, 9); err != nil {
				t.Errorf("down: %v", err)
			}
		})
	}
}

// TestDeleteUserCheck: DeleteUser shows its check the user and the
// account's users, read under the lock; a refusal removes nothing.
func TestDeleteUserCheck(t *testing.T) {
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			db, _ := storetest.MustOpen(t, d)
			ctx := context.Background()
			a, other := MustAccount(t, db, "A"), MustAccount(t, db, "B")
			var users []*policy.User
			for i, role := range []policy.Role{policy.RoleAdmin, policy.RoleAdmin, policy.RoleMember} {
				u := &policy.User{AccountID: a.ID, Email: string(rune('a'+i)) + "@example.com", Role: role}
				if err := db.CreateUser(ctx, u); err != nil {
					t.Fatal(err)
				}
				users = append(users, u)
			}
			// Another account's admin is not counted.
			if err := db.CreateUser(ctx, &policy.User{AccountID: other.ID, Email: "z@example.com", Role: policy.RoleAdmin}); err != nil {
				t.Fatal(err)
			}
			refuse := errors.New("refused")
			var seen *policy.User
			var admins int
			var account []policy.User
			err := db.DeleteUser(ctx, users[1].ID, func(u *policy.User, all []policy.User) error {
				seen, account, admins = u, all, policy.Admins(all)
				return refuse
			})
			if !errors.Is(err, refuse) || seen == nil || seen.ID != users[1].ID || seen.Role != policy.RoleAdmin || admins != 2 || len(account) != 3 {
				t.Fatalf("check saw %+v and %d users (%d admins) and DeleteUser returned %v; want the admin, the account's 3 users (2 admins) and the refusal", seen, len(account), admins, err)
			}
			if _, err := db.User(ctx, users[1].ID); err != nil {
				t.Fatalf("a refused removal removed the user: %v", err)
			}
			if err := db.DeleteUser(ctx, users[1].ID, func(*policy.User, []policy.User) error { return nil }); err != nil {
				t.Fatal(err)
			}
			if _, err := db.User(ctx, users[1].ID); !errors.Is(err, policy.ErrNotFound) {
				t.Errorf("after the removal: got %v, want not found", err)
			}
			if err := db.DeleteUser(ctx, users[1].ID, func(*policy.User, []policy.User) error { return nil }); !errors.Is(err, policy.ErrNotFound) {
				t.Errorf("removing twice: got %v, want not found", err)
			}
		})
	}
}
