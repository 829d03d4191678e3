// Package browser_test drives the web console in a real headless Chromium
// against a real Tollgate, and checks what it changes on the Check path.
package browser_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tollgate/tollgate/internal/manage"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/server"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// chromiumPath is where Debian's chromium package puts the browser.
const chromiumPath = "/usr/bin/chromium"

// tollgate is a server started in-process, its store, and a signed-in
// console's credentials.
type tollgate struct {
	srv      *server.Server
	db       *store.DB
	auth     authv3.AuthorizationClient
	url      string // the console's base URL, on localhost
	account  *policy.Account
	user     *policy.User
	email    string
	password string
}

// MustStartTollgate starts a server on a fresh SQLite store (unless opts
// name another), with an account and an admin user made through the store,
// its config changed by opts. It stops when tb ends.
func MustStartTollgate(tb testing.TB, opts ...func(*server.Config)) *tollgate {
	tb.Helper()
	cfg := server.DefaultConfig()
	cfg.Listen.GRPC, cfg.Listen.HTTP, cfg.Listen.Metrics = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Store.URL = storetest.URL(tb, store.SQLite)
	cfg.API.InsecureCookies = true
	cfg.Store.ResyncInterval = 100 * time.Millisecond
	cfg.Shutdown.Timeout = 5 * time.Second
	for _, o := range opts {
		o(&cfg)
	}
	dbURL := cfg.Store.URL // an option may have chosen another store
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))

	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, logger)
	if err != nil {
		cancel()
		tb.Fatalf("server.New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("server Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			tb.Errorf("server Run did not return 20s after its context was cancelled")
		}
		if tb.Failed() {
			tb.Logf("server log:\n%s", logs.String())
		}
	})

	db, err := store.Open(context.Background(), dbURL, store.Options{})
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	acc := &policy.Account{Name: "Acme Maps", Premium: true}
	if _, _, err := db.CreateAccount(context.Background(), acc); err != nil {
		tb.Fatalf("create account: %v", err)
	}
	const email, password = "ada@acme.test", "correct horse battery staple"
	hash, err := manage.HashPassword(password)
	if err != nil {
		tb.Fatal(err)
	}
	u := &policy.User{AccountID: acc.ID, Email: email, Role: policy.RoleAdmin, PasswordHash: hash}
	if err := db.CreateUser(context.Background(), u); err != nil {
		tb.Fatalf("create user: %v", err)
	}

	conn, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatalf("grpc.NewClient: %v", err)
	}
	tb.Cleanup(func() { conn.Close() })
	_, port, _ := strings.Cut(srv.HTTPAddr().String(), ":")
	return &tollgate{
		srv: srv, db: db, auth: authv3.NewAuthorizationClient(conn),
		url:     "http://localhost:" + port,
		account: acc, user: u, email: email, password: password,
	}
}

// MustSeedToken makes a token owned by the signed-in user, with 30 days of
// usage, so the list and its charts have something to show.
func (tg *tollgate) MustSeedToken(tb testing.TB, t *policy.Token, perDay func(day int) int64) {
	tb.Helper()
	ctx := context.Background()
	t.UserID = tg.user.ID
	if _, err := tg.db.CreateToken(ctx, t); err != nil {
		tb.Fatalf("seed token: %v", err)
	}
	now := time.Now().UTC()
	var batch []policy.DailyUsage
	for i := range 30 {
		c := perDay(i)
		if c == 0 {
			continue
		}
		day := now.AddDate(0, 0, -(29 - i))
		batch = append(batch, policy.DailyUsage{TokenID: t.ID, AccountID: t.AccountID, Day: day.Format(time.DateOnly),
			Requests: c, Credits: c, LastUsed: day})
	}
	if err := tg.db.RecordUsage(ctx, batch); err != nil {
		tb.Fatalf("seed usage: %v", err)
	}
	// The credits of this period, as the meter would have counted them.
	period := policy.PeriodMonth.Start(now)
	var used int64
	for _, u := range batch {
		if u.Day >= period.Format(time.DateOnly) {
			used += u.Credits
		}
	}
	for _, subject := range []string{t.ID, t.AccountID} {
		if _, err := tg.db.AddCredits(ctx, subject, period, used); err != nil {
			tb.Fatalf("seed credits: %v", err)
		}
	}
}

// checkRequest is what Envoy sends for a browser's GET of dataset
// sales.q1 with the token in the query string.
func checkRequest(value, referer string) *authv3.CheckRequest {
	path := "/v1/data/sales.q1?token=" + value
	headers := map[string]string{
		":authority": "api.acme.test", ":method": "GET", ":path": path, ":scheme": "https",
		"host": "api.acme.test", "accept": "application/json", "referer": referer,
		"user-agent":      "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
		"x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https",
		"x-request-id": "6f1c1f0e-2a4b-4c55-9b1e-0d7f3e5a9c21",
	}
	addr := func(ip string, port uint32) *corev3.Address {
		return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Protocol: corev3.SocketAddress_TCP, Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: addr("203.0.113.7", 53211)},
		Destination: &authv3.AttributeContext_Peer{Address: addr("10.0.4.17", 10000)},
		Request: &authv3.AttributeContext_Request{Time: timestamppb.Now(), Http: &authv3.AttributeContext_HttpRequest{
			Id: "1", Method: "GET", Path: path, Host: "api.acme.test", Scheme: "https", Protocol: "HTTP/2", Headers: headers,
		}},
		ContextExtensions: map[string]string{"api": "data", "dataset": "sales.q1", "tier": "core", "action": "read"},
	}}
}

