package browser_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/tollgate/tollgate/internal/policy"
)

// session is a signed-in console at one screen size, on its own server.
type session struct {
	b     *browser
	tg    *tollgate
	phone bool
}

// eachSize runs f at a desktop's size and at a phone's (390×844), each on
// a fresh server with the seeded tokens and a browser signed in to the
// token list; it fails on any page error.
func eachSize(t *testing.T, f func(t *testing.T, s *session)) {
	for _, size := range []struct {
		name  string
		phone bool
	}{{"desktop", false}, {"phone", true}} {
		t.Run(size.name, func(t *testing.T) {
			s := &session{b: MustStartBrowser(t), tg: MustStartTollgate(t), phone: size.phone}
			seed(t, s.tg)
			if size.phone {
				s.b.Do(t, "emulate a phone", chromedp.EmulateViewport(phoneWidth, phoneHeight, chromedp.EmulateMobile, chromedp.EmulateScale(2)))
			}
			f(t, s)
			for _, e := range s.b.Errors() {
				t.Errorf("page error: %s", e)
			}
		})
	}
}

// fits fails, on a phone, when the page or the form is wider than the screen.
func (s *session) fits(t *testing.T, what string) {
	t.Helper()
	if !s.phone {
		return
	}
	mustFitWidth(t, s.b, what)
	if got := Eval[int](t, s.b, `document.getElementById('edit-dialog').scrollWidth - document.getElementById('edit-dialog').clientWidth`); got > 0 {
		t.Errorf("%s: the form is %dpx wider than the screen", what, got)
	}
}

// openEditor opens the edit form of the seeded "Store locator (web)" token.
func (s *session) openEditor(t *testing.T) {
	t.Helper()
	s.b.Do(t, "open the edit form", click(`#tokens-body tr:nth-child(2) button.edit`), chromedp.WaitVisible(css("#edit-dialog")))
}

