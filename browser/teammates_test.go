package browser_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/server"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// TestConsoleRemoveLastAdmin: an admin removes the other admin while that
// one demotes them. The race is made to go one way on Postgres: the test
// holds the account's users locked, lets the removal reach the lock (the
// remover is still an admin when the request arrives), demotes the remover
// and lets go. The removal must then be refused — the other is the only
// admin left — and the page must say so and keep the teammate listed.
func TestConsoleRemoveLastAdmin(t *testing.T) {
	b := MustStartBrowser(t)
	dbURL := storetest.URL(t, store.Postgres)
	tg := MustStartTollgate(t, func(c *server.Config) { c.Store.URL, c.Store.Migrate = dbURL, true })
	ctx := context.Background()
	grace := &policy.User{AccountID: tg.account.ID, Email: "grace@acme.test", Role: policy.RoleAdmin, PasswordHash: "x"}
	if err := tg.db.CreateUser(ctx, grace); err != nil {
		t.Fatal(err)
	}

	b.Do(t, "sign in and open Teammates",
		chromedp.Navigate(tg.url+"/console/"), chromedp.WaitVisible(css("#signin-email")),
		chromedp.SendKeys(css("#signin-email"), tg.email),
		chromedp.SendKeys(css("#signin-password"), tg.password),
		chromedp.Click(css("#signin-submit")),
		chromedp.WaitVisible(css("#tokens-title")),
		chromedp.Click(css("#nav-teammates")),
		Poll(`document.querySelectorAll('#users-body button.remove-user').length === 1`))

	pg, err := sql.Open("postgres", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	tx, err := pg.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT id FROM users WHERE account_id = $1 FOR UPDATE`, tg.account.ID); err != nil {
		t.Fatal(err)
	}
	b.Do(t, "remove the other admin",
		chromedp.Click(css("#users-body button.remove-user")),
		chromedp.WaitVisible(css("#confirm-dialog")),
		chromedp.Click(css("#confirm-ok")))
	waitForLockWaiter(t, pg)
	if _, err := tx.ExecContext(ctx, `UPDATE users SET role = 'member' WHERE id = $1`, tg.user.ID); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	b.Do(t, "wait for the answer", Poll(`document.getElementById('users-error').textContent !== ''`))
	got := Eval[string](t, b, `document.getElementById('users-error').textContent`)
	if want := "grace@acme.test was not removed: " + policy.ErrLastAdminRemoval.Message; got != want {
		t.Errorf("the page says %q, want %q", got, want)
	}
	if n := Eval[int](t, b, fmt.Sprintf(`document.querySelectorAll('#users-body tr[data-id=%q]').length`, grace.ID)); n != 1 {
		t.Errorf("the teammate is listed %d times after the refusal, want once", n)
	}
	if u, err := tg.db.User(ctx, grace.ID); err != nil || u.Role != policy.RoleAdmin {
		t.Errorf("the other admin after the race: got %v, %v; want kept, an admin", u, err)
	}
	for _, e := range b.Errors() {
		t.Errorf("page error: %s", e)
	}
}

// waitForLockWaiter waits until a session of the test database waits for
// a row lock: the console's request has read who is asking and reached the
// lock the test holds.
func waitForLockWaiter(t *testing.T, pg *sql.DB) {
	t.Helper()
	for range 400 {
		var n int
		err := pg.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the removal never reached the users' lock")
}
