package browser_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tollgate/tollgate/internal/policy"
)

// TestConsoleAlerts: a leak that secret scanning reported and a flag of
// unusual usage show above the token list, naming the token, and as
// banners on the token's page with their evidence; one click on the flag
// disables the token (Check refuses it) and closes the flag.
func TestConsoleAlerts(t *testing.T) {
	b := MustStartBrowser(t)
	tg := MustStartTollgate(t)
	ctx := context.Background()

	web := policy.NewToken(tg.account.ID, policy.Publishable)
	web.Nickname = "Leaky site"
	web.UserID = tg.user.ID
	value, err := tg.db.CreateToken(ctx, web)
	if err != nil {
		t.Fatal(err)
	}
	where := "https://github.com/acme/site/blob/main/config.js"
	if err := tg.db.RecordLeak(ctx, &policy.Leak{TokenID: web.ID, AccountID: web.AccountID, Reporter: "github",
		TokenType: "tollgate_publishable_token", URL: where, Source: "commit", Action: policy.LeakRecorded}); err != nil {
		t.Fatal(err)
	}

	flag := &policy.Flag{TokenID: web.ID, AccountID: web.AccountID, Kind: policy.FlagDenials,
		Evidence: []byte(`{"code":"referer_denied","count":312,"share":0.93,"window":"10m0s"}`)}
	if _, err := tg.db.OpenFlag(ctx, flag, time.Time{}); err != nil {
		t.Fatal(err)
	}

	b.Do(t, "sign in",
		chromedp.Navigate(tg.url+"/console/"), chromedp.WaitVisible(css("#signin-email")),
		chromedp.SendKeys(css("#signin-email"), tg.email),
		chromedp.SendKeys(css("#signin-password"), tg.password),
		chromedp.Click(css("#signin-submit")),
		chromedp.WaitVisible(css("#tokens-title")),
		chromedp.WaitVisible(css("#alerts .alert-banner.leak")),
		chromedp.WaitVisible(css("#alerts .alert-banner.flag")))
	panel := Eval[string](t, b, `document.querySelector('#alerts').textContent`)
	for _, want := range []string{"Leaky site", where, "reported by github", "still enabled",
		"A burst of denied requests", "312 requests denied with referer_denied within 10m0s (93% of its requests)"} {
		if !strings.Contains(panel, want) {
			t.Errorf("the alerts panel reads %q, want it to mention %q", panel, want)
		}
	}
	if got := Eval[string](t, b, `document.querySelector('#alerts a').getAttribute('rel')`); got != "noopener noreferrer" {
		t.Errorf("the link to where the value was found has rel %q, want noopener noreferrer", got)
	}

	row := `#tokens-body tr[data-id="` + web.ID + `"]`
	b.Do(t, "open the token", chromedp.Click(css(row+" button.edit")),
		chromedp.WaitVisible(css("#edit-alerts .alert-banner.leak")), chromedp.WaitVisible(css("#edit-alerts .alert-banner.flag")))
	banner := Eval[string](t, b, `document.querySelector('#edit-alerts').textContent`)
	if !strings.Contains(banner, "This token was found in public") || !strings.Contains(banner, where) || !strings.Contains(banner, "312 requests denied") {
		t.Errorf("the token's banners read %q, want where it was found (%s) and the flag's evidence", banner, where)
	}
	b.Do(t, "close the token", chromedp.Click(css("#edit-cancel")), chromedp.WaitNotVisible(css("#edit-dialog")))

	// One click: the token is disabled, Check refuses it, the flag closes.
	b.Do(t, "disable from the flag", chromedp.Click(css(`#alerts .alert-banner.flag button.disable-now`)),
		Poll(`!document.querySelector('#alerts .alert-banner.flag')`))
	if tok, err := tg.db.Token(ctx, web.ID); err != nil || tok.Enabled {
		t.Errorf("after Disable on the flag the token is %+v (%v), want disabled", tok, err)
	}
	if open, err := tg.db.Flags(ctx, web.AccountID, web.ID, "", true, 10); err != nil || len(open) != 0 {
		t.Errorf("open flags after Disable: %v (%v), want none", open, err)
	}
	tg.waitChecks(t, "after Disable on the flag", time.Now(), time.Second, map[[2]string]string{
		{value, ""}: string(policy.CodeTokenDisabled),
	})
	if errs := b.Errors(); len(errs) > 0 {
		t.Errorf("console errors: %v", errs)
	}
}
