package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/server"
	"github.com/tollgate/tollgate/internal/store"
)

// TestAnomalyCountsFromCheck: Check's decisions reach the fleet's minute
// counts (allowed requests, a secret token from a browser, denials by
// code) and the open-flags gauge is served for every kind.
func TestAnomalyCountsFromCheck(t *testing.T) {
	f := MustSeed(t, store.SQLite)
	s := MustStartServer(t, f.URL, func(c *server.Config) {
		c.Anomaly.Recorder.FlushInterval = 100 * time.Millisecond
		c.Anomaly.Detector.Interval = 100 * time.Millisecond
	})
	basic, secret, disabled := f.Token(t, "basic"), f.Token(t, "secret"), f.Token(t, "disabled")
	for range 3 {
		s.MustCheck(t, envoyRequest{Path: "/v1/data?token=" + basic.Value}.proto())
	}
	s.MustCheck(t, envoyRequest{Path: "/v1/data?token=" + disabled.Value}.proto())
	s.MustCheck(t, envoyRequest{Path: "/v1/data", Headers: map[string]string{
		"authorization": "Bearer " + secret.Value, "origin": "https://app.example.com"}}.proto())

	ctx := context.Background()
	deadline := time.Now().Add(5 * time.Second)
	var got map[string]policy.TokenWindow
	for time.Now().Before(deadline) {
		now := time.Now()
		windows, err := f.DB.UsageWindows(ctx, now.Add(-2*time.Hour), now.Add(-time.Hour), now.Add(time.Minute), now)
		if err != nil {
			t.Fatal(err)
		}
		got = map[string]policy.TokenWindow{}
		for _, w := range windows {
			got[w.TokenID] = w
		}
		if got[basic.ID].Requests == 3 && got[secret.ID].SecretBrowser == 1 && got[disabled.ID].Denials[policy.CodeTokenDisabled] == 1 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if w := got[basic.ID]; w.Requests != 3 {
		t.Errorf("basic: got %d allowed requests counted, want 3", w.Requests)
	}
	if w := got[secret.ID]; w.SecretBrowser != 1 {
		t.Errorf("secret from a browser: got %d, want 1 (%+v)", w.SecretBrowser, w)
	}
	if w := got[disabled.ID]; w.Denials[policy.CodeTokenDisabled] != 1 || w.Denied != 1 {
		t.Errorf("disabled: got denials %v (%d), want one token_disabled", w.Denials, w.Denied)
	}
	for _, kind := range []string{"spike", "denials", "new_network", "new_site", "secret_in_browser"} {
		if _, ok := s.Metric(t, `tollgate_token_flags_open{kind="`+kind+`"}`); !ok {
			t.Errorf("no tollgate_token_flags_open series for %s", kind)
		}
	}
}
