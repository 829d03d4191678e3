package manage_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/manage"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/seal"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// fixture is an account with its secret token, an admin and two members,
// on one backend.
type fixture struct {
	svc                    *manage.Service
	db                     *store.DB
	box                    *seal.Box
	admin, alice, bob, key policy.Principal
	secretID               string
}

func mustFixture(t *testing.T, d store.Dialect, box *seal.Box) *fixture {
	t.Helper()
	ctx := context.Background()
	db, _ := storetest.MustOpen(t, d)
	svc := manage.New(db, manage.Config{Box: box})
	acc := &policy.Account{Name: "Acme"}
	secret, _, err := db.CreateAccount(ctx, acc)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{svc: svc, db: db, box: box, secretID: secret.ID,
		key: policy.Principal{AccountID: acc.ID, TokenID: secret.ID, Admin: true}}
	op := policy.OperatorPrincipal()
	for _, u := range []struct {
		p    *policy.Principal
		role policy.Role
	}{{&f.admin, policy.RoleAdmin}, {&f.alice, policy.RoleMember}, {&f.bob, policy.RoleMember}} {
		user, pw, err := svc.CreateUser(ctx, op, manage.NewUser{AccountID: acc.ID, Email: string(u.role) + policy.NewID("e") + "@example.com", Role: u.role, MakePassword: true})
		if err != nil || pw == "" {
			t.Fatalf("create user: %v (password %q)", err, pw)
		}
		*u.p = policy.Principal{AccountID: acc.ID, UserID: user.ID, Admin: u.role == policy.RoleAdmin}
	}
	return f
}

func mustKey(t *testing.T) *seal.Box {
	t.Helper()
	box, err := seal.NewBox(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	return box
}

func code(err error) policy.Code { return policy.ErrorCode(err) }

func TestTokens(t *testing.T) {
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			f := mustFixture(t, d, mustKey(t))
			nick := "alice's"
			mine, err := f.svc.CreateToken(ctx, f.alice, "", policy.Publishable, &policy.TokenPatch{Nickname: &nick})
			if err != nil || mine.Value == "" || mine.Token.UserID != f.alice.UserID || mine.Token.Nickname != nick {
				t.Fatalf("create: got %+v, %v", mine, err)
			}
			id := mine.Token.ID

			// Who sees what.
			if _, err := f.svc.Token(ctx, f.bob, id); !errors.Is(err, policy.ErrNotFound) {
				t.Errorf("bob sees alice's token: got %v, want not found", err)
			}
			if _, err := f.svc.Token(ctx, f.admin, id); err != nil {
				t.Errorf("admin sees alice's token: %v", err)
			}
			list, err := f.svc.ListTokens(ctx, f.bob, manage.TokenFilter{})
			if err != nil || len(list) != 0 {
				t.Errorf("bob lists: got %d tokens, %v; want 0", len(list), err)
			}
			list, err = f.svc.ListTokens(ctx, f.admin, manage.TokenFilter{})
			if err != nil || len(list) != 2 {
				t.Errorf("admin lists: got %d tokens, %v; want 2 (the secret token and alice's)", len(list), err)
			}
			if _, err := f.svc.ListTokens(ctx, f.key, manage.TokenFilter{Mine: true}); code(err) != policy.EInvalid {
				t.Errorf("secret token lists its own: got %v, want invalid", err)
			}

			// Admins may only switch another's token on or off.
			off := false
			if _, err := f.svc.UpdateToken(ctx, f.admin, id, &policy.TokenPatch{Nickname: &nick}); code(err) != policy.EForbidden {
				t.Errorf("admin renames alice's token: got %v, want forbidden", err)
			}
			if got, err := f.svc.UpdateToken(ctx, f.admin, id, &policy.TokenPatch{Enabled: &off}); err != nil || got.Token.Enabled {
				t.Errorf("admin disables alice's token: got %+v, %v", got.Token, err)
			}
			if _, err := f.svc.RollToken(ctx, f.admin, id, 0); code(err) != policy.EForbidden {
				t.Errorf("admin rolls alice's token: got %v, want forbidden", err)
			}
			owner := f.bob.UserID
			if _, err := f.svc.UpdateToken(ctx, f.alice, id, &policy.TokenPatch{UserID: &owner}); code(err) != policy.EInvalid {
				t.Errorf("alice gives her token away: got %v, want invalid", err)
			}
			if got, err := f.svc.UpdateToken(ctx, policy.OperatorPrincipal(), id, &policy.TokenPatch{UserID: &owner}); err != nil || got.Token.UserID != owner {
				t.Errorf("operator gives alice's token to bob: got %+v, %v", got.Token, err)
			}

			// Signing secrets: made once when signing goes on, rolled on demand.
			on := true
			signed, err := f.svc.UpdateToken(ctx, f.bob, id, &policy.TokenPatch{Signed: &on})
			if err != nil || signed.SigningSecret == "" {
				t.Fatalf("switch signing on: got %+v, %v", signed, err)
			}
			if again, err := f.svc.UpdateToken(ctx, f.bob, id, &policy.TokenPatch{Nickname: &nick}); err != nil || again.SigningSecret != "" {
				t.Errorf("a later change: got secret %q, %v; want none", again.SigningSecret, err)
			}
			rolled, err := f.svc.RollSigningSecret(ctx, f.bob, id)
			if err != nil || rolled.SigningSecret == "" || rolled.SigningSecret == signed.SigningSecret {
				t.Errorf("roll signing secret: got %q, %v; want a new one", rolled.SigningSecret, err)
			}
			if open, err := f.box.Open(id, rolled.Token.SigningSecret); err != nil || string(open) != rolled.SigningSecret {
				t.Errorf("sealed secret: got %q, %v; want %q", open, err, rolled.SigningSecret)
			}
			if _, err := f.svc.RollSigningSecret(ctx, f.admin, id); code(err) != policy.EForbidden {
				t.Errorf("admin rolls bob's signing secret: got %v, want forbidden", err)
			}

			// Rolling the value keeps the old one for the grace period.
			r, err := f.svc.RollToken(ctx, f.bob, id, time.Hour)
			if err != nil || r.Value == "" || r.Value == mine.Value || r.Token.PreviousExpiresAt == nil {
				t.Errorf("roll: got %+v, %v", r, err)
			}

			// The secret token: only admins make one; nobody but the
			// operator disables or deletes it.
			if _, err := f.svc.CreateToken(ctx, f.alice, "", policy.Secret, &policy.TokenPatch{}); code(err) != policy.EForbidden {
				t.Errorf("member makes a secret token: got %v, want forbidden", err)
			}
			if _, err := f.svc.SetEnabled(ctx, f.admin, f.secretID, false); !errors.Is(err, policy.ErrSecretLockout) {
				t.Errorf("admin disables the secret token: got %v, want lock-out", err)
			}
			if err := f.svc.DeleteToken(ctx, f.key, f.secretID); !errors.Is(err, policy.ErrSecretLockout) {
				t.Errorf("secret token deletes itself: got %v, want lock-out", err)
			}
			if got, err := f.svc.SetEnabled(ctx, policy.OperatorPrincipal(), f.secretID, false); err != nil || got.Token.Enabled {
				t.Errorf("operator disables the secret token: got %+v, %v", got.Token, err)
			}

			if err := f.svc.DeleteToken(ctx, f.alice, id); !errors.Is(err, policy.ErrNotFound) {
				t.Errorf("alice deletes bob's token: got %v, want not found", err)
			}
			if err := f.svc.DeleteToken(ctx, f.admin, id); err != nil {
				t.Errorf("admin deletes bob's token: %v", err)
			}
			if _, err := f.svc.Token(ctx, policy.OperatorPrincipal(), id); !errors.Is(err, policy.ErrNotFound) {
				t.Errorf("deleted token: got %v, want not found", err)
			}
		})
	}
}

