package cli_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// binary is the tollgate command built once for these end-to-end tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tollgate-cli")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "tollgate")
	build := exec.Command("go", "build", "-o", binary, "github.com/tollgate/tollgate/cmd/tollgate")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build tollgate:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cli runs tollgate against one database.
type cli struct {
	t   *testing.T
	url string
	dir string
	env []string // added to the environment
}

// run runs tollgate with args and returns stdout, stderr and whether it
// exited zero.
func (c *cli) run(args ...string) (string, string, bool) {
	c.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = c.dir
	cmd.Env = append(append(os.Environ(), "TOLLGATE_DATABASE_URL="+c.url), c.env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			c.t.Fatalf("run %v: %v", args, err)
		}
	}
	return out.String(), errb.String(), err == nil
}

// json runs tollgate with -o json, requires success and decodes stdout.
func (c *cli) json(v any, args ...string) {
	c.t.Helper()
	out, errOut, ok := c.run(append(args, "-o", "json")...)
	if !ok {
		c.t.Fatalf("tollgate %v failed: %s", args, errOut)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		c.t.Fatalf("tollgate %v printed %q: %v", args, out, err)
	}
}

// fails runs tollgate, requires a non-zero exit, and returns stderr.
func (c *cli) fails(args ...string) string {
	c.t.Helper()
	out, errOut, ok := c.run(args...)
	if ok {
		c.t.Fatalf("tollgate %v succeeded (%s), want a failure", args, out)
	}
	if out != "" {
		c.t.Errorf("tollgate %v printed %q on stdout as it failed", args, out)
	}
	return errOut
}

type tokenJSON struct {
	ID             string              `json:"id"`
	Token          string              `json:"token"`
	Kind           string              `json:"kind"`
	Nickname       string              `json:"nickname"`
	Enabled        bool                `json:"enabled"`
	Core           bool                `json:"core"`
	Premium        bool                `json:"premium"`
	Datasets       map[string][]string `json:"datasets"`
	AllowedAPIs    []string            `json:"allowed_apis"`
	Grants         []map[string]string `json:"grants"`
	AllowedDomains []string            `json:"allowed_domains"`
	AllowedIPs     []string            `json:"allowed_ips"`
	CreditLimit    *int64              `json:"credit_limit"`
	RateLimit      *struct {
		RPS   int64 `json:"rps"`
		Burst int64 `json:"burst"`
	} `json:"rate_limit"`
}

func TestCLI(t *testing.T) {
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			c := &cli{t: t, url: storetest.URL(t, d), dir: t.TempDir()}
			if d == store.Postgres {
				// Postgres must be migrated first, and says so.
				if msg := c.fails("accounts", "list"); !strings.Contains(msg, "tollgate migrate") {
					t.Errorf("unmigrated database: stderr %q, want advice to run tollgate migrate", msg)
				}
				if msg := c.fails("serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"); !strings.Contains(msg, "--migrate") {
					t.Errorf("serve on an unmigrated database: stderr %q, want advice to serve with --migrate", msg)
				}
			}
			var mig struct{ Version int64 }
			c.json(&mig, "migrate")
			c.json(&mig, "migrate")
			if mig.Version < 1 {
				t.Errorf("migrate reports version %d", mig.Version)
			}
			testTokenLifecycle(t, c)
		})
	}
}

