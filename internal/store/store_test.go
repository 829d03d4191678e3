package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// eachDialect runs fn as a subtest against a fresh store of every backend.
func eachDialect(t *testing.T, fn func(t *testing.T, db *store.DB)) {
	t.Helper()
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			db, _ := storetest.MustOpen(t, d)
			fn(t, db)
		})
	}
}

func mustAccount(t *testing.T, db *store.DB) (*policy.Account, *policy.Token, string) {
	t.Helper()
	a := &policy.Account{Name: "Acme"}
	secret, value, err := db.CreateAccount(context.Background(), a)
	if err != nil {
		t.Fatalf("create account: %v", err)
	}
	return a, secret, value
}

func mustToken(t *testing.T, db *store.DB, accountID string, change func(*policy.Token)) (*policy.Token, string) {
	t.Helper()
	tok := policy.NewToken(accountID, policy.Publishable)
	if change != nil {
		change(tok)
	}
	value, err := db.CreateToken(context.Background(), tok)
	if err != nil {
		t.Fatalf("create token: %v", err)
	}
	return tok, value
}

func asJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestMigrateTwiceIsNoop(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		applied, err := db.Migrate(ctx)
		if err != nil {
			t.Fatalf("migrate again: %v", err)
		}
		if len(applied) != 0 {
			t.Errorf("second migrate applied %v, want nothing", applied)
		}
		cur, latest, err := db.SchemaVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if cur != latest || cur < 1 {
			t.Errorf("schema version %d, latest %d; want equal and >= 1", cur, latest)
		}
	})
}

func TestAccountCreateAndUpdate(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		quota := int64(5000)
		a := &policy.Account{Name: "  Acme  ", Premium: true, CreditQuota: &quota}
		secret, value, err := db.CreateAccount(ctx, a)
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		if a.Name != "Acme" {
			t.Errorf("name %q, want trimmed %q", a.Name, "Acme")
		}
		if k, err := policy.ParseValue(value); err != nil || k != policy.Secret {
			t.Errorf("secret value %q: kind %v, err %v; want a well-formed secret token", value, k, err)
		}
		if secret.Kind != policy.Secret || secret.AccountID != a.ID {
			t.Errorf("secret token %+v does not belong to %s", secret, a.ID)
		}
		got, err := db.Account(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if asJSON(t, got) != asJSON(t, a) {
			t.Errorf("read back %s, want %s", asJSON(t, got), asJSON(t, a))
		}

		// A failed update changes nothing.
		_, err = db.UpdateAccount(ctx, a.ID, func(a *policy.Account) error {
			a.Premium = false
			n := int64(-1)
			a.CreditQuota = &n
			return nil
		})
		if policy.ErrorCode(err) != policy.EInvalid {
			t.Errorf("negative quota: got %v, want an invalid error", err)
		}
		if got, _ := db.Account(ctx, a.ID); !got.Premium || *got.CreditQuota != 5000 {
			t.Errorf("after a failed update: %s, want it unchanged", asJSON(t, got))
		}

		upd, err := db.UpdateAccount(ctx, a.ID, func(a *policy.Account) error {
			a.CreditQuota = nil
			return nil
		})
		if err != nil || upd.CreditQuota != nil {
			t.Errorf("clear quota: got %v, %v; want no quota", upd, err)
		}

		for name, bad := range map[string]policy.Account{
			"empty name":     {Name: " "},
			"negative quota": {Name: "x", CreditQuota: new(int64(-5))},
		} {
			if _, _, err := db.CreateAccount(ctx, &bad); policy.ErrorCode(err) != policy.EInvalid {
				t.Errorf("%s: got %v, want an invalid error", name, err)
			}
		}
		if _, err := db.Account(ctx, "acc_missing"); !errors.Is(err, policy.ErrNotFound) {
			t.Errorf("missing account: got %v, want not found", err)
		}
	})
}

