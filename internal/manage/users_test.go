package manage_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/tollgate/tollgate/internal/manage"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// The account's secret token (an admin that is no user) cannot remove the
// only admin; once another admin exists it can.
func TestDeleteUserLastAdmin(t *testing.T) {
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			f := mustFixture(t, d, nil)
			if err := f.svc.DeleteUser(ctx, f.key, f.admin.UserID); !errors.Is(err, policy.ErrLastAdminRemoval) {
				t.Fatalf("the secret token removes the only admin: got %v, want ErrLastAdminRemoval", err)
			}
			if _, err := f.db.User(ctx, f.admin.UserID); err != nil {
				t.Fatalf("the only admin after a refused removal: %v", err)
			}
			if _, err := f.svc.ChangeRole(ctx, f.admin, f.bob.UserID, policy.RoleAdmin); err != nil {
				t.Fatal(err)
			}
			if err := f.svc.DeleteUser(ctx, f.key, f.admin.UserID); err != nil {
				t.Errorf("the secret token removes one of two admins: %v", err)
			}
		})
	}
}

// Two admins removing each other at once: one must be refused, so the
// account keeps an admin.
func TestDeleteUserRace(t *testing.T) {
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			f := mustFixture(t, d, nil)
			for round := range 10 {
				a, b := mustAdmin(t, f), mustAdmin(t, f)
				removeOthers(t, f, a, b)
				errs := race(
					func() error { return f.svc.DeleteUser(ctx, a, b.UserID) },
					func() error { return f.svc.DeleteUser(ctx, b, a.UserID) })
				wantOneAdmin(t, f, round, errs)
			}
		})
	}
}

// One admin removing the other while the other demotes the first: either
// may win, but not both, so the account keeps an admin.
func TestDeleteUserRacesDemotion(t *testing.T) {
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			f := mustFixture(t, d, nil)
			for round := range 10 {
				a, b := mustAdmin(t, f), mustAdmin(t, f)
				removeOthers(t, f, a, b)
				errs := race(
					func() error { return f.svc.DeleteUser(ctx, a, b.UserID) },
					func() error { _, err := f.svc.ChangeRole(ctx, b, a.UserID, policy.RoleMember); return err })
				wantOneAdmin(t, f, round, errs)
				for _, err := range errs {
					if err != nil && !errors.Is(err, policy.ErrLastAdmin) && !errors.Is(err, policy.ErrLastAdminRemoval) {
						t.Errorf("round %d: refused with %v, want a last-admin refusal", round, err)
					}
				}
			}
		})
	}
}

// An admin demoted after their request read their role (the principal
// still says admin) can neither remove a teammate nor change a role: the
// role is checked again under the users' lock.
func TestDemotedAdminRefusedUnderLock(t *testing.T) {
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			f := mustFixture(t, d, nil)
			stale := mustAdmin(t, f)
			if _, err := f.svc.ChangeRole(ctx, policy.OperatorPrincipal(), stale.UserID, policy.RoleMember); err != nil {
				t.Fatal(err)
			}
			if _, err := f.svc.ChangeRole(ctx, stale, f.bob.UserID, policy.RoleAdmin); !errors.Is(err, manage.ErrAdminOnly) {
				t.Errorf("a demoted admin's role change: got %v, want ErrAdminOnly", err)
			}
			if err := f.svc.DeleteUser(ctx, stale, f.bob.UserID); !errors.Is(err, manage.ErrAdminOnly) {
				t.Errorf("a demoted admin's removal: got %v, want ErrAdminOnly", err)
			}
			if u, err := f.db.User(ctx, f.bob.UserID); err != nil || u.Role != policy.RoleMember {
				t.Errorf("the teammate afterwards: %+v, %v; want kept, a member", u, err)
			}
			// A current admin still may.
			if _, err := f.svc.ChangeRole(ctx, f.admin, f.bob.UserID, policy.RoleAdmin); err != nil {
				t.Errorf("a current admin's role change: %v", err)
			}
		})
	}
}

// mustAdmin adds an admin to the fixture's account.
func mustAdmin(t *testing.T, f *fixture) policy.Principal {
	t.Helper()
	u, _, err := f.svc.CreateUser(context.Background(), policy.OperatorPrincipal(), manage.NewUser{
		AccountID: f.admin.AccountID, Email: policy.NewID("adm") + "@example.com", Role: policy.RoleAdmin, MakePassword: true})
	if err != nil {
		t.Fatal(err)
	}
	return policy.Principal{AccountID: u.AccountID, UserID: u.ID, Admin: true}
}

// removeOthers leaves keep as the account's only admins: the others are
// made members.
func removeOthers(t *testing.T, f *fixture, keep ...policy.Principal) {
	t.Helper()
	ctx := context.Background()
	users, err := f.db.ListUsers(ctx, f.admin.AccountID)
	if err != nil {
		t.Fatal(err)
	}
next:
	for _, u := range users {
		for _, k := range keep {
			if u.ID == k.UserID || u.Role != policy.RoleAdmin {
				continue next
			}
		}
		if _, err := f.svc.ChangeRole(ctx, policy.OperatorPrincipal(), u.ID, policy.RoleMember); err != nil {
			t.Fatal(err)
		}
	}
}

// race runs the changes at once and returns their errors.
func race(changes ...func() error) []error {
	var wg sync.WaitGroup
	errs := make([]error, len(changes))
	for i, change := range changes {
		wg.Go(func() { errs[i] = change() })
	}
	wg.Wait()
	return errs
}

// wantOneAdmin fails unless the account has one admin and exactly one of
// the raced changes was refused.
func wantOneAdmin(t *testing.T, f *fixture, round int, errs []error) {
	t.Helper()
	users, err := f.db.ListUsers(context.Background(), f.admin.AccountID)
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
}
