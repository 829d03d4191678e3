package manage_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/tollgate/tollgate/internal/manage"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/seal"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

func mustBox(t *testing.T, key []byte, previous ...[]byte) *seal.Box {
	t.Helper()
	box, err := seal.NewBox(key, previous...)
	if err != nil {
		t.Fatal(err)
	}
	return box
}

// TestResealRotation: tokens made under key A reveal their values and open
// their signing secrets under B with A as a previous key; a reseal that
// runs while tokens are rolled leaves everything, rolled or not, opening
// under B alone, with the latest values; a second run changes nothing; a
// value no key opens is named by token and never shown.
func TestResealRotation(t *testing.T) {
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			a, b := make([]byte, seal.KeySize), make([]byte, seal.KeySize)
			rand.Read(a)
			rand.Read(b)
			f := mustFixture(t, d, mustBox(t, a))
			signed := true
			const n = 24
			values, secrets := map[string]string{}, map[string]string{}
			var ids []string
			for i := range n {
				patch := &policy.TokenPatch{}
				if i%2 == 0 {
					patch.Signed = &signed
				}
				made, err := f.svc.CreateToken(ctx, f.alice, "", policy.Publishable, patch)
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, made.Token.ID)
				values[made.Token.ID] = made.Value
				if made.SigningSecret != "" {
					secrets[made.Token.ID] = made.SigningSecret
				}
			}
			ring := mustBox(t, b, a)
			onlyB := mustBox(t, b)
			rotated := manage.New(f.db, manage.Config{Box: ring})
			check := func(when string, svc *manage.Service, box *seal.Box) {
				t.Helper()
				for _, id := range ids {
					if v, err := svc.RevealToken(ctx, f.alice, id); err != nil || v != values[id] {
						t.Errorf("%s: reveal %s = %q, %v; want %q", when, id, v, err, values[id])
					}
					tok, err := f.db.Token(ctx, id)
					if err != nil {
						t.Fatal(err)
					}
					if want, ok := secrets[id]; ok {
						if got, err := box.Open(id, tok.SigningSecret); err != nil || string(got) != want {
							t.Errorf("%s: signing secret of %s = %q, %v; want %q", when, id, got, err, want)
						}
					}
				}
			}
			check("B with A as previous, before the reseal", rotated, ring)
			if _, err := manage.New(f.db, manage.Config{Box: onlyB}).RevealToken(ctx, f.alice, ids[0]); policy.ErrorCode(err) != policy.EConflict {
				t.Fatalf("B alone before the reseal: got %v, want a conflict", err)
			}

			// Rolls through a replica that seals under B, while the reseal runs.
			var wg sync.WaitGroup
			var rollErr error
			wg.Go(func() {
				for i, id := range ids[:8] {
					if _, ok := secrets[id]; ok && i%4 == 0 {
						is, err := rotated.RollSigningSecret(ctx, f.alice, id)
						if err != nil {
							rollErr = err
							return
						}
						secrets[id] = is.SigningSecret
						continue
					}
					is, err := rotated.RollToken(ctx, f.alice, id, 0)
					if err != nil {
						rollErr = err
						return
					}
					values[id] = is.Value
				}
			})
			rep, err := manage.Reseal(ctx, f.db, ring, 5)
			wg.Wait()
			if err != nil || rollErr != nil {
				t.Fatalf("reseal: %v; rolls: %v", err, rollErr)
			}
			total := n + len(secrets)
			if rep.Resealed+rep.Current != total || rep.Resealed == 0 || len(rep.Unopenable) != 0 {
				t.Errorf("report %+v, want %d values re-sealed or already current, none unopenable", rep, total)
			}
			if cur, _ := ring.KeyIDs(); rep.KeyID != cur || rep.KeyID != seal.KeyID(b) {
				t.Errorf("report's key id %s, want B's %s", rep.KeyID, seal.KeyID(b))
			}
			check("B alone, after the reseal", manage.New(f.db, manage.Config{Box: onlyB}), onlyB)

			again, err := manage.Reseal(ctx, f.db, ring, 5)
			if err != nil || again.Resealed != 0 || again.Current != total || len(again.Unopenable) != 0 {
				t.Errorf("second reseal: %+v, %v; want all %d already current", again, err, total)
			}

			// A token sealed under a key the keyring does not hold.
			c := make([]byte, seal.KeySize)
			rand.Read(c)
			stranger, err := manage.New(f.db, manage.Config{Box: mustBox(t, c)}).CreateToken(ctx, f.alice, "", policy.Publishable, &policy.TokenPatch{Signed: &signed})
			if err != nil {
				t.Fatal(err)
			}
			bad, err := manage.Reseal(ctx, f.db, ring, 5)
			if err != nil {
				t.Fatal(err)
			}
			want := []manage.Unopenable{{TokenID: stranger.Token.ID, What: "signing secret"}, {TokenID: stranger.Token.ID, What: "value"}}
			if fmt.Sprint(bad.Unopenable) != fmt.Sprint(want) || bad.Current != total {
				t.Errorf("with a stranger's token: %+v, want %v unopenable and %d current", bad, want, total)
			}
			out, _ := json.Marshal(bad)
			if strings.Contains(string(out), stranger.Value) || strings.Contains(string(out), stranger.SigningSecret) {
				t.Errorf("the report shows a value: %s", out)
			}
			if tok, _ := f.db.Token(ctx, stranger.Token.ID); !bytes.Equal(mustOpen(t, mustBox(t, c), stranger.Token.ID, tok.SigningSecret), []byte(stranger.SigningSecret)) {
				t.Error("an unopenable value was changed")
			}
		})
	}
}

func mustOpen(t *testing.T, box *seal.Box, owner string, sealed []byte) []byte {
	t.Helper()
	b, err := box.Open(owner, sealed)
	if err != nil {
		t.Fatalf("open %s: %v", owner, err)
	}
	return b
}