// TokenByHash prepares its query on first use: a look-up that fails
// before the tables exist must not stop the ones after Migrate.
func TestTokenByHashBeforeMigrate(t *testing.T) {
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db, err := store.Open(ctx, storetest.URL(t, d), store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			h := policy.HashValue(policy.NewValue(policy.Publishable))
			if _, _, err := db.TokenByHash(ctx, h); err == nil || errors.Is(err, policy.ErrNotFound) {
				t.Fatalf("look-up without tables: got %v, want an error other than not found", err)
			}
			if _, err := db.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			if _, _, err := db.TokenByHash(ctx, h); !errors.Is(err, policy.ErrNotFound) {
				t.Errorf("after migrate: got %v, want not found", err)
			}
		})
	}
}

func TestTokenRoundTrip(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a, _, _ := mustAccount(t, db)
		exp := time.Date(2030, 1, 2, 3, 4, 5, 123456000, time.UTC)
		limit := int64(1000)
		tok, value := mustToken(t, db, a.ID, func(tok *policy.Token) {
			tok.Nickname = "dashboard"
			tok.Premium = true
			tok.ExpiresAt = &exp
			tok.Datasets = map[string]policy.Actions{"sales.*": policy.Actions(policy.Read | policy.Write), "hr": policy.Actions(policy.Delete)}
			tok.APIs = []string{"Maps", "sql", "maps"}
			tok.Grants = []policy.Grant{{Connection: "warehouse", Type: policy.GrantTable, Source: "public.orders_*"},
				{Connection: "warehouse", Type: policy.GrantQuery, Source: "SELECT *\n  FROM   t"}, {Connection: "lake", Type: policy.GrantAll}}
			tok.Domains = []string{"Example.COM", "https://*.example.org/app"}
			tok.IPs = []string{"10.1.2.3/8", "2001:db8::/32"}
			tok.Signed = true
			tok.SigningSecret = []byte("sealed secret bytes")
			tok.CreditLimit = &limit
			tok.RateLimit = &policy.RateLimit{RPS: 5}
		})
		if !slices.Equal(tok.APIs, []string{"maps", "sql"}) {
			t.Errorf("apis %v, want lower-cased and de-duplicated [maps sql]", tok.APIs)
		}
		if tok.Grants[1].Source != "SELECT * FROM t" {
			t.Errorf("saved query %q, want whitespace-normalised", tok.Grants[1].Source)
		}
		if tok.RateLimit.Burst != 5 {
			t.Errorf("burst %d, want the rate when unset", tok.RateLimit.Burst)
		}
		if tok.Prefix != policy.DisplayPrefix(value) {
			t.Errorf("prefix %q, want %q", tok.Prefix, policy.DisplayPrefix(value))
		}

		got, err := db.Token(ctx, tok.ID)
		if err != nil {
			t.Fatal(err)
		}
		if asJSON(t, got) != asJSON(t, tok) {
			t.Errorf("read back\n%s\nwant\n%s", asJSON(t, got), asJSON(t, tok))
		}
		if string(got.SigningSecret) != "sealed secret bytes" {
			t.Errorf("signing secret read back as %q", got.SigningSecret)
		}
		byHash, acc, err := db.TokenByHash(ctx, policy.HashValue(value))
		if err != nil {
			t.Fatal(err)
		}
		if asJSON(t, byHash) != asJSON(t, tok) || acc.ID != a.ID || acc.Name != a.Name {
			t.Errorf("by hash: %s / %s, want %s / %s", asJSON(t, byHash), asJSON(t, acc), asJSON(t, tok), asJSON(t, a))
		}
		if _, _, err := db.TokenByHash(ctx, policy.HashValue(policy.NewValue(policy.Publishable))); !errors.Is(err, policy.ErrNotFound) {
			t.Errorf("unknown hash: got %v, want not found", err)
		}
	})
}

