package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/scanning"
	"github.com/tollgate/tollgate/internal/scanning/scanningtest"
	"github.com/tollgate/tollgate/internal/server"
	"github.com/tollgate/tollgate/internal/store"
)

// startScanning starts a server whose secret-scanning endpoint trusts
// github's keys, with the policy set by configure.
func startScanning(t *testing.T, f *fixture, github *scanningtest.Reporter, configure func(*server.SecretScanningConfig)) (*testServer, string) {
	t.Helper()
	keys := scanningtest.WriteKeys(t, github)
	s := MustStartServer(t, f.URL, func(c *server.Config) {
		c.SecretScanning.Keys = keys
		if configure != nil {
			configure(&c.SecretScanning)
		}
	})
	return s, s.BaseURL + "/v1/secret-scanning/github"
}

// feedbackOf returns a reader of a report's answer, by token hash.
func feedbackOf(t *testing.T) func(status int, body []byte) map[string]scanning.Feedback {
	return func(status int, body []byte) map[string]scanning.Feedback {
		t.Helper()
		if status != http.StatusOK {
			t.Fatalf("report: got status %d (%s), want 200", status, body)
		}
		var fb []scanning.Feedback
		if err := json.Unmarshal(body, &fb); err != nil {
			t.Fatalf("feedback %s: %v", body, err)
		}
		out := map[string]scanning.Feedback{}
		for _, x := range fb {
			out[x.TokenHash] = x
		}
		return out
	}
}

func hashOf(v string) string { return policy.HashValue(v).String() }

func tokenState(t *testing.T, db *store.DB, id string) *policy.Token {
	t.Helper()
	tok, err := db.Token(context.Background(), id)
	if err != nil {
		t.Fatalf("token %s: %v", id, err)
	}
	return tok
}

// TestSecretScanningReport sends one signed report with every kind of
// reported value and checks what each became, in the store, the audit log,
// the feedback and the metrics.
func TestSecretScanningReport(t *testing.T) {
	f := MustSeed(t, store.Postgres)
	github := scanningtest.NewReporter(t)
	s, url := startScanning(t, f, github, nil)
	ctx := context.Background()

	secret, basic, disabled := f.Token(t, "secret"), f.Token(t, "basic"), f.Token(t, "disabled")
	malformed := "pk_" + strings.Repeat("a", 38)
	unknown := policy.NewValue(policy.Secret)
	where := "https://github.com/octocat/Hello-World/blob/12345600b9cbe38a219f39a9941c9319b600c002/foo/bar.txt"
	status, body := github.Send(t, url,
		scanningtest.Report{Token: secret.Value, Type: "tollgate_secret_token", URL: where, Source: "content"},
		scanningtest.Report{Token: basic.Value, Type: "tollgate_publishable_token", URL: where, Source: "commit"},
		scanningtest.Report{Token: disabled.Value, Type: "tollgate_publishable_token", URL: where, Source: "content"},
		scanningtest.Report{Token: unknown, Type: "tollgate_secret_token", URL: where, Source: "content"},
		scanningtest.Report{Token: malformed, Type: "tollgate_publishable_token", URL: where, Source: "content"},
	)
	fb := feedbackOf(t)(status, body)
	want := map[string][2]string{
		hashOf(secret.Value):   {"true_positive", "disabled"},
		hashOf(basic.Value):    {"true_positive", "recorded"},
		hashOf(disabled.Value): {"true_positive", "recorded"},
		hashOf(unknown):        {"false_positive", "unknown"},
		hashOf(malformed):      {"false_positive", "malformed"},
	}
	for h, w := range want {
		if got := fb[h]; got.Label != w[0] || got.Status != w[1] {
			t.Errorf("feedback for %s: got %s/%s, want %s/%s", h[:12], got.Label, got.Status, w[0], w[1])
		}
	}
	if strings.Contains(string(body), secret.Value) {
		t.Errorf("the feedback repeats a token value: %s", body)
	}
	if tokenState(t, f.DB, secret.ID).Enabled {
		t.Errorf("the reported secret token is still enabled")
	}
	if !tokenState(t, f.DB, basic.ID).Enabled {
		t.Errorf("the reported publishable token was disabled; the default policy only records")
	}

	leaks, err := f.DB.Leaks(ctx, secret.AccountID, "", "", 100)
	if err != nil {
		t.Fatalf("leaks: %v", err)
	}
	if len(leaks) != 3 {
		t.Fatalf("leaks: got %d, want 3 (secret, basic, disabled): %+v", len(leaks), leaks)
	}
	for _, l := range leaks {
		if l.URL != where || l.Reporter != "github" {
			t.Errorf("leak %+v: got url %q reporter %q, want %q github", l, l.URL, l.Reporter, where)
		}
	}
	audit, err := f.DB.ListAudit(ctx, secret.AccountID, 0, 100)
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	actions := map[string]int{}
	for _, e := range audit {
		if e.Actor == "secret-scanning:github" {
			actions[e.Action+" "+e.Target]++
		}
	}
	for _, a := range []string{"token.disable " + secret.ID, "token.leak_reported " + secret.ID, "token.leak_reported " + basic.ID} {
		if actions[a] != 1 {
			t.Errorf("audit: got %d entries %q, want 1 (all: %v)", actions[a], a, actions)
		}
	}
	for series, wantN := range map[string]float64{
		`tollgate_leak_reports_total{kind="secret",outcome="disabled"}`:      1,
		`tollgate_leak_reports_total{kind="publishable",outcome="recorded"}`: 2,
		`tollgate_leak_reports_total{kind="",outcome="unknown"}`:             1,
		`tollgate_leak_reports_total{kind="",outcome="malformed"}`:           1,
	} {
		if got, _ := s.Metric(t, series); got != wantN {
			t.Errorf("%s: got %v, want %v", series, got, wantN)
		}
	}

	// Reported again, the secret token is already off.
	status, body = github.Send(t, url, scanningtest.Report{Token: secret.Value, Type: "tollgate_secret_token", URL: where, Source: "content"})
	if got := feedbackOf(t)(status, body)[hashOf(secret.Value)]; got.Label != "true_positive" || got.Status != "already_disabled" {
		t.Errorf("second report: got %+v, want true_positive/already_disabled", got)
	}
}

