package store_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// TestNotifyReachesAnotherConnection checks the trigger: every policy
// change, whether made through the store or with plain SQL, is announced on
// the channel to any other session, and bookkeeping writes are not.
func TestNotifyReachesAnotherConnection(t *testing.T) {
	db, url := storetest.MustOpen(t, store.Postgres)
	ctx := context.Background()
	a, _, _ := mustAccount(t, db)
	tok, value := mustToken(t, db, a.ID, nil)
	hashChange := "h:" + policy.HashValue(value).String()

	l := pq.NewListener(url, 10*time.Millisecond, time.Second, nil)
	defer l.Close()
	if err := l.Listen(store.NotifyChannel); err != nil {
		t.Fatalf("listen: %v", err)
	}
	raw, err := sql.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()

	expect := func(what, want string) {
		t.Helper()
		deadline := time.After(2 * time.Second)
		for {
			select {
			case n := <-l.Notify:
				if n == nil {
					continue
				}
				c, err := store.ParseNotification(n.Extra)
				if err != nil {
					t.Errorf("%s: notification %q: %v", what, n.Extra, err)
					continue
				}
				if c.Seq < 1 {
					t.Errorf("%s: notification %q carries no sequence number", what, n.Extra)
				}
				if changeText(c) == want {
					return
				}
			case <-deadline:
				t.Errorf("%s: no notification %q within 2s", what, want)
				return
			}
		}
	}
	expectNone := func(what string) {
		t.Helper()
		select {
		case n := <-l.Notify:
			t.Errorf("%s: unexpected notification %+v", what, n)
		case <-time.After(300 * time.Millisecond):
		}
	}

	if _, err := db.UpdateToken(ctx, tok.ID, func(t *policy.Token) error { t.Domains = []string{"example.com"}; return nil }); err != nil {
		t.Fatal(err)
	}
	expect("update through the store", hashChange)

	if _, err := raw.Exec(`UPDATE tokens SET enabled = false WHERE id = $1`, tok.ID); err != nil {
		t.Fatal(err)
	}
	expect("plain SQL update", hashChange)

	if _, err := raw.Exec(`UPDATE tokens SET last_used_at = now() WHERE id = $1`, tok.ID); err != nil {
		t.Fatal(err)
	}
	expectNone("last_used_at touch")

	if _, err := raw.Exec(`UPDATE tokens SET last_used_at = now() + interval '1 second', enabled = true WHERE id = $1`, tok.ID); err != nil {
		t.Fatal(err)
	}
	expect("plain SQL update that also moves last_used_at", hashChange)

	if err := db.RecordUsage(ctx, []policy.DailyUsage{{TokenID: tok.ID, AccountID: a.ID, Day: time.Now().UTC().Format(time.DateOnly),
		Requests: 1, Credits: 1, LastUsed: time.Now().Add(time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	expectNone("usage writer")

	if _, err := raw.Exec(`UPDATE accounts SET premium = true WHERE id = $1`, a.ID); err != nil {
		t.Fatal(err)
	}
	expect("plain SQL account update", "a:"+a.ID)

	if _, err := raw.Exec(`DELETE FROM tokens WHERE id = $1`, tok.ID); err != nil {
		t.Fatal(err)
	}
	expect("plain SQL delete", hashChange)
}

// changeText formats a change as the log stores it.
func changeText(c store.Change) string {
	if c.AccountID != "" {
		return "a:" + c.AccountID
	}
	return "h:" + c.Hash.String()
}
