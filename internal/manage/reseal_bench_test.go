package manage_test

import (
	"context"
	"crypto/rand"
	"testing"

	"github.com/tollgate/tollgate/internal/manage"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/seal"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// BenchmarkReseal re-seals 1,000 tokens (half of them signed: 1,500
// values) per iteration, from key A to B and back, in batches of 500, on
// each store: what a rotation costs per value, to plan one over millions.
func BenchmarkReseal(b *testing.B) {
	for _, d := range storetest.Dialects() {
		b.Run(string(d), func(b *testing.B) {
			ctx := context.Background()
			ka, kb := make([]byte, seal.KeySize), make([]byte, seal.KeySize)
			rand.Read(ka)
			rand.Read(kb)
			boxA, _ := seal.NewBox(ka)
			rings := []*seal.Box{nil, nil}
			rings[0], _ = seal.NewBox(kb, ka)
			rings[1], _ = seal.NewBox(ka, kb)
			db, _ := storetest.MustOpen(b, d)
			acc := &policy.Account{Name: "Bench"}
			if _, _, err := db.CreateAccount(ctx, acc); err != nil {
				b.Fatal(err)
			}
			const tokens = 1000
			for i := range tokens {
				tok := policy.NewToken(acc.ID, policy.Publishable)
				if i%2 == 0 {
					tok.Signed, tok.SigningSecret = true, boxA.Seal(tok.ID, []byte(policy.NewSigningSecret()))
				}
				if _, err := db.CreateTokenSealed(ctx, tok, func(id, v string) []byte { return boxA.Seal(id+"#value", []byte(v)) }); err != nil {
					b.Fatal(err)
				}
			}
			values := 0
			for i := 0; b.Loop(); i++ {
				rep, err := manage.Reseal(ctx, db, rings[i%2], 500)
				if err != nil || len(rep.Unopenable) != 0 {
					b.Fatalf("reseal: %+v, %v", rep, err)
				}
				values += rep.Resealed
			}
			b.ReportMetric(float64(values)/b.Elapsed().Seconds(), "values/s")
		})
	}
}
