package cli_test

import (
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// TestAccountRateLimitFlags sets, changes and clears an account's rate
// limit from the command line, and refuses bad combinations naming the
// flag or field at fault.
func TestAccountRateLimitFlags(t *testing.T) {
	c := &cli{t: t, url: storetest.URL(t, store.SQLite), dir: t.TempDir()}
	type rate struct {
		RPS   int64 `json:"rps"`
		Burst int64 `json:"burst"`
	}
	var acc struct {
		ID        string `json:"id"`
		RateLimit *rate  `json:"rate_limit"`
	}
	c.json(&acc, "accounts", "create", "--name", "Busy", "--rate-limit", "20")
	if acc.RateLimit == nil || *acc.RateLimit != (rate{20, 20}) {
		t.Fatalf("accounts create --rate-limit 20: got %+v, want 20/s with burst 20", acc.RateLimit)
	}
	for _, step := range []struct {
		name string
		args []string
		want *rate
	}{
		{"change", []string{"--rate-limit", "5", "--rate-burst", "50"}, &rate{5, 50}},
		{"other fields keep it", []string{"--name", "Busier"}, &rate{5, 50}},
		{"clear", []string{"--clear-rate-limit"}, nil},
	} {
		acc.RateLimit = nil
		c.json(&acc, append([]string{"accounts", "update", acc.ID}, step.args...)...)
		if (acc.RateLimit == nil) != (step.want == nil) || (step.want != nil && *acc.RateLimit != *step.want) {
			t.Errorf("%s: got %+v, want %+v", step.name, acc.RateLimit, step.want)
		}
	}
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"burst alone":      {[]string{"accounts", "update", acc.ID, "--rate-burst", "5"}, "--rate-burst needs --rate-limit"},
		"zero rate":        {[]string{"accounts", "update", acc.ID, "--rate-limit", "0"}, "rate_limit"},
		"set and clear":    {[]string{"accounts", "update", acc.ID, "--rate-limit", "5", "--clear-rate-limit"}, "clear-rate-limit"},
		"create bad burst": {[]string{"accounts", "create", "--name", "X", "--rate-limit", "1", "--rate-burst", "-1"}, "rate_limit"},
	} {
		if msg := c.fails(tc.args...); !strings.Contains(msg, tc.want) {
			t.Errorf("%s: stderr %q, want it to name %q", name, msg, tc.want)
		}
	}
}