// TestConsoleCreate creates a restricted token from the create form in
// one step (one POST, one audit entry, restricted from its first request),
// and keeps the quick "Add publishable token".
func TestConsoleCreate(t *testing.T) {
	eachSize(t, func(t *testing.T, s *session) {
		b, tg, ctx := s.b, s.tg, context.Background()
		signIn(t, b, tg)
		b.Do(t, "open the create form", click("#create-token"), chromedp.WaitVisible(css("#edit-dialog")))
		if got := text(t, b, "#edit-title"); got != "Create a token" {
			t.Fatalf("the create form's title is %q", got)
		}
		if got := Eval[string](t, b, `document.activeElement.id`); got != "f-nickname" {
			t.Errorf("the create form starts with focus on %q, want the nickname", got)
		}
		if got := Eval[[]string](t, b, unlabelled); len(got) > 0 {
			t.Errorf("create form: controls without a label: %v", got)
		}
		b.Do(t, "fill in the form",
			chromedp.SendKeys(css("#f-nickname"), "Checkout widget"),
			chromedp.SendKeys(css("#f-domains"), "example.com"),
			click("#add-dataset"),
			chromedp.SendKeys(css(`#datasets-rows .ds-row:last-child input[type="text"]`), "sales.*"),
			click(`#datasets-rows .ds-row:last-child input[data-action="read"]`),
			click("#f-api-data"),
			chromedp.SendKeys(css("#f-credit-limit"), "5000"))
		s.fits(t, "create form")
		b.Do(t, "scroll the form to its top", chromedp.Evaluate[chromedp.Void](`document.getElementById('edit-dialog').scrollTop = 0`))
		name := map[bool]string{false: "console-create.png", true: "console-phone-create.png"}[s.phone]
		saveScreenshot(t, name, Run(t, b, "screenshot the create form", chromedp.CaptureScreenshot()))
		b.Do(t, "create", click("#edit-done"), chromedp.WaitVisible(css("#new-token-value")), chromedp.WaitNotVisible(css("#edit-dialog")))
		value := Run(t, b, "read the new value", chromedp.Value(css("#new-token-value")))
		id := Eval[string](t, b, `document.querySelector('#tokens-body tr:last-child').dataset.id`)
		tok, err := tg.db.Token(ctx, id)
		if err != nil {
			t.Fatalf("the created token: %v", err)
		}
		if tok.Nickname != "Checkout widget" || !slicesEqual(tok.Domains, "example.com") || !slicesEqual(tok.APIs, "data") ||
			tok.CreditLimit == nil || *tok.CreditLimit != 5000 || tok.Datasets["sales.*"] != policy.Actions(policy.Read) {
			t.Errorf("the token was created as %+v, want the form's settings", tok)
		}
		audit, err := tg.db.ListAudit(ctx, tg.account.ID, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		var actions []string
		for _, e := range audit {
			if e.Target == id {
				actions = append(actions, e.Action)
			}
		}
		if len(actions) != 1 || actions[0] != "token.create" {
			t.Errorf("the token's audit trail is %v, want one token.create (made with its settings in one step)", actions)
		}
		tg.waitChecks(t, "the new token", time.Now(), 5*time.Second, map[[2]string]string{
			{value, allowedReferer}: "allow",
			{value, evilReferer}:    string(policy.CodeRefererDenied),
		})
		// The example request names the token's dataset.
		if got := text(t, b, "#example-curl"); !strings.Contains(got, "/v1/data/sales.") && !strings.Contains(got, value) {
			t.Errorf("the curl example is %q", got)
		}
		s.fits(t, "tokens page with the new token")

		// The quick way stays: a publishable token with the defaults.
		b.Do(t, "add a publishable token", click("#quick-token"), chromedp.WaitVisible(css("#confirm-dialog")),
			click("#confirm-ok"), Poll(`document.querySelectorAll('#tokens-body tr').length === 5`))
	})
}

// TestConsoleErrors makes each kind of mistake in the edit form and checks
// that the message is a sentence about the input, shown at the control at
// fault, which alone is outlined and has focus; nothing is saved.
func TestConsoleErrors(t *testing.T) {
	eachSize(t, func(t *testing.T, s *session) {
		b, tg := s.b, s.tg
		signIn(t, b, tg)
		s.openEditor(t)
		id := Eval[string](t, b, `document.querySelector('#tokens-body tr:nth-child(2)').dataset.id`)
		before, err := tg.db.Token(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		mistake := func(what, wantFocus, wantField string, fix chromedp.Action[chromedp.Void]) {
			t.Helper()
			b.Do(t, "press Done with "+what, click("#edit-done"), chromedp.WaitVisible(css("#e-"+wantField)))
			if got := Eval[string](t, b, `document.activeElement.id`); !regexp.MustCompile(wantFocus).MatchString(got) {
				t.Errorf("%s: focus is on %q, want %s", what, got, wantFocus)
			}
			if !Eval[bool](t, b, `document.activeElement.getAttribute('aria-invalid') === 'true'`) {
				t.Errorf("%s: the control with focus is not marked invalid", what)
			}
			if n := Eval[int](t, b, `document.querySelectorAll('#edit-form [aria-invalid="true"]').length`); n != 1 {
				t.Errorf("%s: %d controls are outlined, want the one at fault", what, n)
			}
			mustBeSentence(t, what, text(t, b, "#e-"+wantField))
			s.fits(t, what)
			b.Do(t, "fix "+what, fix)
		}
		b.Do(t, "tick import and sql", click("#f-api-import"), click("#f-api-sql"))
		mistake("import and sql", "^f-api-import$", "allowed_apis", click("#f-api-import"))
		b.Do(t, "add a grant without its table",
			click("#add-grant"),
			chromedp.SendKeys(css("#grants-rows .grant-row:last-child input.connection"), "warehouse"))
		mistake("a table grant without a table", "^grant-source-", "grants",
			chromedp.SendKeys(css("#grants-rows .grant-row:last-child input.source"), "orders_*"))
		b.Do(t, "a credit limit too large", chromedp.SendKeys(css("#f-credit-limit"), "100000000000000000000000"))
		mistake("a credit limit too large", "^f-credit-limit$", "credit_limit", clearField("#f-credit-limit"))
		b.Do(t, "a bad IP range", chromedp.SendKeys(css("#f-ips"), "10.0.0.300/8"))
		mistake("a bad IP range", "^f-ips$", "allowed_ips", clearField("#f-ips"))
		b.Do(t, "a bad domain", chromedp.SendKeys(css("#f-domains"), "ftp://example.com"))
		mistake("a bad domain", "^f-domains$", "allowed_domains", clearField("#f-domains"))
		b.Do(t, "a bad dataset name", click("#add-dataset"),
			chromedp.SendKeys(css(`#datasets-rows .ds-row:last-child input[type="text"]`), "sales q1"),
			click(`#datasets-rows .ds-row:last-child input[data-action="read"]`))
		mistake("a bad dataset name", "^ds-name-", "datasets", click(`#datasets-rows .ds-row:last-child button.remove`))
		b.Do(t, "a burst without a rate", chromedp.SendKeys(css("#f-burst"), "5"), clearField("#f-rps"))
		mistake("a burst without a rate", "^f-rps$", "rate_limit", chromedp.SendKeys(css("#f-rps"), "5"))
		if after, _ := tg.db.Token(context.Background(), id); !after.UpdatedAt.Equal(before.UpdatedAt) {
			t.Errorf("a refused edit was saved: %+v", after)
		}
		b.Do(t, "save the corrected form", click("#edit-done"), chromedp.WaitNotVisible(css("#edit-dialog")))
	})
}

// TestConsoleWarnings checks that settings that cannot work say so before
// saving: premium data on an account without the subscription, and signed
// requests on a server without an encryption key.
func TestConsoleWarnings(t *testing.T) {
	eachSize(t, func(t *testing.T, s *session) {
		b, tg := s.b, s.tg
		if _, err := tg.db.UpdateAccount(context.Background(), tg.account.ID, func(a *policy.Account) error { a.Premium = false; return nil }); err != nil {
			t.Fatalf("update account: %v", err)
		}
		signIn(t, b, tg)
		s.openEditor(t)
		if !Eval[bool](t, b, `document.getElementById('f-signed').disabled`) || !visible(t, b, "#w-signed") {
			t.Error("a server without an encryption key offers Require signed requests without saying it cannot work")
		}
		if visible(t, b, "#w-premium") {
			t.Error("the premium warning shows before premium is ticked")
		}
		b.Do(t, "tick premium", click("#f-premium"))
		if got := text(t, b, "#w-premium"); !visible(t, b, "#w-premium") || !strings.Contains(got, "plan") {
			t.Errorf("ticking premium on an account without it says %q", got)
		}
		s.fits(t, "edit form with warnings")
	})
}

// TestConsoleLabels checks that the form says what each API is, what the
// grant kinds mean, and the credit limit's period, read from the server.
func TestConsoleLabels(t *testing.T) {
	eachSize(t, func(t *testing.T, s *session) {
		b, tg := s.b, s.tg
		signIn(t, b, tg)
		s.openEditor(t)
		for _, api := range []string{"data", "maps", "sql", "lds", "import"} {
			desc := Eval[string](t, b, fmt.Sprintf(`(b => { const id = b && b.getAttribute('aria-describedby'); const d = id && document.getElementById(id.split(' ')[0]); return d ? d.textContent.trim() : ''; })(document.getElementById('f-api-%s'))`, api))
			if len(desc) < 20 {
				t.Errorf("the %s API has no description (%q)", api, desc)
			}
		}
		if got := text(t, b, "#grants-group"); !strings.Contains(got, "every table") || !strings.Contains(got, "saved SQL query") {
			t.Errorf("the grants section does not say what table, query and all mean: %q", got)
		}
		if got := text(t, b, `label[for="f-credit-limit"]`); !strings.Contains(got, "per calendar month") {
			t.Errorf("the credit limit's label is %q, want it to say per calendar month", got)
		}
		if got := text(t, b, "#credits-col"); got != "Credits this month" && !s.phone {
			t.Errorf("the credits column is headed %q, want Credits this month", got)
		}
		if got := Eval[[]string](t, b, unlabelled); len(got) > 0 {
			t.Errorf("edit form: controls without a label: %v", got)
		}
		s.fits(t, "edit form with its labels")
	})
}

// TestConsoleNothingLost checks that unsaved edits are not dropped by
// Escape, Cancel or an ended session without asking, that the list catches
// up with traffic, and that the usage chart has an axis with dates.
func TestConsoleNothingLost(t *testing.T) {
	eachSize(t, func(t *testing.T, s *session) {
		b, tg, ctx := s.b, s.tg, context.Background()
		open := policy.NewToken(tg.account.ID, policy.Publishable)
		open.Nickname = "Open data"
		open.UserID = tg.user.ID
		open.Datasets = map[string]policy.Actions{"sales.*": policy.Actions(policy.Read)}
		value, err := tg.db.CreateToken(ctx, open)
		if err != nil {
			t.Fatal(err)
		}
		signIn(t, b, tg)
		row := `#tokens-body tr[data-id="` + open.ID + `"]`

		// The list catches up with traffic: credits used and last used.
		b.Do(t, "the new row", chromedp.WaitVisible(css(row)))
		if got := text(t, b, row+` td[data-label="Last used"]`); got != "never" {
			t.Fatalf("before any traffic, last used reads %q", got)
		}
		for range 3 {
			if got := tg.Check(t, value, allowedReferer); got != "allow" {
				t.Fatalf("Check with the token: got %s, want allow", got)
			}
		}
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if tok, err := tg.db.Token(ctx, open.ID); err == nil && tok.LastUsedAt != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the store never recorded the token's use")
			}
		}
		b.Do(t, "come back to the page", chromedp.Evaluate[chromedp.Void](`window.dispatchEvent(new Event('focus'))`))
		b.Do(t, "wait for the list to catch up", Poll(fmt.Sprintf(
			`(r => r && !/never/.test(r.querySelector('td[data-label="Last used"]').textContent) && !/^0\s/.test(r.querySelector('td.credits').textContent))(document.querySelector(%q))`, row)))

		// The usage chart has an axis and dates; a token made today shows
		// a week, not one bar across the chart.
		b.Do(t, "open the editor", click(row+" button.edit"), chromedp.WaitVisible(css("#edit-usage svg")))
		ticks := Eval[[]string](t, b, `[...document.querySelectorAll('#edit-usage svg text')].map((e) => e.textContent)`)
		today := time.Now().UTC()
		wantDay := today.Format("Jan") + " " + fmt.Sprint(today.Day())
		if len(ticks) < 4 || !strings.Contains(strings.Join(ticks, "|"), wantDay) {
			t.Errorf("the usage chart's axis labels are %q, want credit values and dates ending with %s", ticks, wantDay)
		}
		if n := Eval[int](t, b, `document.querySelectorAll('#edit-usage svg rect').length`); n != 7 {
			t.Errorf("a token made today charts %d days, want a week", n)
		}
		s.fits(t, "edit form with its chart")

		// Escape and Cancel ask before dropping changes.
		b.Do(t, "change the nickname", chromedp.SendKeys(css("#f-nickname"), " v2"))
		b.Do(t, "press Escape", chromedp.KeyEvent(kb.Escape), chromedp.WaitVisible(css("#confirm-dialog")))
		if !visible(t, b, "#edit-dialog") {
			t.Error("Escape closed the form with unsaved changes")
		}
		b.Do(t, "keep editing", click("#confirm-cancel"), chromedp.WaitNotVisible(css("#confirm-dialog")))
		if got := Run(t, b, "read the nickname", chromedp.Value(css("#f-nickname"))); got != "Open data v2" {
			t.Errorf("after Keep editing the nickname is %q", got)
		}
		b.Do(t, "press Cancel", click("#edit-cancel"), chromedp.WaitVisible(css("#confirm-dialog")))
		b.Do(t, "discard", click("#confirm-ok"), chromedp.WaitNotVisible(css("#edit-dialog")))
		if tok, _ := tg.db.Token(ctx, open.ID); tok.Nickname != "Open data" {
			t.Errorf("discarding saved the nickname %q", tok.Nickname)
		}
		b.Do(t, "an unchanged form closes without asking", click(row+" button.edit"), chromedp.WaitVisible(css("#edit-dialog")),
			click("#edit-cancel"), chromedp.WaitNotVisible(css("#edit-dialog")))

		// An edit in progress survives the session's end.
		b.Do(t, "open the editor again", click(row+" button.edit"), chromedp.WaitVisible(css("#edit-dialog")),
			clearField("#f-nickname"), chromedp.SendKeys(css("#f-nickname"), "Kept across sign-in"))
		cookies, err := chromedp.Call(b.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{tg.url + "/"}})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cookies.Cookies {
			if c.Name == "tollgate_session" {
				if err := tg.db.DeleteSession(ctx, c.Value); err != nil {
					t.Fatal(err)
				}
			}
		}
		b.Do(t, "press Done after the session ended", click("#edit-done"), chromedp.WaitVisible(css("#signin-email")))
		if got := text(t, b, "#signin-error"); !strings.Contains(got, "unsaved changes") {
			t.Errorf("the sign-in page says %q, want it to say the unsaved changes will be waiting", got)
		}
		signInAgain(t, b, tg)
		b.Do(t, "the form comes back", chromedp.WaitVisible(css("#edit-dialog")), chromedp.WaitVisible(css("#edit-restored")))
		if got := Run(t, b, "read the nickname", chromedp.Value(css("#f-nickname"))); got != "Kept across sign-in" {
			t.Errorf("after signing in again the nickname field is %q", got)
		}
		b.Do(t, "save", click("#edit-done"), chromedp.WaitNotVisible(css("#edit-dialog")))
		if tok, _ := tg.db.Token(ctx, open.ID); tok.Nickname != "Kept across sign-in" {
			t.Errorf("the kept edit saved nickname %q", tok.Nickname)
		}
		if !s.phone {
			b.Do(t, "open the editor for the screenshot", click(`#tokens-body tr:nth-child(2) button.edit`), chromedp.WaitVisible(css("#edit-usage svg")),
				chromedp.Evaluate[chromedp.Void](`document.getElementById('usage-group').scrollIntoView()`))
			saveScreenshot(t, "console-editor.png", Run(t, b, "screenshot the editor's chart", chromedp.CaptureScreenshot()))
		}
	})
}