// TestSecretScanningPolicy covers the operator's other choices: roll a
// secret with no grace, disable a publishable token.
func TestSecretScanningPolicy(t *testing.T) {
	f := MustSeed(t, store.Postgres)
	github := scanningtest.NewReporter(t)
	_, url := startScanning(t, f, github, func(c *server.SecretScanningConfig) {
		c.Secret, c.Publishable = policy.LeakRolled, policy.LeakDisabled
	})
	secret, basic := f.Token(t, "secret"), f.Token(t, "basic")
	fb := feedbackOf(t)(github.Send(t, url,
		scanningtest.Report{Token: secret.Value, Type: "tollgate_secret_token", URL: "https://gist.github.com/x", Source: "gist"},
		scanningtest.Report{Token: basic.Value, Type: "tollgate_publishable_token", URL: "https://gist.github.com/x", Source: "gist"}))
	if got := fb[hashOf(secret.Value)].Status; got != "rolled" {
		t.Errorf("secret: got %q, want rolled", got)
	}
	if got := fb[hashOf(basic.Value)].Status; got != "disabled" {
		t.Errorf("publishable: got %q, want disabled", got)
	}
	if _, _, err := f.DB.TokenByHash(context.Background(), policy.HashValue(secret.Value)); err == nil {
		t.Errorf("the rolled secret's old value still finds the token; a roll for a leak has no grace")
	}
	if !tokenState(t, f.DB, secret.ID).Enabled {
		t.Errorf("rolling the secret token disabled it")
	}
	if tokenState(t, f.DB, basic.ID).Enabled {
		t.Errorf("the publishable token is still enabled")
	}
}

// TestSecretScanningRefusals: a report that is forged, signed by an
// unknown key, tampered with or out of bounds changes nothing.
func TestSecretScanningRefusals(t *testing.T) {
	f := MustSeed(t, store.Postgres)
	github, forger := scanningtest.NewReporter(t), scanningtest.NewReporter(t)
	s, url := startScanning(t, f, github, func(c *server.SecretScanningConfig) {
		c.MaxBody, c.MaxReports = 4096, 3
		c.KeysRefetch = time.Hour
	})
	secret := f.Token(t, "secret")
	report := scanningtest.Report{Token: secret.Value, Type: "tollgate_secret_token", URL: "https://github.com/a/b", Source: "content"}
	body := scanningtest.Body(t, report)
	tampered := []byte(strings.Replace(string(body), "a/b", "a/c", 1))
	// The forger signs with its own key under GitHub's identifier, and
	// with its own identifier.
	cases := map[string]struct {
		keyID, sig string
		body       []byte
		status     int
		code       string
	}{
		"forged under github's key id": {github.ID, forger.Sign(t, body), body, 401, "signature_invalid"},
		"unknown key id":               {forger.ID, forger.Sign(t, body), body, 401, "signature_key_unknown"},
		"tampered body":                {github.ID, github.Sign(t, body), tampered, 401, "signature_invalid"},
		"no signature":                 {github.ID, "", body, 401, "signature_invalid"},
		"signature not base64":         {github.ID, "!!!", body, 401, "signature_invalid"},
		"too many reports": {github.ID, github.Sign(t, scanningtest.Body(t, report, report, report, report)),
			scanningtest.Body(t, report, report, report, report), 413, "too_many_reports"},
		"too large":    {github.ID, github.Sign(t, []byte(strings.Repeat(" ", 5000))), []byte(strings.Repeat(" ", 5000)), 413, "body_too_large"},
		"not an array": {github.ID, github.Sign(t, []byte(`{"token":"x"}`)), []byte(`{"token":"x"}`), 400, "body_invalid"},
		"no token":     {github.ID, github.Sign(t, []byte(`[{"type":"x"}]`)), []byte(`[{"type":"x"}]`), 400, "body_invalid"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			status, out := scanningtest.Post(t, url, tc.keyID, tc.sig, tc.body)
			var e struct{ Code string }
			json.Unmarshal(out, &e)
			if status != tc.status || e.Code != tc.code {
				t.Errorf("got %d %s, want %d %s", status, out, tc.status, tc.code)
			}
		})
	}
	if !tokenState(t, f.DB, secret.ID).Enabled {
		t.Fatalf("a refused report disabled the token")
	}
	if leaks, _ := f.DB.Leaks(context.Background(), secret.AccountID, "", "", 10); len(leaks) != 0 {
		t.Errorf("a refused report recorded leaks: %+v", leaks)
	}
	if got, _ := s.Metric(t, `tollgate_leak_reports_refused_total{code="signature_invalid"}`); got != 4 {
		t.Errorf("refused signature_invalid: got %v, want 4", got)
	}
	// The genuine report still works afterwards.
	if got := feedbackOf(t)(github.Send(t, url, report))[hashOf(secret.Value)].Status; got != "disabled" {
		t.Errorf("genuine report: got %q, want disabled", got)
	}
}
