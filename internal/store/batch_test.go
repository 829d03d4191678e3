package store_test

import (
	"context"
	"testing"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/store"
)

// TestTokensByHash: one query answers each hash with its own token, as
// TokenByHash would, and leaves out hashes without a live key.
func TestTokensByHash(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a, _, _ := mustAccount(t, db)
		var hs []policy.Hash
		for range 3 {
			_, value := mustToken(t, db, a.ID, nil)
			hs = append(hs, policy.HashValue(value))
		}
		unknown := policy.HashValue(policy.NewValue(policy.Publishable))
		got, err := db.TokensByHash(ctx, []policy.Hash{hs[0], unknown, hs[1], hs[2]})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 {
			t.Fatalf("got %d tokens, want 3", len(got))
		}
		if _, ok := got[unknown]; ok {
			t.Errorf("an unknown hash was found")
		}
		for _, h := range hs {
			tok, acc, err := db.TokenByHash(ctx, h)
			if err != nil {
				t.Fatal(err)
			}
			if g, w := asJSON(t, got[h].Token), asJSON(t, tok); g != w {
				t.Errorf("token of %v: got %s, want %s", h, g, w)
			}
			if g, w := asJSON(t, got[h].Account), asJSON(t, acc); g != w {
				t.Errorf("account of %v: got %s, want %s", h, g, w)
			}
		}
		none, err := db.TokensByHash(ctx, []policy.Hash{unknown})
		if err != nil || len(none) != 0 {
			t.Errorf("only an unknown hash: got %v, %v; want nothing", none, err)
		}
	})
}