func TestTokenListOldestFirst(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		db.Now = func() time.Time { clock = clock.Add(time.Second); return clock }
		a, secret, _ := mustAccount(t, db)
		want := []string{secret.ID}
		for range 5 {
			tok, _ := mustToken(t, db, a.ID, nil)
			want = append(want, tok.ID)
		}
		// Tokens of another account never show.
		b, _, _ := mustAccount(t, db)
		mustToken(t, db, b.ID, nil)

		all, err := db.ListTokens(ctx, a.ID, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(all); !slices.Equal(got, want) {
			t.Errorf("list %v, want %v", got, want)
		}
		var paged []string
		after := ""
		for {
			page, err := db.ListTokens(ctx, a.ID, after, 4)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			paged = append(paged, ids(page)...)
			after = page[len(page)-1].ID
		}
		if !slices.Equal(paged, want) {
			t.Errorf("paged %v, want %v", paged, want)
		}
		if _, err := db.ListTokens(ctx, "acc_nope", "", 0); !errors.Is(err, policy.ErrNotFound) {
			t.Errorf("unknown account: got %v, want not found", err)
		}
	})
}

func ids(ts []*policy.Token) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.ID
	}
	return out
}

func TestTokenValidation(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a, secret, _ := mustAccount(t, db)
		tok, _ := mustToken(t, db, a.ID, func(tok *policy.Token) { tok.Domains = []string{"example.com"} })
		before := asJSON(t, tok)
		cases := map[string]struct {
			change func(*policy.Token)
			field  string
		}{
			"bad cidr":        {func(t *policy.Token) { t.IPs = []string{"10.0.0.300/8"} }, "allowed_ips"},
			"bad domain":      {func(t *policy.Token) { t.Domains = []string{"ftp://x.com"} }, "allowed_domains"},
			"unknown api":     {func(t *policy.Token) { t.APIs = []string{"teleport"} }, "allowed_apis"},
			"import and maps": {func(t *policy.Token) { t.APIs = []string{"import", "maps"} }, "allowed_apis"},
			"negative limit":  {func(t *policy.Token) { t.CreditLimit = new(int64(-1)) }, "credit_limit"},
			"zero rate":       {func(t *policy.Token) { t.RateLimit = &policy.RateLimit{RPS: 0} }, "rate_limit"},
			"bad dataset": {func(t *policy.Token) {
				t.Datasets = map[string]policy.Actions{"sales/2024": policy.Actions(policy.Read)}
			}, "datasets"},
			"no actions":     {func(t *policy.Token) { t.Datasets = map[string]policy.Actions{"sales": 0} }, "datasets"},
			"bad grant":      {func(t *policy.Token) { t.Grants = []policy.Grant{{Connection: "c", Type: "view"}} }, "grants"},
			"empty nickname": {func(t *policy.Token) { t.Nickname = "  " }, "nickname"},
			"control char":   {func(t *policy.Token) { t.Nickname = "a\x00b" }, "nickname"},
		}
		for name, c := range cases {
			_, err := db.UpdateToken(ctx, tok.ID, func(t *policy.Token) error { c.change(t); return nil })
			var pe *policy.Error
			if !errors.As(err, &pe) || pe.Code != policy.EInvalid || pe.Field != c.field {
				t.Errorf("%s: got %v, want an invalid error on %s", name, err, c.field)
			}
			got, err := db.Token(ctx, tok.ID)
			if err != nil {
				t.Fatal(err)
			}
			if asJSON(t, got) != before {
				t.Errorf("%s: token changed by a failed update:\n%s\nwant\n%s", name, asJSON(t, got), before)
			}
			// Creation refuses the same values.
			bad := policy.NewToken(a.ID, policy.Publishable)
			c.change(bad)
			if _, err := db.CreateToken(ctx, bad); policy.ErrorCode(err) != policy.EInvalid {
				t.Errorf("%s: create got %v, want invalid", name, err)
			}
		}
		// Secret tokens cannot be narrowed, and an account has only one.
		_, err := db.UpdateToken(ctx, secret.ID, func(t *policy.Token) error { t.APIs = []string{"maps"}; return nil })
		if policy.ErrorCode(err) != policy.EInvalid {
			t.Errorf("narrow a secret token: got %v, want invalid", err)
		}
		if _, err := db.CreateToken(ctx, policy.NewToken(a.ID, policy.Secret)); policy.ErrorCode(err) != policy.EConflict {
			t.Errorf("second secret token: got %v, want conflict", err)
		}
		if _, err := db.CreateToken(ctx, policy.NewToken("acc_nope", policy.Publishable)); !errors.Is(err, policy.ErrNotFound) {
			t.Errorf("token for a missing account: got %v, want not found", err)
		}
		// An error from the caller's change rolls back too.
		boom := errors.New("boom")
		if _, err := db.UpdateToken(ctx, tok.ID, func(t *policy.Token) error { t.Enabled = false; return boom }); !errors.Is(err, boom) {
			t.Errorf("got %v, want the caller's error", err)
		}
		if got, _ := db.Token(ctx, tok.ID); !got.Enabled {
			t.Error("token disabled by an update that failed")
		}
	})
}