func TestSigningNeedsKey(t *testing.T) {
	ctx := context.Background()
	f := mustFixture(t, store.SQLite, nil)
	on := true
	_, err := f.svc.CreateToken(ctx, f.alice, "", policy.Publishable, &policy.TokenPatch{Signed: &on})
	if !errors.Is(err, manage.ErrNoKey) {
		t.Fatalf("signed token without a key: got %v, want ErrNoKey", err)
	}
	list, _ := f.svc.ListTokens(ctx, f.alice, manage.TokenFilter{})
	if len(list) != 0 {
		t.Errorf("got %d tokens after the refusal, want 0", len(list))
	}
	tok, err := f.svc.CreateToken(ctx, f.alice, "", policy.Publishable, &policy.TokenPatch{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.RollSigningSecret(ctx, f.alice, tok.Token.ID); !errors.Is(err, manage.ErrNotSigned) {
		t.Errorf("roll the secret of an unsigned token: got %v, want ErrNotSigned", err)
	}
}

func TestUsers(t *testing.T) {
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			f := mustFixture(t, d, nil)
			if _, _, err := f.svc.CreateUser(ctx, f.alice, manage.NewUser{Email: "x@example.com"}); code(err) != policy.EForbidden {
				t.Errorf("member invites: got %v, want forbidden", err)
			}
			if _, _, err := f.svc.CreateUser(ctx, f.admin, manage.NewUser{Email: "y@example.com", Password: "short"}); code(err) != policy.EInvalid {
				t.Errorf("short password: got %v, want invalid", err)
			}
			u, pw, err := f.svc.CreateUser(ctx, f.admin, manage.NewUser{Email: "z@example.com", Password: "long enough pass"})
			if err != nil || pw != "" || u.Role != policy.RoleMember || u.AccountID != f.admin.AccountID {
				t.Fatalf("admin invites: got %+v, %q, %v", u, pw, err)
			}
			users, err := f.svc.ListUsers(ctx, f.bob, "")
			if err != nil || len(users) != 4 {
				t.Errorf("bob lists users: got %d, %v; want 4", len(users), err)
			}
			if err := f.svc.DeleteUser(ctx, f.admin, f.admin.UserID); code(err) != policy.EConflict {
				t.Errorf("admin removes themselves: got %v, want conflict", err)
			}
			if err := f.svc.DeleteUser(ctx, f.bob, u.ID); code(err) != policy.EForbidden {
				t.Errorf("member removes a user: got %v, want forbidden", err)
			}
			other := policy.Principal{AccountID: "acc_other", UserID: "usr_x", Admin: true}
			if err := f.svc.DeleteUser(ctx, other, u.ID); !errors.Is(err, policy.ErrNotFound) {
				t.Errorf("another account's admin removes a user: got %v, want not found", err)
			}
			if err := f.svc.DeleteUser(ctx, f.admin, u.ID); err != nil {
				t.Errorf("admin removes a user: %v", err)
			}
		})
	}
}

func mustOtherKey(t *testing.T) *seal.Box {
	t.Helper()
	key := make([]byte, seal.KeySize)
	key[0] = 1
	box, err := seal.NewBox(key)
	if err != nil {
		t.Fatal(err)
	}
	return box
}
