package browser_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tollgate/tollgate/internal/policy"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "write the screenshots to docs/ (console.png, console-phone.png)")

const (
	allowedReferer = "https://example.com/shop"
	evilReferer    = "https://evil.com/shop"
)

// TestConsole signs in to the console, creates a token, edits its domains
// and dataset permissions, rolls it and deletes it, and checks through a
// real Check that each change takes effect.
func TestConsole(t *testing.T) {
	b := MustStartBrowser(t)
	tg := MustStartTollgate(t)
	seed(t, tg)

	// Sign in: a wrong password is refused beside the form, then the right
	// one opens the API Tokens page with the account's tokens.
	b.Do(t, "open the console", chromedp.Navigate(tg.url+"/console/"), chromedp.WaitVisible(css("#signin-email")))
	if got := Eval[[]string](t, b, unlabelled); len(got) > 0 {
		t.Errorf("sign-in page: controls without a label: %v", got)
	}
	if !Eval[bool](t, b, focusIn("signin-email")) {
		t.Error("sign-in page: the email field does not have focus")
	}
	b.Do(t, "sign in with a wrong password",
		chromedp.SendKeys(css("#signin-email"), tg.email),
		chromedp.SendKeys(css("#signin-password"), "not the password"),
		chromedp.Click(css("#signin-submit")),
		chromedp.WaitVisible(css("#signin-error")))
	if !Eval[bool](t, b, focusIn("signin-password")) {
		t.Error("after a failed sign-in, focus is not on the password")
	}
	b.Do(t, "sign in",
		clearField("#signin-password"),
		chromedp.SendKeys(css("#signin-password"), tg.password),
		chromedp.Click(css("#signin-submit")),
		chromedp.WaitVisible(css("#tokens-title")),
		Poll(`document.querySelectorAll('#tokens-body tr').length === 3`))

	// Add a publishable token, the quick way: a confirmation, then the
	// value, once, with Copy.
	b.Do(t, "ask to add a publishable token", chromedp.Click(css("#quick-token")), chromedp.WaitVisible(css("#confirm-dialog")))
	if !Eval[bool](t, b, focusIn("confirm-dialog")) {
		t.Error("the confirmation dialog did not get focus")
	}
	b.Do(t, "confirm", chromedp.Click(css("#confirm-ok")), chromedp.WaitVisible(css("#new-token-value")))
	value := Run(t, b, "read the new value", chromedp.Value(css("#new-token-value")))
	kind, err := policy.ParseValue(value)
	if err != nil || kind != policy.Publishable {
		t.Fatalf("the page shows %q as the new token (%v), want a publishable token", value, err)
	}
	id := Eval[string](t, b, `document.querySelector('#tokens-body tr:last-child').dataset.id`)
	if got, want := Eval[string](t, b, `document.querySelector('#tokens-body tr:last-child .prefix').textContent`), policy.DisplayPrefix(value)+"…"; got != want {
		t.Errorf("the last row shows prefix %q, want %q (a new token goes at the bottom)", got, want)
	}
	b.Do(t, "copy the value", chromedp.Click(css(".reveal button.copy")),
		Poll(`document.querySelector('.reveal .copy-status').textContent !== ''`))
	if got := Eval[string](t, b, `document.querySelector('.reveal .copy-status').textContent`); got != "Copied" {
		t.Errorf("after Copy the status reads %q, want Copied", got)
	}
	// The example requests carry the real value and the page's origin.
	for _, ex := range []string{"#example-curl", "#example-fetch"} {
		got := Eval[string](t, b, `document.querySelector('`+ex+`').textContent`)
		if !strings.Contains(got, value) || !strings.Contains(got, tg.url+"/v1/") {
			t.Errorf("the %s example is %q, want it to carry %s and %s", ex, got, value, tg.url)
		}
	}
	if got, want := Eval[string](t, b, `document.querySelector('#tokens-body tr:last-child .perms').textContent`),
		"Can use core data, no datasets, every API but import · from anywhere"; got != want {
		t.Errorf("a new token's permissions read %q, want %q", got, want)
	}
	if got := tg.Check(t, value, allowedReferer); got != string(policy.CodeDatasetDenied) {
		t.Fatalf("a new token reading sales.q1: got %s, want %s", got, policy.CodeDatasetDenied)
	}

	// Edit: a field error is shown beside its field, with focus, and
	// nothing is saved; then the domains and the dataset permission land.
	row := `#tokens-body tr[data-id="` + id + `"]`
	b.Do(t, "open the edit form", chromedp.Click(css(row+" button.edit")), chromedp.WaitVisible(css("#edit-dialog")))
	if !Eval[bool](t, b, focusIn("edit-dialog")) {
		t.Error("the edit form did not get focus")
	}
	b.Do(t, "fill the form",
		clearField("#f-nickname"),
		chromedp.SendKeys(css("#f-nickname"), "Checkout widget"),
		chromedp.SendKeys(css("#f-domains"), "example.com"),
		chromedp.Click(css("#add-dataset")),
		chromedp.SendKeys(css(`#datasets-rows .ds-row:last-child input[type="text"]`), "sales.*"),
		chromedp.Click(css(`#datasets-rows .ds-row:last-child input[data-action="read"]`)),
		chromedp.SendKeys(css("#f-ips"), "10.0.0.300/8"))
	if got := Eval[[]string](t, b, unlabelled); len(got) > 0 {
		t.Errorf("edit form: controls without a label: %v", got)
	}
	b.Do(t, "press Done with a bad IP", chromedp.Click(css("#edit-done")), chromedp.WaitVisible(css("#e-allowed_ips")))
	if got := Eval[string](t, b, `document.activeElement.id`); got != "f-ips" {
		t.Errorf("after a field error focus is on %q, want f-ips", got)
	}
	if got := Eval[string](t, b, `document.getElementById('f-ips').getAttribute('aria-invalid')`); got != "true" {
		t.Errorf("the IPs field has aria-invalid %q, want true", got)
	}
	if tok, err := tg.db.Token(context.Background(), id); err != nil || len(tok.Domains) != 0 || tok.Nickname == "Checkout widget" {
		t.Errorf("a refused edit was half-saved: %+v, %v", tok, err)
	}
	b.Do(t, "correct the IPs", clearField("#f-ips"))
	b.Do(t, "press Done", chromedp.Click(css("#edit-done")))
	done := time.Now()
	took := tg.waitChecks(t, "after Done", done, time.Second, map[[2]string]string{
		{value, allowedReferer}: "allow",
		{value, evilReferer}:    string(policy.CodeRefererDenied),
	})
	t.Logf("the edit took effect on Check %v after Done", took.Round(time.Millisecond))
	b.Do(t, "the form closes", chromedp.WaitNotVisible(css("#edit-dialog")))
	if got := Eval[string](t, b, `document.activeElement.dataset.focusKey || document.activeElement.id`); got != "edit:"+id {
		t.Errorf("after Done focus is on %q, want the row's edit button", got)
	}
	if got, want := Eval[string](t, b, `document.querySelector('`+row+` .perms').textContent`),
		"Can use core data, sales.* (read), every API but import · from example.com"; got != want {
		t.Errorf("after the edit the row's permissions read %q, want %q", got, want)
	}
	if got := Eval[string](t, b, `document.querySelector('`+row+` .nickname').textContent`); got != "Checkout widget" {
		t.Errorf("the row's nickname is %q after the edit", got)
	}

	// Roll, now: the old value stops working and the new one is shown.
	b.Do(t, "open Roll", chromedp.Click(css(row+" button.roll")), chromedp.WaitVisible(css("#roll-dialog")))
	if !Eval[bool](t, b, focusIn("roll-dialog")) {
		t.Error("the roll dialog did not get focus")
	}
	b.Do(t, "roll now",
		chromedp.Click(css("#roll-grace-now")),
		chromedp.Click(css("#roll-ok")),
		Poll(`(document.getElementById('new-token-value') || {}).value !== '`+value+`'`))
	rolled := Run(t, b, "read the rolled value", chromedp.Value(css("#new-token-value")))
	tg.waitChecks(t, "after the roll", time.Now(), 2*time.Second, map[[2]string]string{
		{value, allowedReferer}:  string(policy.CodeTokenUnknown),
		{rolled, allowedReferer}: "allow",
	})

	// The screenshot: the page as a customer sees it, charts drawn.
	b.Do(t, "settle the page for the screenshot",
		chromedp.Click(css(".reveal .dismiss")),
		chromedp.WaitNotPresent(css(".reveal")),
		Poll(`document.querySelectorAll('#tokens-body svg.chart').length === document.querySelectorAll('#tokens-body tr').length`),
		chromedp.Evaluate[chromedp.Void](`document.activeElement.blur()`))
	saveScreenshot(t, "console.png", Run(t, b, "take a screenshot", chromedp.FullScreenshot(100)))

	// Delete, after a confirmation that starts on Cancel.
	b.Do(t, "ask to delete", chromedp.Click(css(row+" button.delete")), chromedp.WaitVisible(css("#confirm-dialog")))
	if got := Eval[string](t, b, `document.activeElement.id`); got != "confirm-cancel" {
		t.Errorf("the delete confirmation starts with focus on %q, want confirm-cancel", got)
	}
	b.Do(t, "delete", chromedp.Click(css("#confirm-ok")), chromedp.WaitNotPresent(css(row)))
	tg.waitChecks(t, "after the delete", time.Now(), 2*time.Second, map[[2]string]string{
		{rolled, allowedReferer}: string(policy.CodeTokenUnknown),
	})

	// Teammates: invite one (the first password is shown once), remove them.
	b.Do(t, "open Teammates",
		chromedp.Click(css("#nav-teammates")),
		chromedp.WaitVisible(css("#invite-form")),
		Poll(`document.querySelectorAll('#users-body tr').length === 1`))
	if got := Eval[[]string](t, b, unlabelled); len(got) > 0 {
		t.Errorf("teammates page: controls without a label: %v", got)
	}
	b.Do(t, "invite a teammate",
		chromedp.SendKeys(css("#invite-email"), "grace@acme.test"),
		chromedp.Click(css(`#invite-form button[type="submit"]`)),
		chromedp.WaitVisible(css("#new-password")),
		Poll(`document.querySelectorAll('#users-body tr').length === 2`))
	first := Run(t, b, "read the first password", chromedp.Value(css("#new-password")))
	if len(first) < 10 {
		t.Errorf("the first password shown is %q", first)
	}
	b.Do(t, "remove the teammate",
		chromedp.Click(css(`#users-body tr:last-child button.remove-user`)),
		chromedp.WaitVisible(css("#confirm-dialog")),
		chromedp.Click(css("#confirm-ok")),
		Poll(`document.querySelectorAll('#users-body tr').length === 1`))

	b.Do(t, "sign out", chromedp.Click(css("#sign-out")), chromedp.WaitVisible(css("#signin-email")))
	for _, e := range b.Errors() {
		t.Errorf("page error: %s", e)
	}
}