func TestTokenDelete(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a, _, _ := mustAccount(t, db)
		tok, value := mustToken(t, db, a.ID, nil)
		if err := db.DeleteToken(ctx, tok.ID); err != nil {
			t.Fatal(err)
		}
		if _, _, err := db.TokenByHash(ctx, policy.HashValue(value)); !errors.Is(err, policy.ErrNotFound) {
			t.Errorf("deleted token by hash: got %v, want not found", err)
		}
		if err := db.DeleteToken(ctx, tok.ID); !errors.Is(err, policy.ErrNotFound) {
			t.Errorf("delete twice: got %v, want not found", err)
		}
	})
}

func TestConcurrentUpdatesLoseNothing(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a, _, _ := mustAccount(t, db)
		tok, _ := mustToken(t, db, a.ID, nil)
		const n = 16
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Go(func() {
				_, err := db.UpdateToken(ctx, tok.ID, func(t *policy.Token) error {
					t.Datasets[fmt.Sprintf("ds%d", i)] = policy.Actions(policy.Read)
					return nil
				})
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("concurrent update: %v", err)
			}
		}
		got, err := db.Token(ctx, tok.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Datasets) != n {
			t.Errorf("%d datasets after %d concurrent additions, want %d: %v", len(got.Datasets), n, n, got.Datasets)
		}
	})
}

func TestChangesAreLogged(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a, _, _ := mustAccount(t, db)
		tok, value := mustToken(t, db, a.ID, nil)
		hash := policy.HashValue(value)
		last, err := db.LastChange(ctx)
		if err != nil {
			t.Fatal(err)
		}
		expect := func(what string, want store.Change) {
			t.Helper()
			changes, err := db.Changes(ctx, last, 100)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, c := range changes {
				found = found || (c.Hash == want.Hash && c.AccountID == want.AccountID)
				last = max(last, c.Seq)
			}
			if !found {
				t.Errorf("%s: changes %+v, want one for %+v", what, changes, want)
			}
		}
		if _, err := db.UpdateToken(ctx, tok.ID, func(t *policy.Token) error { t.Enabled = false; return nil }); err != nil {
			t.Fatal(err)
		}
		expect("disable", store.Change{Hash: hash})
		if _, err := db.UpdateAccount(ctx, a.ID, func(a *policy.Account) error { a.Premium = true; return nil }); err != nil {
			t.Fatal(err)
		}
		expect("account update", store.Change{AccountID: a.ID})
		if err := db.DeleteToken(ctx, tok.ID); err != nil {
			t.Fatal(err)
		}
		expect("delete", store.Change{Hash: hash})
	})
}

func TestParseChange(t *testing.T) {
	h := policy.HashValue("x")
	for in, want := range map[string]*store.Change{
		"h:" + h.String():                {Hash: h},
		"a:acc_123":                      {AccountID: "acc_123"},
		"h:zz":                           nil,
		"h:" + h.String()[:10]:           nil,
		"a:":                             nil,
		"x:acc":                          nil,
		"":                               nil,
		"h" + h.String():                 nil,
		"a:" + string(make([]byte, 100)): nil,
	} {
		got, err := store.ParseChange(in)
		if want == nil {
			if err == nil {
				t.Errorf("ParseChange(%q) = %+v, want an error", in, got)
			}
			continue
		}
		if err != nil || got != *want {
			t.Errorf("ParseChange(%q) = %+v, %v; want %+v", in, got, err, *want)
		}
	}
}