// Check asks Tollgate about a request with the token from the referer and
// returns "allow" or the deny code.
func (tg *tollgate) Check(tb testing.TB, value, referer string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := tg.auth.Check(ctx, checkRequest(value, referer))
	if err != nil {
		tb.Fatalf("Check: %v", err)
	}
	if resp.GetOkResponse() != nil {
		return "allow"
	}
	return resp.GetStatus().GetMessage()
}

// waitChecks polls until every request gets its wanted answer, and returns
// how long that took; it fails the test at the deadline.
func (tg *tollgate) waitChecks(tb testing.TB, what string, from time.Time, within time.Duration, want map[[2]string]string) time.Duration {
	tb.Helper()
	for {
		got := map[[2]string]string{}
		ok := true
		for req, code := range want {
			got[req] = tg.Check(tb, req[0], req[1])
			ok = ok && got[req] == code
		}
		elapsed := time.Since(from)
		if ok {
			return elapsed
		}
		if elapsed > within {
			for req, code := range want {
				if got[req] != code {
					tb.Errorf("%s: Check with referer %s: got %s, want %s (after %v)", what, req[1], got[req], code, elapsed.Round(time.Millisecond))
				}
			}
			tb.FailNow()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// browser is a headless Chromium tab, and the page errors it reported.
type browser struct {
	ctx    context.Context
	mu     sync.Mutex
	errors []string
}

// MustStartBrowser launches Chromium with a fresh profile. It is skipped
// when the browser is missing, except in CI, where that is a failure.
func MustStartBrowser(tb testing.TB) *browser {
	tb.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("%s is missing: install Debian's chromium (apt-get install chromium)", chromiumPath)
		}
		tb.Skipf("%s is missing: install Debian's chromium to run the console test", chromiumPath)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(tb.TempDir()),
		chromedp.WindowSize(1280, 800),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	tb.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	b := &browser{ctx: ctx}
	err := chromedp.Listen(ctx, func(ev any) {
		var msg string
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			msg = "exception: " + ev.ExceptionDetails.Text
			if e := ev.ExceptionDetails.Exception; e != nil {
				msg += " " + e.Description
			}
		case *log.EventEntryAdded:
			// Content Security Policy violations and failed loads land
			// here; the API's 4xx answers are expected.
			if ev.Entry.Level == log.EntryLevelError && !strings.Contains(ev.Entry.Text, "the server responded with a status of 4") {
				msg = fmt.Sprintf("%s: %s (%s)", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
			}
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				msg = "console.error"
				for _, a := range ev.Args {
					msg += " " + string(a.Value) + a.Description
				}
			}
		}
		if msg != "" {
			b.mu.Lock()
			b.errors = append(b.errors, msg)
			b.mu.Unlock()
		}
	})
	if err != nil {
		tb.Fatalf("start chromium: %v", err)
	}
	// A laptop's viewport, for the screenshot.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		tb.Fatalf("set the viewport: %v", err)
	}
	if _, err := chromedp.Call(ctx, log.Enable, cdp.Empty{}); err != nil {
		tb.Fatalf("enable the log domain: %v", err)
	}
	if _, err := chromedp.Call(ctx, runtime.Enable, cdp.Empty{}); err != nil {
		tb.Fatalf("enable the runtime domain: %v", err)
	}
	return b
}

// Do performs the actions, failing the test with what was being done.
func (b *browser) Do(tb testing.TB, what string, actions ...chromedp.Action[chromedp.Void]) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.Fatalf("%s: %v", what, err)
	}
}

// Run performs one action and returns its value.
func Run[T any](tb testing.TB, b *browser, what string, action chromedp.Action[T]) T {
	tb.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, action)
	if err != nil {
		tb.Fatalf("%s: %v", what, err)
	}
	return v
}

// Eval returns the value of a JavaScript expression.
func Eval[T any](tb testing.TB, b *browser, expr string) T {
	tb.Helper()
	return Run(tb, b, "evaluate "+expr, chromedp.Evaluate[T](expr))
}

// Poll waits until a JavaScript expression is true.
func Poll(expr string) chromedp.Action[chromedp.Void] { return chromedp.Poll[chromedp.Void](expr) }

// Errors returns the page errors seen so far.
func (b *browser) Errors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errors...)
}

// unlabelled lists the visible form controls that have no label, as the
// accessibility tree would name them: a <label>, aria-label or
// aria-labelledby.
const unlabelled = `[...document.querySelectorAll('input, select, textarea')]
	.filter((el) => el.type !== 'hidden' && el.getClientRects().length > 0)
	.filter((el) => !(el.labels && [...el.labels].some((l) => l.textContent.trim() !== '')) &&
		!el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby'))
	.map((el) => el.id || el.name || el.outerHTML.slice(0, 80))`

// focusIn reports whether the element with the id holds the focus.
func focusIn(id string) string {
	return fmt.Sprintf(`document.getElementById(%q).contains(document.activeElement)`, id)
}

// syncBuffer is a bytes.Buffer safe for the server's log writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
