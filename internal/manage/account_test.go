package manage_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tollgate/tollgate/internal/manage"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/seal"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

func TestRevealToken(t *testing.T) {
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			f := mustFixture(t, d, mustKey(t))
			made, err := f.svc.CreateToken(ctx, f.alice, "", policy.Publishable, &policy.TokenPatch{})
			if err != nil || !made.Token.ValueKept {
				t.Fatalf("create: got %+v, %v; want a kept value", made.Token, err)
			}
			id := made.Token.ID
			for name, p := range map[string]policy.Principal{"owner": f.alice, "admin": f.admin, "secret token": f.key} {
				if v, err := f.svc.RevealToken(ctx, p, id); err != nil || v != made.Value {
					t.Errorf("%s reveals: got %q, %v; want %q", name, v, err, made.Value)
				}
			}
			if _, err := f.svc.RevealToken(ctx, f.bob, id); !errors.Is(err, policy.ErrNotFound) {
				t.Errorf("bob reveals alice's token: got %v, want not found", err)
			}
			if _, err := f.svc.RevealToken(ctx, f.admin, f.secretID); !errors.Is(err, manage.ErrSecretShownOnce) {
				t.Errorf("admin reveals the secret token: got %v, want ErrSecretShownOnce", err)
			}
			// Only hashes of secret values; and the kept value is sealed.
			if b, err := f.db.SealedValue(ctx, f.secretID); err != nil || b != nil {
				t.Errorf("secret token's kept value: got %x, %v; want none", b, err)
			}
			sealed, err := f.db.SealedValue(ctx, id)
			if err != nil || len(sealed) == 0 || string(sealed) == made.Value {
				t.Fatalf("kept value: got %q, %v; want sealed bytes", sealed, err)
			}
			if _, err := f.box.Open(id, sealed); err == nil {
				t.Error("the kept value opens as a signing secret would: want a seal of its own")
			}

			// A roll keeps the new value in place of the old.
			rolled, err := f.svc.RollToken(ctx, f.alice, id, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if v, err := f.svc.RevealToken(ctx, f.alice, id); err != nil || v != rolled.Value {
				t.Errorf("reveal after roll: got %q, %v; want %q", v, err, rolled.Value)
			}
		})
	}
}

func TestRevealWithoutKey(t *testing.T) {
	ctx := context.Background()
	db, _ := storetest.MustOpen(t, store.SQLite)
	acc := &policy.Account{Name: "Acme"}
	if _, _, err := db.CreateAccount(ctx, acc); err != nil {
		t.Fatal(err)
	}
	op := policy.OperatorPrincipal()
	keyless := manage.New(db, manage.Config{})
	made, err := keyless.CreateToken(ctx, op, acc.ID, policy.Publishable, &policy.TokenPatch{})
	if err != nil || made.Token.ValueKept {
		t.Fatalf("create without a key: got %+v, %v; want no kept value", made.Token, err)
	}
	if _, err := keyless.RevealToken(ctx, op, made.Token.ID); !errors.Is(err, manage.ErrValueNotKept) {
		t.Errorf("reveal without a key: got %v, want ErrValueNotKept", err)
	}
	// A key configured later cannot show what was never kept, until a roll.
	keyed := manage.New(db, manage.Config{Box: mustKey(t)})
	if _, err := keyed.RevealToken(ctx, op, made.Token.ID); !errors.Is(err, manage.ErrValueNotSealed) {
		t.Errorf("reveal a value made without a key: got %v, want ErrValueNotSealed", err)
	}
	rolled, err := keyed.RollToken(ctx, op, made.Token.ID, 0)
	if err != nil || !rolled.Token.ValueKept {
		t.Fatalf("roll with a key: got %+v, %v", rolled.Token, err)
	}
	if v, err := keyed.RevealToken(ctx, op, made.Token.ID); err != nil || v != rolled.Value {
		t.Errorf("reveal after the roll: got %q, %v; want %q", v, err, rolled.Value)
	}
	// Another key opens nothing.
	if v, err := manage.New(db, manage.Config{Box: mustOtherKey(t)}).RevealToken(ctx, op, made.Token.ID); !errors.Is(err, seal.ErrOpen) || v != "" {
		t.Errorf("reveal under another key: got %q, %v; want seal.ErrOpen", v, err)
	}
	// Rolling without the key forgets the value kept of the old one.
	if _, err := keyless.RollToken(ctx, op, made.Token.ID, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := keyed.RevealToken(ctx, op, made.Token.ID); !errors.Is(err, manage.ErrValueNotSealed) {
		t.Errorf("reveal after a keyless roll: got %v, want ErrValueNotSealed", err)
	}
}

func TestSetPassword(t *testing.T) {
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			f := mustFixture(t, d, nil)
			const first, second = "first password 1", "second password 2"
			if err := f.db.SetPassword(ctx, f.alice.UserID, mustHash(t, first), ""); err != nil {
				t.Fatal(err)
			}
			exp := time.Now().Add(time.Hour)
			for _, s := range []string{"current-session", "other-session"} {
				if err := f.db.CreateSession(ctx, s, policy.Session{UserID: f.alice.UserID, CSRF: "x", ExpiresAt: exp}); err != nil {
					t.Fatal(err)
				}
			}
			if err := f.db.CreateSession(ctx, "bobs-session", policy.Session{UserID: f.bob.UserID, CSRF: "x", ExpiresAt: exp}); err != nil {
				t.Fatal(err)
			}
			for name, tc := range map[string]struct {
				p                   policy.Principal
				user, current, next string
				want                policy.Code
				field               string
			}{
				"wrong current":    {f.alice, f.alice.UserID, "not it at all", second, policy.EInvalid, "current_password"},
				"too short":        {f.alice, f.alice.UserID, first, "short", policy.EInvalid, "new_password"},
				"unchanged":        {f.alice, f.alice.UserID, first, first, policy.EInvalid, "new_password"},
				"admin sets bob's": {f.admin, f.alice.UserID, first, second, policy.EForbidden, ""},
				"secret token":     {f.key, f.alice.UserID, first, second, policy.EForbidden, ""},
				"another account":  {policy.Principal{AccountID: "acc_x", UserID: f.alice.UserID}, f.alice.UserID, first, second, policy.ENotFound, ""},
			} {
				err := f.svc.SetPassword(ctx, tc.p, tc.user, tc.current, tc.next, "current-session")
				pe, _ := errors.AsType[*policy.Error](err)
				if code(err) != tc.want || (pe != nil && pe.Field != tc.field) {
					t.Errorf("%s: got %v, want code %q field %q", name, err, tc.want, tc.field)
				}
			}
			if _, err := f.db.SessionByID(ctx, "other-session"); err != nil {
				t.Fatalf("a refused change ended a session: %v", err)
			}
			if err := f.svc.SetPassword(ctx, f.alice, f.alice.UserID, first, second, "current-session"); err != nil {
				t.Fatalf("change: %v", err)
			}
			u, err := f.db.User(ctx, f.alice.UserID)
			if err != nil || bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(second)) != nil {
				t.Errorf("the new password does not match the stored hash (%v)", err)
			}
			if _, err := f.db.SessionByID(ctx, "current-session"); err != nil {
				t.Errorf("the session making the change: got %v, want it kept", err)
			}
			if _, err := f.db.SessionByID(ctx, "other-session"); !errors.Is(err, policy.ErrNotFound) {
				t.Errorf("another session of the user: got %v, want ended", err)
			}
			if _, err := f.db.SessionByID(ctx, "bobs-session"); err != nil {
				t.Errorf("another user's session: got %v, want it kept", err)
			}
		})
	}
}