// clearField empties a form field, as a user who selects its text and deletes
// it would. (chromedp's SetValue cannot set an empty value.)
func clearField(selector string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`(el => { el.value = ''; el.dispatchEvent(new Event('input', {bubbles: true})); })(document.querySelector(%q))`, selector))
}

// css selects by a CSS selector.
func css(s string) chromedp.CSS { return chromedp.CSS(s) }

// seed gives the signed-in user two tokens with a month of usage, one of
// them rolled with a day's grace, so the page looks lived in.
func seed(t *testing.T, tg *tollgate) {
	t.Helper()
	limit := int64(250_000)
	web := policy.NewToken(tg.account.ID, policy.Publishable)
	web.Nickname = "Store locator (web)"
	web.Domains = []string{"maps.acme.test"}
	web.APIs = []string{policy.APIMaps}
	web.CreditLimit = &limit
	tg.MustSeedToken(t, web, func(d int) int64 { return int64(2400 + (d*7919)%3100 + d*90) })
	mobile := policy.NewToken(tg.account.ID, policy.Publishable)
	mobile.Nickname = "Mobile app"
	mobile.RateLimit = &policy.RateLimit{RPS: 50, Burst: 100}
	tg.MustSeedToken(t, mobile, func(d int) int64 {
		if d%7 == 5 || d%7 == 6 {
			return int64(200 + (d*131)%250)
		}
		return int64(500 + (d*4507)%1400 + d*25)
	})
	if _, _, err := tg.db.RollToken(context.Background(), mobile.ID, 24*time.Hour); err != nil {
		t.Fatalf("roll: %v", err)
	}
}

// saveScreenshot keeps the screenshot with the test's artifacts and, with
// -update-screenshot, in docs/.
func saveScreenshot(t *testing.T, name string, png []byte) {
	t.Helper()
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("the screenshot is not a PNG (%d bytes)", len(png))
	}
	if err := os.WriteFile(filepath.Join(t.ArtifactDir(), name), png, 0o644); err != nil {
		t.Error(err)
	}
	if *updateScreenshot {
		if err := os.WriteFile(filepath.Join("..", "docs", name), png, 0o644); err != nil {
			t.Error(err)
		}
	}
}