func testTokenLifecycle(t *testing.T, c *cli) {
	var acc struct {
		ID          string `json:"id"`
		SecretToken string `json:"secret_token"`
	}
	c.json(&acc, "accounts", "create", "--name", "Acme", "--premium", "--credit-quota", "100000")
	if acc.ID == "" || !strings.HasPrefix(acc.SecretToken, "sk_") {
		t.Fatalf("accounts create printed %+v, want an id and an sk_ token", acc)
	}

	var tok tokenJSON
	c.json(&tok, "tokens", "create", "--account", acc.ID, "--nickname", "web",
		"--dataset", "sales.*=read,write", "--dataset", "hr=delete", "--premium",
		"--domain", "example.com", "--domain", "*.example.org", "--ip", "10.0.0.0/8",
		"--api", "maps", "--api", "sql", "--grant", "wh:table:public.orders", "--grant", "wh:query:SELECT 1",
		"--credit-limit", "500", "--rate-limit", "20", "--rate-burst", "40")
	if !strings.HasPrefix(tok.Token, "pk_") || tok.Kind != "publishable" || tok.Nickname != "web" || !tok.Core || !tok.Premium {
		t.Errorf("tokens create printed %+v", tok)
	}
	if !slices.Equal(tok.Datasets["sales.*"], []string{"read", "write"}) || !slices.Equal(tok.Datasets["hr"], []string{"delete"}) {
		t.Errorf("datasets %v", tok.Datasets)
	}
	if len(tok.Grants) != 2 || tok.CreditLimit == nil || *tok.CreditLimit != 500 || tok.RateLimit == nil || tok.RateLimit.Burst != 40 {
		t.Errorf("grants %v, credit limit %v, rate limit %v", tok.Grants, tok.CreditLimit, tok.RateLimit)
	}

	var second tokenJSON
	c.json(&second, "tokens", "create", "--account", acc.ID, "--no-core")
	if second.Core || !strings.HasPrefix(second.Nickname, "tk_") {
		t.Errorf("second token %+v, want no core access and a tk_ nickname", second)
	}

	var list []tokenJSON
	c.json(&list, "tokens", "list", "--account", acc.ID)
	if len(list) != 3 || list[0].Kind != "secret" || list[1].ID != tok.ID || list[2].ID != second.ID {
		t.Errorf("list %+v, want the secret token, then web, then the second, oldest first", list)
	}
	for _, l := range list {
		if l.Token != "" {
			t.Errorf("list shows a token value for %s", l.ID)
		}
	}

	// A repeated flag replaces the list; --clear-* empties it.
	var upd tokenJSON
	c.json(&upd, "tokens", "update", tok.ID, "--domain", "new.example.com", "--clear-ips", "--no-premium")
	if !slices.Equal(upd.AllowedDomains, []string{"new.example.com"}) || len(upd.AllowedIPs) != 0 || upd.Premium {
		t.Errorf("after update: domains %v, ips %v, premium %v", upd.AllowedDomains, upd.AllowedIPs, upd.Premium)
	}
	if len(upd.AllowedAPIs) != 2 || upd.Datasets["hr"] == nil {
		t.Errorf("update changed fields it did not name: %+v", upd)
	}
	c.json(&upd, "tokens", "update", tok.ID, "--clear-domains", "--clear-credit-limit")
	if len(upd.AllowedDomains) != 0 || upd.CreditLimit != nil {
		t.Errorf("after clearing: domains %v, credit limit %v", upd.AllowedDomains, upd.CreditLimit)
	}

	c.json(&upd, "tokens", "disable", tok.ID)
	if upd.Enabled {
		t.Error("disable left the token enabled")
	}
	c.json(&upd, "tokens", "show", tok.ID)
	if upd.Enabled {
		t.Error("show: token enabled after disable")
	}
	c.json(&upd, "tokens", "enable", tok.ID)
	if !upd.Enabled {
		t.Error("enable left the token disabled")
	}

	// Bad input: a clear error on stderr, a non-zero exit, nothing changed.
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"bad cidr":       {[]string{"tokens", "update", tok.ID, "--ip", "10.0.0.300/8"}, "allowed_ips"},
		"import + maps":  {[]string{"tokens", "update", tok.ID, "--api", "import", "--api", "maps"}, "import"},
		"negative limit": {[]string{"tokens", "update", tok.ID, "--credit-limit", "-5"}, "credit_limit"},
		"bad domain":     {[]string{"tokens", "update", tok.ID, "--domain", "ftp://x.com"}, "allowed_domains"},
		"bad actions":    {[]string{"tokens", "update", tok.ID, "--dataset", "sales=fly"}, "fly"},
		"unknown token":  {[]string{"tokens", "show", "tok_doesnotexist00"}, "not found"},
		"no account":     {[]string{"tokens", "create"}, "account"},
		"bad kind":       {[]string{"tokens", "create", "--account", acc.ID, "--kind", "magic"}, "kind"},
		"flag conflict":  {[]string{"tokens", "update", tok.ID, "--ip", "1.2.3.4", "--clear-ips"}, "clear-ips"},
		"second secret":  {[]string{"tokens", "create", "--account", acc.ID, "--kind", "secret"}, "secret token"},
		"bad output":     {[]string{"version", "-o", "yaml"}, "output"},
	} {
		if msg := c.fails(tc.args...); !strings.Contains(msg, tc.want) {
			t.Errorf("%s: stderr %q, want it to mention %q", name, msg, tc.want)
		}
	}
	var after tokenJSON
	c.json(&after, "tokens", "show", tok.ID)
	if len(after.AllowedAPIs) != 2 || len(after.AllowedIPs) != 0 || !after.Enabled {
		t.Errorf("failed updates changed the token: %+v", after)
	}

	var del map[string]any
	c.json(&del, "tokens", "delete", second.ID)
	c.json(&list, "tokens", "list", "--account", acc.ID)
	if len(list) != 2 {
		t.Errorf("%d tokens after delete, want 2", len(list))
	}
	for _, l := range list {
		if l.ID == second.ID {
			t.Error("deleted token still listed")
		}
	}
	if out, _, ok := c.run("tokens", "list", "--account", acc.ID); !ok || !strings.Contains(out, "NICKNAME") {
		t.Errorf("text list: %q", out)
	}
}

func TestCLIUnreachableDatabase(t *testing.T) {
	c := &cli{t: t, url: "postgres://tollgate@127.0.0.1:1/nowhere?sslmode=disable&connect_timeout=2", dir: t.TempDir()}
	if msg := c.fails("tokens", "list", "--account", "acc_x"); !strings.Contains(msg, "cannot reach the postgres database") {
		t.Errorf("stderr %q, want it to say the database cannot be reached", msg)
	}
	c.url = "mysql://x"
	if msg := c.fails("accounts", "list"); !strings.Contains(msg, "postgres://") {
		t.Errorf("stderr %q, want it to name the accepted URL forms", msg)
	}
}

func TestCLIEmbeddedDefault(t *testing.T) {
	// No database URL: the embedded store in the working directory.
	c := &cli{t: t, url: "", dir: t.TempDir()}
	var acc struct{ ID string }
	c.json(&acc, "accounts", "create", "--name", "Solo")
	if _, err := os.Stat(filepath.Join(c.dir, "tollgate.db")); err != nil {
		t.Errorf("embedded store not created in the working directory: %v", err)
	}
	var v map[string]string
	c.json(&v, "version")
	if v["version"] == "" {
		t.Error("version printed nothing")
	}
}
