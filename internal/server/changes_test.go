package server_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// TestCheckSeesChanges checks that a change made through the store (another
// process, as far as the server knows) decides the next Checks within one
// second: through NOTIFY on Postgres, the change-log poll on SQLite.
func TestCheckSeesChanges(t *testing.T) {
	t.Parallel()
	const within = time.Second
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			db, u := storetest.MustOpen(t, d)
			s := MustStartServer(t, u, nil)
			if d == store.Postgres {
				s.WaitListening(t)
			}
			ctx := context.Background()
			tests := map[string]struct {
				setup  func(*policy.Token)
				req    func(value string) envoyRequest
				change func(t *testing.T, tok *policy.Token)
				code   policy.DenyCode // "" means the change allows
			}{
				"disable": {
					change: func(t *testing.T, tok *policy.Token) {
						mustUpdate(t, db, tok.ID, func(t *policy.Token) { t.Enabled = false })
					},
					code: policy.CodeTokenDisabled,
				},
				"enable": {
					setup: func(t *policy.Token) { t.Enabled = false },
					change: func(t *testing.T, tok *policy.Token) {
						mustUpdate(t, db, tok.ID, func(t *policy.Token) { t.Enabled = true })
					},
				},
				"delete": {
					change: func(t *testing.T, tok *policy.Token) {
						if err := db.DeleteToken(ctx, tok.ID); err != nil {
							t.Fatal(err)
						}
					},
					code: policy.CodeTokenUnknown,
				},
				"edit domains": {
					req: func(v string) envoyRequest {
						return envoyRequest{Path: "/v1/prices", Headers: hdr("x-api-key", v, "referer", "https://shop.example.com/cart")}
					},
					change: func(t *testing.T, tok *policy.Token) {
						mustUpdate(t, db, tok.ID, func(t *policy.Token) { t.Domains = []string{"*.other.example"} })
					},
					code: policy.CodeRefererDenied,
				},
				"edit datasets": {
					setup: func(t *policy.Token) { t.Datasets = map[string]policy.Actions{"sales.*": rd} },
					req: func(v string) envoyRequest {
						return envoyRequest{Path: "/v1/datasets/sales.q1", Headers: hdr("x-api-key", v), Ext: dataExt("sales.q1")}
					},
					change: func(t *testing.T, tok *policy.Token) {
						mustUpdate(t, db, tok.ID, func(t *policy.Token) { t.Datasets = map[string]policy.Actions{"prices": rd} })
					},
					code: policy.CodeDatasetDenied,
				},
				"account premium off": {
					setup: func(t *policy.Token) { t.Premium = true },
					req: func(v string) envoyRequest {
						return envoyRequest{Path: "/v1/esg", Headers: hdr("x-api-key", v), Ext: ext("api", "data", "tier", "premium")}
					},
					change: func(t *testing.T, tok *policy.Token) {
						if _, err := db.UpdateAccount(ctx, tok.AccountID, func(a *policy.Account) error { a.Premium = false; return nil }); err != nil {
							t.Fatal(err)
						}
					},
					code: policy.CodeTierDenied,
				},
				"plain SQL disable": {
					change: func(t *testing.T, tok *policy.Token) {
						mustExec(t, d, u, `UPDATE tokens SET enabled = false WHERE id = ?`, tok.ID)
					},
					code: policy.CodeTokenDisabled,
				},
			}
			for name, tc := range tests {
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					acct := &policy.Account{Name: "Fresh " + name, Premium: true}
					if _, _, err := db.CreateAccount(ctx, acct); err != nil {
						t.Fatal(err)
					}
					tok := policy.NewToken(acct.ID, policy.Publishable)
					if tc.setup != nil {
						tc.setup(tok)
					}
					value, err := db.CreateToken(ctx, tok)
					if err != nil {
						t.Fatal(err)
					}
					req := envoyRequest{Path: "/v1/prices", Headers: hdr("x-api-key", value)}
					if tc.req != nil {
						req = tc.req(value)
					}
					before := func(resp *authv3.CheckResponse) bool {
						return tc.code == "" && deniedWith(policy.CodeTokenDisabled)(resp) || tc.code != "" && allowed(resp)
					}
					after := allowed
					if tc.code != "" {
						after = deniedWith(tc.code)
					}
					// Twice, so that the answer comes from the cache.
					for range 2 {
						if resp := s.MustCheck(t, req.proto()); !before(resp) {
							t.Fatalf("before the change: got %s", describe(resp))
						}
					}
					tc.change(t, tok)
					took := pollUntil(t, s, req, within, after)
					t.Logf("%s: the change showed after %v", d, took.Round(time.Millisecond))
				})
			}
			t.Run("expiry while cached", func(t *testing.T) {
				t.Parallel()
				acct := &policy.Account{Name: "Expiring"}
				if _, _, err := db.CreateAccount(ctx, acct); err != nil {
					t.Fatal(err)
				}
				tok := policy.NewToken(acct.ID, policy.Publishable)
				expires := time.Now().Add(700 * time.Millisecond)
				tok.ExpiresAt = &expires
				value, err := db.CreateToken(ctx, tok)
				if err != nil {
					t.Fatal(err)
				}
				req := envoyRequest{Path: "/v1/prices", Headers: hdr("x-api-key", value)}
				if resp := s.MustCheck(t, req.proto()); !allowed(resp) {
					t.Fatalf("before expiry: got %s, want allow", describe(resp))
				}
				time.Sleep(time.Until(expires))
				expectDeny(t, s.MustCheck(t, req.proto()), policy.CodeTokenExpired, tok.ID, []string{value})
			})
		})
	}
}

func mustUpdate(t *testing.T, db *store.DB, id string, fn func(*policy.Token)) {
	t.Helper()
	if _, err := db.UpdateToken(context.Background(), id, func(t *policy.Token) error { fn(t); return nil }); err != nil {
		t.Fatalf("update token: %v", err)
	}
}

// mustExec runs one statement with plain SQL, outside the store, with '?'
// placeholders.
func mustExec(t *testing.T, d store.Dialect, dbURL, query string, args ...any) {
	t.Helper()
	driver, dsn := "postgres", dbURL
	if d == store.SQLite {
		driver, dsn = "sqlite", "file:"+strings.TrimPrefix(dbURL, "sqlite:")+"?_pragma=busy_timeout(10000)"
	} else {
		for i := 1; strings.Contains(query, "?"); i++ {
			query = strings.Replace(query, "?", "$"+string(rune('0'+i)), 1)
		}
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}