func FuzzParseNotification(f *testing.F) {
	f.Add("42 h:" + policy.HashValue("x").String())
	f.Add("7 a:acc_1")
	f.Add("0 a:acc_1")
	f.Add("-1 a:x")
	f.Add("99999999999999999999 a:x")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := store.ParseNotification(s)
		if err == nil && c.Seq < 1 {
			t.Errorf("ParseNotification(%q) accepted sequence %d", s, c.Seq)
		}
	})
}

func FuzzParseChange(f *testing.F) {
	f.Add("h:" + policy.HashValue("x").String())
	f.Add("a:acc_123")
	f.Add("h:")
	f.Add("a:\x00")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := store.ParseChange(s)
		if err != nil {
			return
		}
		if c.AccountID == "" && c.Hash == (policy.Hash{}) && s != "h:"+(policy.Hash{}).String() {
			t.Errorf("ParseChange(%q) accepted a change that names nothing", s)
		}
	})
}

func TestTokenRoll(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		clock := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
		db.Now = func() time.Time { return clock }
		a, _, _ := mustAccount(t, db)
		tok, oldValue := mustToken(t, db, a.ID, nil)

		rolled, newValue, err := db.RollToken(ctx, tok.ID, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if newValue == oldValue || rolled.Prefix != policy.DisplayPrefix(newValue) {
			t.Errorf("roll gave value %q prefix %q", newValue, rolled.Prefix)
		}
		if want := clock.Add(time.Hour); rolled.PreviousExpiresAt == nil || !rolled.PreviousExpiresAt.Equal(want) {
			t.Errorf("previous value expires %v, want %v", rolled.PreviousExpiresAt, want)
		}
		old, _, err := db.TokenByHash(ctx, policy.HashValue(oldValue))
		if err != nil || old.KeyExpiresAt == nil {
			t.Fatalf("old value during its grace: %+v, %v; want found, expiring", old, err)
		}
		cur, _, err := db.TokenByHash(ctx, policy.HashValue(newValue))
		if err != nil || cur.KeyExpiresAt != nil {
			t.Fatalf("new value: %+v, %v; want found, not expiring", cur, err)
		}
		clock = clock.Add(time.Hour + time.Second)
		if _, _, err := db.TokenByHash(ctx, policy.HashValue(oldValue)); !errors.Is(err, policy.ErrNotFound) {
			t.Errorf("old value after its grace: got %v, want not found", err)
		}

		// A roll without grace ends every older value at once.
		_, third, err := db.RollToken(ctx, tok.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := db.TokenByHash(ctx, policy.HashValue(newValue)); !errors.Is(err, policy.ErrNotFound) {
			t.Errorf("value rolled without grace: got %v, want not found", err)
		}
		if _, _, err := db.TokenByHash(ctx, policy.HashValue(third)); err != nil {
			t.Errorf("newest value: %v", err)
		}
		if _, _, err := db.RollToken(ctx, tok.ID, -time.Second); policy.ErrorCode(err) != policy.EInvalid {
			t.Errorf("negative grace: got %v, want invalid", err)
		}
		if _, _, err := db.RollToken(ctx, "tok_missing", 0); !errors.Is(err, policy.ErrNotFound) {
			t.Errorf("roll a missing token: got %v, want not found", err)
		}
	})
}

// Reservations made at once never take a subject past its limit, on
// either backend, and returning credits brings the total back down.
func TestReserveNeverPassesTheLimit(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		period := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
		const limit, block = 50, 4
		var mu sync.Mutex
		var granted int64
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				g, total, err := db.Reserve(ctx, "tok_limited", period, func(reserved int64) int64 { return min(block, limit-reserved) })
				if err != nil {
					t.Error(err)
					return
				}
				if total > limit {
					t.Errorf("total %d after a reservation, over the limit %d", total, limit)
				}
				mu.Lock()
				granted += g
				mu.Unlock()
			})
		}
		wg.Wait()
		if granted != limit {
			t.Errorf("granted %d in all, want the limit %d", granted, limit)
		}
		total, err := db.AddCredits(ctx, "tok_limited", period, -10)
		if err != nil {
			t.Fatal(err)
		}
		if total != limit-10 {
			t.Errorf("total %d after returning 10, want %d", total, limit-10)
		}
	})
}