func TestChangeRole(t *testing.T) {
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			f := mustFixture(t, d, nil)
			if _, err := f.svc.ChangeRole(ctx, f.alice, f.bob.UserID, policy.RoleAdmin); code(err) != policy.EForbidden {
				t.Errorf("member promotes: got %v, want forbidden", err)
			}
			if _, err := f.svc.ChangeRole(ctx, f.admin, f.admin.UserID, policy.RoleMember); !errors.Is(err, policy.ErrLastAdmin) {
				t.Errorf("the last admin steps down: got %v, want ErrLastAdmin", err)
			}
			if _, err := f.svc.ChangeRole(ctx, f.admin, f.bob.UserID, "root"); code(err) != policy.EInvalid {
				t.Errorf("no such role: got %v, want invalid", err)
			}
			other := policy.Principal{AccountID: "acc_other", UserID: "usr_x", Admin: true}
			if _, err := f.svc.ChangeRole(ctx, other, f.bob.UserID, policy.RoleAdmin); !errors.Is(err, policy.ErrNotFound) {
				t.Errorf("another account's admin: got %v, want not found", err)
			}
			u, err := f.svc.ChangeRole(ctx, f.key, f.bob.UserID, policy.RoleAdmin)
			if err != nil || u.Role != policy.RoleAdmin {
				t.Fatalf("secret token promotes bob: got %+v, %v", u, err)
			}
			if got, _ := f.db.User(ctx, f.bob.UserID); got.Role != policy.RoleAdmin {
				t.Errorf("bob's stored role: got %q, want admin", got.Role)
			}
			if u, err := f.svc.ChangeRole(ctx, f.admin, f.admin.UserID, policy.RoleMember); err != nil || u.Role != policy.RoleMember {
				t.Errorf("an admin steps down beside another: got %+v, %v", u, err)
			}
		})
	}
}

// Two admins demoting each other at once: one must be refused, on every
// replica, so the account keeps an admin.
func TestChangeRoleRace(t *testing.T) {
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			f := mustFixture(t, d, nil)
			if _, err := f.svc.ChangeRole(ctx, f.admin, f.bob.UserID, policy.RoleAdmin); err != nil {
				t.Fatal(err)
			}
			bob := f.bob
			bob.Admin = true
			for round := range 10 {
				var wg sync.WaitGroup
				errs := make([]error, 2)
				for i, pair := range [][2]policy.Principal{{f.admin, bob}, {bob, f.admin}} {
					wg.Go(func() { _, errs[i] = f.svc.ChangeRole(ctx, pair[0], pair[1].UserID, policy.RoleMember) })
				}
				wg.Wait()
				users, err := f.db.ListUsers(ctx, f.admin.AccountID)
				if err != nil {
					t.Fatal(err)
				}
				admins := 0
				for _, u := range users {
					if u.Role == policy.RoleAdmin {
						admins++
					}
				}
				if admins != 1 || (errs[0] == nil) == (errs[1] == nil) {
					t.Fatalf("round %d: got %d admins and errors %v; want 1 admin and one refusal", round, admins, errs)
				}
				// Make both admins again for the next round.
				for _, p := range []policy.Principal{f.admin, bob} {
					if _, err := f.svc.ChangeRole(ctx, policy.OperatorPrincipal(), p.UserID, policy.RoleAdmin); err != nil {
						t.Fatal(err)
					}
				}
			}
		})
	}
}

func mustHash(t *testing.T, pw string) string {
	t.Helper()
	h, err := manage.HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
