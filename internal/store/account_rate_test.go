package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/store"
)

// TestAccountRateLimitRoundTrip: an account's rate limit is stored, read
// back by every read (one account, the list, a token's cache miss),
// changed, removed, and refused when invalid, naming the field.
func TestAccountRateLimitRoundTrip(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a := &policy.Account{Name: "Limited", RateLimit: &policy.RateLimit{RPS: 20}}
		if _, _, err := db.CreateAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
		_, value := mustToken(t, db, a.ID, nil)
		want := policy.RateLimit{RPS: 20, Burst: 20} // the burst defaults to the rate
		check := func(step string, want *policy.RateLimit) {
			t.Helper()
			got, err := db.Account(ctx, a.ID)
			if err != nil {
				t.Fatal(err)
			}
			list, err := db.ListAccounts(ctx)
			if err != nil || len(list) != 1 {
				t.Fatalf("list: got %d accounts, %v, want 1", len(list), err)
			}
			_, viaToken, err := db.TokenByHash(ctx, policy.HashValue(value))
			if err != nil {
				t.Fatal(err)
			}
			for src, rl := range map[string]*policy.RateLimit{"account": got.RateLimit, "list": list[0].RateLimit, "token by hash": viaToken.RateLimit} {
				if (rl == nil) != (want == nil) || (rl != nil && *rl != *want) {
					t.Errorf("%s, read by %s: got %v, want %v", step, src, rl, want)
				}
			}
		}
		check("created", &want)
		if _, err := db.UpdateAccount(ctx, a.ID, func(a *policy.Account) error {
			a.RateLimit = &policy.RateLimit{RPS: 5, Burst: 50}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		check("changed", &policy.RateLimit{RPS: 5, Burst: 50})
		for name, rl := range map[string]policy.RateLimit{"zero rps": {RPS: 0, Burst: 1}, "huge burst": {RPS: 1, Burst: 1 << 40}} {
			_, err := db.UpdateAccount(ctx, a.ID, func(a *policy.Account) error { a.RateLimit = &rl; return nil })
			var perr *policy.Error
			if !errors.As(err, &perr) || perr.Field != "rate_limit" {
				t.Errorf("%s: got %v, want an error naming rate_limit", name, err)
			}
		}
		check("after refused changes", &policy.RateLimit{RPS: 5, Burst: 50})
		if _, err := db.UpdateAccount(ctx, a.ID, func(a *policy.Account) error { a.RateLimit = nil; return nil }); err != nil {
			t.Fatal(err)
		}
		check("removed", nil)
	})
}
