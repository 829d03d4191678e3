package e2e_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/scanning"
	"github.com/tollgate/tollgate/internal/scanning/scanningtest"
)

// TestLeakedSecretRefusedByEveryReplica: a report signed by a test
// "GitHub" and sent to one replica disables a live secret token, and every
// replica refuses the token within revocationBound; a forged report sent
// first changes nothing.
func TestLeakedSecretRefusedByEveryReplica(t *testing.T) {
	t.Parallel()
	db, dbURL := MustOpenDB(t)
	github, forger := scanningtest.NewReporter(t), scanningtest.NewReporter(t)
	keys := scanningtest.WriteKeys(t, github)

	acc := &policy.Account{Name: "Leaky Co"}
	_, secretValue, err := db.CreateAccount(context.Background(), acc)
	if err != nil {
		t.Fatalf("create account: %v", err)
	}
	replicas := []*replica{
		startReplica(t, "replica-a", dbURL, "--secret-scanning-keys", keys),
		startReplica(t, "replica-b", dbURL, "--secret-scanning-keys", keys),
		startReplica(t, "replica-c", dbURL, "--secret-scanning-keys", keys),
	}
	for _, r := range replicas {
		r.waitMetric(t, "tollgate_listener_connected", 5*time.Second, func(v float64) bool { return v == 1 }, "LISTEN up")
	}
	c := call{Token: secretValue}
	for _, r := range replicas {
		r.waitOutcome(t, c, 3*time.Second, "the secret token allowed", isAllowed)
	}

	report := scanningtest.Report{Token: secretValue, Type: "tollgate_secret_token",
		URL: "https://github.com/octocat/leaky/blob/0123456789abcdef/config.js", Source: "content"}
	body := scanningtest.Body(t, report)
	endpoint := func(r *replica) string { return "http://" + r.httpAddr + "/v1/secret-scanning/github" }

	if status, out := scanningtest.Post(t, endpoint(replicas[1]), github.ID, forger.Sign(t, body), body); status != http.StatusUnauthorized {
		t.Fatalf("forged report: got %d %s, want 401", status, out)
	}
	time.Sleep(300 * time.Millisecond) // longer than a change takes to spread
	for _, r := range replicas {
		if o := r.check(c, 2*time.Second); !isAllowed(o) {
			t.Fatalf("%s after a forged report: got %v, want allowed", r.name, o)
		}
	}

	var feedback []scanning.Feedback
	flips, took := measureFlips(t, replicas, c, 3*time.Second, func(t *testing.T) {
		status, out := scanningtest.Post(t, endpoint(replicas[0]), github.ID, github.Sign(t, body), body)
		if status != http.StatusOK {
			t.Errorf("signed report: got %d %s, want 200", status, out)
			return
		}
		if err := json.Unmarshal(out, &feedback); err != nil {
			t.Errorf("feedback %s: %v", out, err)
		}
	}, deniedWith("token_disabled"))
	for i, r := range replicas {
		t.Logf("%s refused the reported token %v after the report was sent (the report took %v)", r.name, flips[i], took)
		if flips[i] < 0 || flips[i] >= revocationBound {
			t.Errorf("%s refused after %v, want < %v", r.name, flips[i], revocationBound)
		}
	}
	if len(feedback) != 1 || feedback[0].Label != "true_positive" || feedback[0].Status != "disabled" ||
		feedback[0].TokenHash != policy.HashValue(secretValue).String() {
		t.Errorf("feedback: got %+v, want one true_positive, disabled, with the value's hash", feedback)
	}
}