// signIn signs in from the sign-in page and waits for the token list.
func signIn(t *testing.T, b *browser, tg *tollgate) {
	t.Helper()
	b.Do(t, "open the console", chromedp.Navigate(tg.url+"/console/"), chromedp.WaitVisible(css("#signin-email")))
	b.Do(t, "sign in",
		chromedp.SendKeys(css("#signin-email"), tg.email),
		chromedp.SendKeys(css("#signin-password"), tg.password),
		chromedp.Click(css("#signin-submit")),
		chromedp.WaitVisible(css("#tokens-title")),
		Poll(`document.querySelectorAll('#tokens-body tr').length >= 3`))
}

// signInAgain signs in on the sign-in page the console went back to.
func signInAgain(t *testing.T, b *browser, tg *tollgate) {
	t.Helper()
	b.Do(t, "sign in again",
		clearField("#signin-email"),
		chromedp.SendKeys(css("#signin-email"), tg.email),
		clearField("#signin-password"),
		chromedp.SendKeys(css("#signin-password"), tg.password),
		chromedp.Click(css("#signin-submit")),
		chromedp.WaitVisible(css("#tokens-title")))
}

// click scrolls an element to the middle of the screen (clear of a sticky
// footer) and clicks it as a user would.
func click(selector string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.querySelector(%q).scrollIntoView({block: 'center'})`, selector)),
		chromedp.Click(css(selector)))
}

// text returns an element's text, or "" when there is none.
func text(t *testing.T, b *browser, selector string) string {
	t.Helper()
	return Eval[string](t, b, fmt.Sprintf(`(e => e ? e.textContent.trim() : '')(document.querySelector(%q))`, selector))
}

// visible reports whether an element is on the page and shown.
func visible(t *testing.T, b *browser, selector string) bool {
	t.Helper()
	return Eval[bool](t, b, fmt.Sprintf(`(e => !!e && e.getClientRects().length > 0)(document.querySelector(%q))`, selector))
}

// goSpeak matches what a person should never read: Go's names for its
// types and functions, and encoding/json's prefix.
var goSpeak = regexp.MustCompile(`json:|Go value|netip|ParsePrefix|ParseAddr|int64|want 1-128`)

// mustBeSentence fails unless msg is a sentence about the input: a capital
// or a quoted value first, a full stop last, no Go, no value quoted twice.
func mustBeSentence(t *testing.T, what, msg string) {
	t.Helper()
	if !regexp.MustCompile(`^([A-Z]|["“])`).MatchString(msg) || !strings.HasSuffix(msg, ".") {
		t.Errorf("%s: the message %q is not a sentence", what, msg)
	}
	if m := goSpeak.FindString(msg); m != "" {
		t.Errorf("%s: the message %q speaks Go (%q)", what, msg, m)
	}
	if regexp.MustCompile(`"[^"]*": "`).MatchString(msg) {
		t.Errorf("%s: the message %q quotes the value twice", what, msg)
	}
}

func countTokens(t *testing.T, tg *tollgate) int {
	t.Helper()
	toks, err := tg.db.ListUserTokens(context.Background(), tg.account.ID, "", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	return len(toks)
}

func slicesEqual(got []string, want ...string) bool {
	return strings.Join(got, "\n") == strings.Join(want, "\n")
}
