package browser_test

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/tollgate/tollgate/policy"
)

// TestConsoleAlerts: a leak that secret scanning reported shows above the
// token list, naming the token, and as a banner on the token's page with
// where the value was found and what Tollgate did.
func TestConsoleAlerts(t *testing.T) {
	b := MustStartBrowser(t)
	tg := MustStartTollgate(t)
	ctx := context.Background()

	web := policy.NewToken(tg.account.ID, policy.Publishable)
	web.Nickname = "Leaky site"
	tg.MustSeedToken(t, web, func(d int) int64 { return 100 })
	where := "https://github.com/acme/site/blob/main/config.js"
	if err := tg.db.RecordLeak(ctx, &policy.Leak{TokenID: web.ID, AccountID: web.AccountID, Reporter: "github",
		TokenType: "tollgate_publishable_token", URL: where, Source: "commit", Action: policy.LeakRecorded}); err != nil {
		t.Fatal(err)
	}

	b.Do(t, "sign in",
		chromedp.Navigate(tg.url+"/console/"), chromedp.WaitVisible(css("#signin-email")),
		chromedp.SendKeys(css("#signin-email"), tg.email),
		chromedp.SendKeys(css("#signin-password"), tg.password),
		chromedp.Click(css("#signin-submit")),
		chromedp.WaitVisible(css("#tokens-title")),
		chromedp.WaitVisible(css("#alerts .alert-banner.leak")))
	panel := Eval[string](t, b, `document.querySelector('#alerts').textContent`)
	for _, want := range []string{"Leaky site", where, "reported by github", "still enabled"} {
		if !strings.Contains(panel, want) {
			t.Errorf("the alerts panel reads %q, want it to mention %q", panel, want)
		}
	}
	if got := Eval[string](t, b, `document.querySelector('#alerts a').getAttribute('rel')`); got != "noopener noreferrer" {
		t.Errorf("the link to where the value was found has rel %q, want noopener noreferrer", got)
	}

	row := `#tokens-body tr[data-id="` + web.ID + `"]`
	b.Do(t, "open the token", chromedp.Click(css(row+" button.edit")), chromedp.WaitVisible(css("#edit-alerts .alert-banner.leak")))
	banner := Eval[string](t, b, `document.querySelector('#edit-alerts').textContent`)
	if !strings.Contains(banner, "This token was found in public") || !strings.Contains(banner, where) {
		t.Errorf("the token's banner reads %q, want where it was found (%s)", banner, where)
	}
	if errs := b.Errors(); len(errs) > 0 {
		t.Errorf("console errors: %v", errs)
	}
}
