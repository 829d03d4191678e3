package browser_test

import (
	"fmt"
	"testing"

	"github.com/chromedp/chromedp"
)

// A phone's viewport in CSS pixels (an iPhone 12 to 15).
const phoneWidth, phoneHeight = 390, 844

// TestConsolePhone signs in on a phone-sized screen and checks that every
// page fits its width (a wider page makes the browser zoom out), that each
// row's actions are on screen and take a tap, and that the editor fills
// the screen.
func TestConsolePhone(t *testing.T) {
	b := MustStartBrowser(t)
	tg := MustStartTollgate(t)
	seed(t, tg)
	b.Do(t, "emulate a phone", chromedp.EmulateViewport(phoneWidth, phoneHeight, chromedp.EmulateMobile, chromedp.EmulateScale(2)))

	b.Do(t, "open the console", chromedp.Navigate(tg.url+"/console/"), chromedp.WaitVisible(css("#signin-email")))
	mustFitWidth(t, b, "sign-in page")
	b.Do(t, "sign in",
		chromedp.SendKeys(css("#signin-email"), tg.email),
		chromedp.SendKeys(css("#signin-password"), tg.password),
		chromedp.Click(css("#signin-submit")),
		chromedp.WaitVisible(css("#tokens-title")),
		Poll(`document.querySelectorAll('#tokens-body tr').length === 3`))
	mustFitWidth(t, b, "tokens page")

	// The list does not scroll sideways inside its box either, which would
	// hide the actions as surely as a wide page.
	if got := Eval[int](t, b, `(el => el.scrollWidth - el.clientWidth)(document.querySelector('#page-tokens .table-wrap'))`); got > 0 {
		t.Errorf("the token list scrolls sideways by %dpx", got)
	}
	// Every action of every row is inside the viewport once scrolled to,
	// and a tap at its centre lands on it.
	offscreen := Eval[[]string](t, b, fmt.Sprintf(`[...document.querySelectorAll('#tokens-body td.actions button')].filter((el) => {
		el.scrollIntoView({block: 'center', inline: 'nearest'});
		const r = el.getBoundingClientRect();
		const inside = r.width > 0 && r.left >= 0 && r.right <= %d && r.top >= 0 && r.bottom <= %d;
		const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
		return !(inside && hit && el.contains(hit));
	}).map((el) => el.getAttribute('aria-label'))`, phoneWidth, phoneHeight))
	if len(offscreen) > 0 {
		t.Errorf("row actions off screen or covered at %dx%d: %v", phoneWidth, phoneHeight, offscreen)
	}

	// Create a token: the value and its example requests fit too.
	b.Do(t, "create a token", chromedp.Click(css("#quick-token")), chromedp.WaitVisible(css("#confirm-dialog")),
		chromedp.Click(css("#confirm-ok")), chromedp.WaitVisible(css("#new-token-value")))
	mustFitWidth(t, b, "tokens page with a new token's value")
	saveScreenshot(t, "console-phone.png", Run(t, b, "take a screenshot", chromedp.FullScreenshot(100)))

	// The editor covers the screen, not a strip of it.
	b.Do(t, "open the editor",
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#tokens-body tr:nth-child(2) button.edit').scrollIntoView({block: 'center'})`),
		chromedp.Click(css("#tokens-body tr:nth-child(2) button.edit")),
		chromedp.WaitVisible(css("#edit-dialog")))
	rect := Eval[[]float64](t, b, `(r => [r.left, r.top, r.right, r.bottom])(document.getElementById('edit-dialog').getBoundingClientRect())`)
	if want := []float64{0, 0, phoneWidth, phoneHeight}; len(rect) != 4 || rect[0] > 0 || rect[1] > 0 || rect[2] < want[2] || rect[3] < want[3] {
		t.Errorf("the editor covers %v (left, top, right, bottom), want the whole screen %v", rect, want)
	}
	saveScreenshot(t, "console-phone-editor.png", Run(t, b, "take a screenshot of the editor", chromedp.CaptureScreenshot()))
	b.Do(t, "add a dataset and a grant row", chromedp.Click(css("#add-dataset")), chromedp.Click(css("#add-grant")))
	mustFitWidth(t, b, "editor")
	if got := Eval[int](t, b, `document.getElementById('edit-dialog').scrollWidth - document.getElementById('edit-dialog').clientWidth`); got > 0 {
		t.Errorf("the editor's content is %dpx wider than the editor", got)
	}
	b.Do(t, "close the editor", chromedp.Click(css("#edit-cancel")), chromedp.WaitNotVisible(css("#edit-dialog")))

	b.Do(t, "open Teammates", chromedp.Click(css("#nav-teammates")), chromedp.WaitVisible(css("#invite-form")),
		Poll(`document.querySelectorAll('#users-body tr').length === 1`))
	mustFitWidth(t, b, "teammates page")

	for _, e := range b.Errors() {
		t.Errorf("page error: %s", e)
	}
}

// mustFitWidth fails the test when the page is wider than the phone's
// screen. (window.innerWidth is no measure: a mobile browser widens the
// layout viewport to the page and zooms out.)
func mustFitWidth(t *testing.T, b *browser, page string) {
	t.Helper()
	if got := Eval[int](t, b, `document.documentElement.scrollWidth`); got > phoneWidth {
		t.Errorf("%s: the page is %dpx wide, want at most the screen's %dpx", page, got, phoneWidth)
	}
}
