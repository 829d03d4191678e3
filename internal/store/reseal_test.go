package store_test

import (
	"bytes"
	"context"
	"slices"
	"testing"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/store"
)

// sealedOf reads every sealed value in the store, in batches of batch.
func sealedOf(t *testing.T, db *store.DB, batch int) map[string][]byte {
	t.Helper()
	got := map[string][]byte{}
	after := ""
	for {
		page, next, err := db.SealedAfter(context.Background(), after, batch)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range page {
			got[s.TokenID+" "+s.Kind.String()] = s.Bytes
		}
		if next == "" {
			return got
		}
		if next <= after {
			t.Fatalf("SealedAfter(%q) continues after %q: it would never end", after, next)
		}
		after = next
	}
}

// TestReseal: the store lists every sealed value in batches and replaces
// one only while it still holds what was read, so a roll (or a signing
// secret switched off) between the read and the write is never undone.
func TestReseal(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a, _, _ := mustAccount(t, db) // its secret token keeps nothing sealed
		old := func(id, v string) []byte { return []byte("old:" + id + ":" + v) }
		var want []string
		var signed, kept []string
		values := map[string]string{}
		for i := range 5 {
			tok := policy.NewToken(a.ID, policy.Publishable)
			tok.Signed, tok.SigningSecret = i%2 == 0, []byte("old-secret:"+tok.ID)
			if !tok.Signed {
				tok.SigningSecret = nil
			} else {
				signed = append(signed, tok.ID)
				want = append(want, tok.ID+" signing secret")
			}
			v, err := db.CreateTokenSealed(ctx, tok, old)
			if err != nil {
				t.Fatal(err)
			}
			values[tok.ID] = v
			kept = append(kept, tok.ID)
			want = append(want, tok.ID+" value")
		}
		plain, _ := mustToken(t, db, a.ID, nil) // made without a key: nothing sealed
		for _, batch := range []int{1, 2, 100} {
			got := sealedOf(t, db, batch)
			keys := slices.Sorted(func(yield func(string) bool) {
				for k := range got {
					if !yield(k) {
						return
					}
				}
			})
			if !slices.Equal(keys, slices.Sorted(slices.Values(want))) {
				t.Errorf("batches of %d: sealed values %v, want %v", batch, keys, slices.Sorted(slices.Values(want)))
			}
			if _, ok := got[plain.ID+" value"]; ok {
				t.Errorf("batches of %d: a token made without a key has a sealed value", batch)
			}
		}
		if _, _, err := db.SealedAfter(ctx, "", 0); policy.ErrorCode(err) != policy.EInvalid {
			t.Errorf("a batch of 0: got %v, want invalid", err)
		}

		page, _, err := db.SealedAfter(ctx, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		// Between the read and the write: one token is rolled, another has
		// its signing switched off, a third is deleted.
		rolled, unsigned, deleted := kept[1], signed[1], kept[3]
		if _, _, err := db.RollTokenSealed(ctx, rolled, 0, func(id, v string) []byte { return []byte("rolled:" + id) }); err != nil {
			t.Fatal(err)
		}
		if _, err := db.UpdateToken(ctx, unsigned, func(t *policy.Token) error { t.Signed, t.SigningSecret = false, nil; return nil }); err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteToken(ctx, deleted); err != nil {
			t.Fatal(err)
		}
		last, err := db.LastChange(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var rs []policy.Resealed
		for _, s := range page {
			rs = append(rs, policy.Resealed{Sealed: s, New: append([]byte("new:"), s.Bytes...)})
		}
		written, err := db.Reseal(ctx, rs)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range rs {
			stale := (r.TokenID == rolled && r.Kind == policy.SealedValue) ||
				(r.TokenID == unsigned && r.Kind == policy.SealedSigningSecret) || r.TokenID == deleted
			if written[i] == stale {
				t.Errorf("%s of %s: written %v, want %v", r.Kind, r.TokenID, written[i], !stale)
			}
		}
		after := sealedOf(t, db, 100)
		for k, b := range after {
			if !bytes.HasPrefix(b, []byte("new:old")) && k != rolled+" value" {
				t.Errorf("%s after reseal: %q, want it re-sealed", k, b)
			}
		}
		if got := string(after[rolled+" value"]); got != "rolled:"+rolled {
			t.Errorf("the value rolled during the reseal: %q, want the roll's, never the old one written back", got)
		}
		if b, ok := after[unsigned+" signing secret"]; ok {
			t.Errorf("the signing secret switched off during the reseal came back: %q", b)
		}
		if s, err := db.SealedOf(ctx, deleted); err != nil || len(s) != 0 {
			t.Errorf("the deleted token: %v, %v; want nothing", s, err)
		}
		if s, err := db.SealedOf(ctx, rolled); err != nil || len(s) != 1 || string(s[0].Bytes) != "rolled:"+rolled {
			t.Errorf("SealedOf the rolled token: %+v, %v", s, err)
		}

		// A re-sealed signing secret is announced like any change to the
		// token, so the replicas read it again.
		changes, err := db.Changes(ctx, last, 100)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(changes, func(c store.Change) bool { return c.Hash == policy.HashValue(values[signed[0]]) }) {
			t.Errorf("changes after re-sealing %s's signing secret: %+v, want one for its key", signed[0], changes)
		}
	})
}

// TestResealedValueIsNotAnnounced: re-sealing a kept publishable value
// (which no policy holds) sends no change to the replicas, on either
// store, so rotating the key does not empty every replica's cache; a roll
// of the same token still does.
func TestResealedValueIsNotAnnounced(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a, _, _ := mustAccount(t, db)
		tok := policy.NewToken(a.ID, policy.Publishable)
		v, err := db.CreateTokenSealed(ctx, tok, func(id, v string) []byte { return []byte("old:" + id) })
		if err != nil {
			t.Fatal(err)
		}
		announced := func(since int64) bool {
			t.Helper()
			changes, err := db.Changes(ctx, since, 100)
			if err != nil {
				t.Fatal(err)
			}
			return slices.ContainsFunc(changes, func(c store.Change) bool { return c.Hash == policy.HashValue(v) })
		}
		last, err := db.LastChange(ctx)
		if err != nil {
			t.Fatal(err)
		}
		sealed, err := db.SealedOf(ctx, tok.ID)
		if err != nil || len(sealed) != 1 {
			t.Fatalf("SealedOf: %+v, %v", sealed, err)
		}
		written, err := db.Reseal(ctx, []policy.Resealed{{Sealed: sealed[0], New: []byte("new:" + tok.ID)}})
		if err != nil || !written[0] {
			t.Fatalf("Reseal: %v, %v", written, err)
		}
		if announced(last) {
			t.Error("re-sealing the kept value was announced to the replicas")
		}
		if _, _, err := db.RollTokenSealed(ctx, tok.ID, 0, func(id, v string) []byte { return []byte("rolled:" + id) }); err != nil {
			t.Fatal(err)
		}
		if !announced(last) {
			t.Error("rolling the token was not announced")
		}
	})
}
