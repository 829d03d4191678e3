package admin_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/admin"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// clock is a settable clock for the API's windows.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *clock) advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// signInLimits are small limits so that a test reaches them: 3 failures
// per email per 15 minutes, 6 per address per minute.
var signInLimits = admin.SignInConfig{EmailFailures: 3, EmailWindow: 15 * time.Minute, IPFailures: 6, IPWindow: time.Minute, Workers: 1, Queue: 4}

// from is an anonymous caller at addr (one trusted proxy appends it).
func (f *fixture) from(addr string) *client {
	return &client{f: f, header: http.Header{"X-Forwarded-For": {addr}}}
}

func (c *client) signInAs(email, password string) resp {
	c.f.t.Helper()
	return c.do("POST", "/v1/session", map[string]string{"email": email, "password": password})
}

const rightPassword = "correct horse battery"

// TestSignInLimits is the catalogue of issue 12 item 6 through the real
// HTTP API: attempt limits per email and per address, counted in the store
// across replicas, answered 429 with Retry-After before any hashing, the
// same for emails that exist and emails that do not, and audited.
func TestSignInLimits(t *testing.T) {
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			clk := &clock{now: time.Now()}
			cfg := admin.Config{InsecureCookies: true, TrustedHops: 1, SignIn: signInLimits, Now: clk.Now}
			f := newFixtureWith(t, d, cfg)

			t.Run("email limit", func(t *testing.T) {
				for i := range 3 {
					f.from("198.51.100.1").signInAs("admin@acme.test", "wrong password "+strconv.Itoa(i)).want(t, "wrong password", 401, "unauthorized")
				}
				r := f.from("198.51.100.1").signInAs("admin@acme.test", rightPassword).want(t, "right password after 3 failures", 429, "rate_limited")
				if ra, _ := strconv.Atoi(r.header.Get("Retry-After")); ra < 890 || ra > 900 {
					t.Errorf("Retry-After %q, want about 900 seconds", r.header.Get("Retry-After"))
				}
				f.from("198.51.100.2").signInAs("admin@acme.test", rightPassword).want(t, "the same email from another address", 429, "rate_limited")
				clk.advance(15*time.Minute + time.Second)
				f.from("198.51.100.1").signInAs("admin@acme.test", rightPassword).want(t, "after the window", 200)
			})

			t.Run("unknown email answers the same", func(t *testing.T) {
				var known, unknown []resp
				for i := range 4 {
					known = append(known, f.from("198.51.100.3").signInAs("alice@acme.test", "wrong password "+strconv.Itoa(i)))
					unknown = append(unknown, f.from("198.51.100.4").signInAs("nobody@acme.test", "wrong password "+strconv.Itoa(i)))
				}
				for i := range known {
					if known[i].status != unknown[i].status || known[i].raw != unknown[i].raw ||
						known[i].header.Get("Retry-After") != unknown[i].header.Get("Retry-After") {
						t.Errorf("attempt %d: known email got %d %s (Retry-After %q), unknown email %d %s (Retry-After %q)", i+1,
							known[i].status, known[i].raw, known[i].header.Get("Retry-After"), unknown[i].status, unknown[i].raw, unknown[i].header.Get("Retry-After"))
					}
				}
				if known[3].status != 429 {
					t.Errorf("4th attempt: got %d, want 429", known[3].status)
				}
				clk.advance(15*time.Minute + time.Second)
			})

			t.Run("address limit", func(t *testing.T) {
				for i := range 6 {
					f.from("198.51.100.5").signInAs("guess"+strconv.Itoa(i)+"@acme.test", "wrong password").want(t, "guess", 401)
				}
				f.from("198.51.100.5").signInAs("bob@acme.test", rightPassword).want(t, "right password from a limited address", 429, "rate_limited")
				f.from("198.51.100.6").signInAs("bob@acme.test", rightPassword).want(t, "from another address", 200)
				clk.advance(time.Minute + time.Second)
				f.from("198.51.100.5").signInAs("bob@acme.test", rightPassword).want(t, "after the address window", 200)
			})

			t.Run("success clears the email's failures", func(t *testing.T) {
				c := f.from("198.51.100.7")
				c.signInAs("bob@acme.test", "wrong password 1").want(t, "wrong", 401)
				c.signInAs("bob@acme.test", "wrong password 2").want(t, "wrong", 401)
				c.signInAs("bob@acme.test", rightPassword).want(t, "right", 200)
				c.signInAs("bob@acme.test", "wrong password 3").want(t, "wrong", 401)
				c.signInAs("bob@acme.test", "wrong password 4").want(t, "wrong", 401)
				c.signInAs("bob@acme.test", rightPassword).want(t, "right again: 2 failures since the last success", 200)
				clk.advance(15*time.Minute + time.Second)
			})

			t.Run("limits hold across replicas", func(t *testing.T) {
				// A second replica over the same store.
				other := httptest.NewServer(admin.New(f.db, cfg, slog.New(slog.NewTextHandler(io.Discard, nil))))
				defer other.Close()
				second := &fixture{t: t, db: f.db, srv: other}
				f.from("198.51.100.8").signInAs("carol@acme.test", "wrong password 1").want(t, "replica 1", 401)
				second.from("198.51.100.9").signInAs("carol@acme.test", "wrong password 2").want(t, "replica 2", 401)
				f.from("198.51.100.10").signInAs("carol@acme.test", "wrong password 3").want(t, "replica 1", 401)
				second.from("198.51.100.11").signInAs("carol@acme.test", "wrong password 4").want(t, "replica 2, 4th failure", 429, "rate_limited")
				clk.advance(15*time.Minute + time.Second)
			})

			t.Run("failed sign-ins are audited", func(t *testing.T) {
				entries := f.admin.do("GET", "/v1/audit", nil).want(t, "audit", 200).body["entries"].([]any)
				fails := map[string]int{}
				for _, e := range entries {
					m := e.(map[string]any)
					if m["action"] != "session.fail" {
						continue
					}
					if m["actor"] != "anonymous" || m["ip"] == "" {
						t.Errorf("session.fail entry %v, want actor anonymous and the address", m)
					}
					fails[m["target"].(string)]++
				}
				// admin: 3, alice: 3 (the 4th was refused before hashing),
				// bob: 4; the unknown emails are in no account's log.
				for who, want := range map[string]int{f.admin.user: 3, f.alice.user: 3, f.bob.user: 4} {
					if fails[who] != want {
						t.Errorf("session.fail entries for %s: got %d, want %d (all: %v)", who, fails[who], want, fails)
					}
				}
			})

			t.Run("a full hashing pool answers at once", func(t *testing.T) {
				release := f.h.FillHashPool(t)
				r := f.from("198.51.100.12").signInAs("admin@acme.test", rightPassword)
				release()
				r.want(t, "sign-in while the pool is full", 503, "unavailable")
				if r.header.Get("Retry-After") == "" {
					t.Error("503 without Retry-After")
				}
				f.from("198.51.100.12").signInAs("admin@acme.test", rightPassword).want(t, "after the flood", 200)
			})
		})
	}
}
