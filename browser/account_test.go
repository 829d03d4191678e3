package browser_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/tollgate/tollgate/internal/manage"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/server"
)

// TestConsoleAccount (issue 18 items 3 and 9), at a laptop's size and a
// phone's: a publishable token is copied again (and one made before values
// were kept says why it cannot be); an admin changes a teammate's role and
// cannot demote the last admin; the audit log shows both; a user changes
// their password, which signs their other session out; signing out leaves
// nothing of the user in the page.
func TestConsoleAccount(t *testing.T) {
	for _, size := range []struct {
		name          string
		width, height int64
		phone         bool
	}{{"desktop", 1280, 800, false}, {"phone", phoneWidth, phoneHeight, true}} {
		t.Run(size.name, func(t *testing.T) {
			testConsoleAccount(t, size.width, size.height, size.phone)
		})
	}
}

func testConsoleAccount(t *testing.T, width, height int64, phone bool) {
	b := MustStartBrowser(t)
	tg := MustStartTollgate(t, func(c *server.Config) { c.Signing.EncryptionKey = make([]byte, 32) })
	seed(t, tg)
	const teammate, teammatePassword = "grace@acme.test", "teammate password 1"
	hash, err := manage.HashPassword(teammatePassword)
	if err != nil {
		t.Fatal(err)
	}
	grace := &policy.User{AccountID: tg.account.ID, Email: teammate, Role: policy.RoleMember, PasswordHash: hash}
	if err := tg.db.CreateUser(context.Background(), grace); err != nil {
		t.Fatal(err)
	}
	if phone {
		b.Do(t, "emulate a phone", chromedp.EmulateViewport(width, height, chromedp.EmulateMobile, chromedp.EmulateScale(2)))
	}
	fits := func(page string) {
		t.Helper()
		if got := Eval[int](t, b, `document.documentElement.scrollWidth`); got > int(width) {
			t.Errorf("%s: the page is %dpx wide, want at most the screen's %dpx", page, got, width)
		}
	}
	for _, name := range []string{"clipboard-write", "clipboard-read"} {
		_, err := chromedp.CallBrowser(b.ctx, cdpbrowser.SetPermission, cdpbrowser.SetPermissionParams{
			Permission: &cdpbrowser.PermissionDescriptor{Name: name}, Setting: cdpbrowser.PermissionSettingGranted, Origin: tg.url})
		if err != nil {
			t.Fatalf("grant %s: %v", name, err)
		}
	}
	// Another session of the same user, in another browser: a password
	// change must end it.
	other := httpSignIn(t, tg.url, tg.email, tg.password)

	b.Do(t, "sign in",
		chromedp.Navigate(tg.url+"/console/"), chromedp.WaitVisible(css("#signin-email")),
		chromedp.SendKeys(css("#signin-email"), tg.email),
		chromedp.SendKeys(css("#signin-password"), tg.password),
		chromedp.Click(css("#signin-submit")),
		chromedp.WaitVisible(css("#tokens-title")),
		Poll(`document.querySelectorAll('#tokens-body tr').length === 3`))

	// Copy again: the seeded tokens were made without a kept value and say
	// so; the secret token offers neither.
	if got := Eval[int](t, b, `document.querySelectorAll('#tokens-body .not-kept').length`); got != 2 {
		t.Errorf("tokens saying their value was not kept: got %d, want 2 (the seeded publishable ones)", got)
	}
	if got := Eval[int](t, b, `document.querySelectorAll('#tokens-body .copy-again').length`); got != 0 {
		t.Errorf("Copy buttons before a kept value exists: got %d, want 0", got)
	}
	b.Do(t, "create a token", chromedp.Click(css("#quick-token")), chromedp.WaitVisible(css("#confirm-dialog")),
		chromedp.Click(css("#confirm-ok")), chromedp.WaitVisible(css("#new-token-value")),
		Poll(`document.querySelectorAll('#tokens-body .copy-again').length === 1`))
	value := Eval[string](t, b, `document.getElementById('new-token-value').value`)
	if got := Eval[string](t, b, `document.querySelector('#reveal-slot .warning').textContent`); !strings.Contains(got, "copy this value again from the list") {
		t.Errorf("the new value's note says %q, want that it can be copied again", got)
	}
	b.Do(t, "dismiss the new value and copy it again",
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#reveal-slot .dismiss').click()`),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#tokens-body .copy-again').scrollIntoView({block: 'center'})`),
		chromedp.Evaluate[chromedp.Void](`navigator.clipboard.writeText('')`),
		chromedp.Click(css("#tokens-body .copy-again")),
		Poll(`document.querySelector('#tokens-body .copy-again + .copy-status').textContent === 'Copied'`))
	if got := Run(t, b, "read the clipboard", chromedp.Evaluate[string](`navigator.clipboard.readText()`, chromedp.EvalAwaitPromise)); got != value || !strings.HasPrefix(value, "pk_") {
		t.Errorf("copied again: got %q, want the value shown at creation %q", got, value)
	}
	fits("tokens page with Copy buttons")
	if got := Eval[int](t, b, `(el => el.scrollWidth - el.clientWidth)(document.querySelector('#page-tokens .table-wrap'))`); got > 0 {
		t.Errorf("with Copy buttons, the token list scrolls sideways by %dpx", got)
	}
	copyShot := "console-copy.png"
	if phone {
		copyShot = "console-phone-copy.png"
	}
	saveScreenshot(t, copyShot, Run(t, b, "take a screenshot of the Copy button", chromedp.CaptureScreenshot()))

	// Roles: make the teammate an admin, back to a member, then try to
	// demote yourself, the last admin.
	b.Do(t, "open Teammates", chromedp.Click(css("#nav-teammates")),
		Poll(`document.querySelectorAll('#users-body select.role-select').length === 2`))
	graceRole := fmt.Sprintf(`#users-body tr[data-id=%q] select.role-select`, grace.ID)
	meRole := fmt.Sprintf(`#users-body tr[data-id=%q] select.role-select`, tg.user.ID)
	b.Do(t, "make the teammate an admin", chromedp.SetValue(css(graceRole), "admin"))
	waitRole(t, tg, grace.ID, policy.RoleAdmin)
	b.Do(t, "make the teammate a member again", Poll(fmt.Sprintf(`!document.querySelector(%q).disabled`, graceRole)),
		chromedp.SetValue(css(graceRole), "member"))
	waitRole(t, tg, grace.ID, policy.RoleMember)
	b.Do(t, "demote yourself, the last admin", Poll(fmt.Sprintf(`!document.querySelector(%q).disabled`, graceRole)),
		chromedp.SetValue(css(meRole), "member"),
		Poll(fmt.Sprintf(`!document.querySelector(%q).disabled`, meRole)))
	if got := Eval[string](t, b, `document.getElementById('users-error').textContent`); !strings.Contains(got, "only admin") {
		t.Errorf("demoting yourself, the last admin: the page says %q, want the account's only admin", got)
	}
	if got := Eval[string](t, b, fmt.Sprintf(`document.querySelector(%q).value`, meRole)); got != "admin" {
		t.Errorf("after the refusal your role shows %q, want admin", got)
	}
	fits("teammates page with role controls")

	// The audit log: both changes and the copy are there.
	b.Do(t, "open the audit log", chromedp.Click(css("#open-audit")), chromedp.WaitVisible(css("#audit-dialog")),
		Poll(`document.querySelectorAll('#audit-body tr').length > 3`))
	text := Eval[string](t, b, `document.getElementById('audit-body').innerText`)
	for _, want := range []string{"copied a token’s value", "changed a teammate’s role: admin", "changed a teammate’s role: member", teammate, tg.email} {
		if !strings.Contains(text, want) {
			t.Errorf("the audit log lacks %q:\n%s", want, text)
		}
	}
	fits("audit log")
	shot := "console-audit.png"
	if phone {
		shot = "console-phone-audit.png"
	}
	saveScreenshot(t, shot, Run(t, b, "take a screenshot of the audit log", chromedp.CaptureScreenshot()))
	b.Do(t, "close the audit log", chromedp.Click(css("#audit-close")), chromedp.WaitNotVisible(css("#audit-dialog")))

	// Change password: a wrong current one is refused at its field; the
	// right one ends the other session, not this one.
	const next = "a new password for ada"
	b.Do(t, "open your account", chromedp.Click(css("#open-account")), chromedp.WaitVisible(css("#account-dialog")),
		chromedp.SendKeys(css("#pw-current"), "not my password"),
		chromedp.SendKeys(css("#pw-new"), next),
		chromedp.SendKeys(css("#pw-confirm"), next),
		chromedp.Click(css("#password-submit")),
		Poll(`document.getElementById('pw-current-error').textContent !== ''`))
	if !Eval[bool](t, b, focusIn("pw-current")) {
		t.Error("after a wrong current password, focus is not on it")
	}
	fits("account dialog")
	if phone {
		saveScreenshot(t, "console-phone-account.png", Run(t, b, "take a screenshot of the account dialog", chromedp.CaptureScreenshot()))
	}
	b.Do(t, "change the password",
		clearField("#pw-current"),
		chromedp.SendKeys(css("#pw-current"), tg.password),
		chromedp.Click(css("#password-submit")),
		chromedp.WaitNotVisible(css("#account-dialog")))
	if got := other.status(t, tg.url+"/v1/session"); got != http.StatusUnauthorized {
		t.Errorf("the other session after the change: status %d, want 401", got)
	}
	b.Do(t, "this session still works", chromedp.Click(css("#nav-tokens")),
		Poll(`document.querySelectorAll('#tokens-body tr').length === 4`))

	// Sign out: the sign-in page, and nothing of the user left anywhere in
	// the page, shown or hidden.
	b.Do(t, "sign out", chromedp.Click(css("#sign-out")), chromedp.WaitVisible(css("#signin-email")))
	left := Eval[[]string](t, b, fmt.Sprintf(`(() => {
		const needles = [%q, %q, %q, 'Store locator', 'Mobile app', 'tok_', 'pk_', 'usr_'];
		const texts = [document.documentElement.outerHTML, document.body.innerText, location.href,
			...[...document.querySelectorAll('input, textarea, select')].map((el) => el.value)];
		return needles.filter((n) => texts.some((s) => s.includes(n)));
	})()`, tg.email, teammate, value))
	if len(left) > 0 {
		t.Errorf("after signing out, the page still holds %v", left)
	}
	b.Do(t, "sign in with the new password",
		chromedp.SendKeys(css("#signin-email"), tg.email),
		chromedp.SendKeys(css("#signin-password"), next),
		chromedp.Click(css("#signin-submit")),
		chromedp.WaitVisible(css("#tokens-title")),
		chromedp.WaitVisible(css("#open-audit")))

	// Step down once another admin exists: the admins' controls go.
	b.Do(t, "make the teammate an admin and step down", chromedp.Click(css("#nav-teammates")),
		Poll(`document.querySelectorAll('#users-body select.role-select').length === 2`),
		chromedp.SetValue(css(graceRole), "admin"),
		Poll(fmt.Sprintf(`!document.querySelector(%q).disabled`, graceRole)),
		chromedp.SetValue(css(meRole), "member"),
		Poll(`document.querySelectorAll('#users-body select.role-select').length === 0`),
		chromedp.WaitNotVisible(css("#open-audit")))
	waitRole(t, tg, tg.user.ID, policy.RoleMember)

	for _, e := range b.Errors() {
		t.Errorf("page error: %s", e)
	}
}

// waitRole polls the store until the user has the role.
func waitRole(t *testing.T, tg *tollgate, id string, want policy.Role) {
	t.Helper()
	for range 100 {
		u, err := tg.db.User(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if u.Role == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("user %s never became %s", id, want)
}

// outsideSession is a console session held outside the browser.
type outsideSession struct{ c *http.Client }

func httpSignIn(t *testing.T, base, email, password string) outsideSession {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	res, err := c.Post(base+"/v1/session", "application/json",
		strings.NewReader(fmt.Sprintf(`{"email":%q,"password":%q}`, email, password)))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("sign in as %s: status %d", email, res.StatusCode)
	}
	return outsideSession{c}
}

func (s outsideSession) status(t *testing.T, url string) int {
	t.Helper()
	res, err := s.c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}
