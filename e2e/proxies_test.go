package e2e_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
)

// The addresses the shipped proxy configs name, replaced by free ports.
const (
	shippedAuthz    = "127.0.0.1:9192"
	shippedUpstream = "127.0.0.1:8000"
	shippedListen   = "8080"
)

// upstream is the protected API: it answers 200 and remembers what each
// request brought, as the proxy forwarded it.
type upstream struct {
	addr string
	mu   sync.Mutex
	seen []seenRequest
}

type seenRequest struct {
	uri    string
	header http.Header
}

func startUpstream(tb testing.TB) *upstream {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	u := &upstream{addr: l.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, seenRequest{uri: r.RequestURI, header: r.Header.Clone()})
		u.mu.Unlock()
		io.WriteString(w, "upstream ok")
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	tb.Cleanup(func() { srv.Close() })
	return u
}

// last returns the latest request the upstream saw, and how many it saw.
func (u *upstream) last() (seenRequest, int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		return seenRequest{}, 0
	}
	return u.seen[len(u.seen)-1], len(u.seen)
}

// proxyCase is one request through a proxy and what the caller must see.
type proxyCase struct {
	name   string
	path   string
	header map[string]string
	// status and code are what the caller gets; code "" is an allow.
	status int
	code   policy.DenyCode
	// token is the value that must not reach the upstream ("" to skip).
	token string
	// tokenID is the token the upstream must be told of, on an allow.
	tokenID string
}

// TestProxies sends real requests through real nginx and Caddy, each run
// with the shipped config in front of an upstream and a real tollgate.
func TestProxies(t *testing.T) {
	t.Parallel()
	eachProxy(t, testProxy)
}

// eachProxy runs test as a subtest for nginx and for Caddy.
func eachProxy(t *testing.T, test func(t *testing.T, proxy string)) {
	for _, proxy := range []string{"nginx", "caddy"} {
		t.Run(proxy, func(t *testing.T) {
			if _, err := exec.LookPath(proxy); err != nil {
				t.Skipf("%s is not installed (bash .ci/proxies.sh installs it)", proxy)
			}
			test(t, proxy)
		})
	}
}

func testProxy(t *testing.T, proxy string) {
	db, dbURL := MustOpenDB(t)
	acc := MustCreateAccount(t, db, "Proxy Co", false)
	// The shipped configs protect the dataset "prices".
	token := func(edit func(*policy.Token)) (*policy.Token, string) {
		return MustCreateToken(t, db, acc.ID, func(tok *policy.Token) {
			tok.Datasets = map[string]policy.Actions{"prices": policy.Actions(policy.Read)}
			edit(tok)
		})
	}
	basic, basicV := token(func(*policy.Token) {})
	_, domainV := token(func(tok *policy.Token) { tok.Domains = []string{"app.example.com"} })
	credit, creditV := token(func(tok *policy.Token) { tok.CreditLimit = ptrTo[int64](1) })
	rate, rateV := token(func(tok *policy.Token) { tok.RateLimit = &policy.RateLimit{RPS: 1, Burst: 1} })

	authzAddr := freeAddr(t)
	startReplica(t, "tollgate", dbURL, "--authz-http-addr", authzAddr)
	up := startUpstream(t)
	listen := freeAddr(t)
	switch proxy {
	case "nginx":
		startNginx(t, authzAddr, up.addr, listen)
	case "caddy":
		startCaddy(t, authzAddr, up.addr, listen)
	}

	cases := []proxyCase{
		{name: "token in the query", path: "/v1/prices/AAPL?token=" + basicV, status: 200, tokenID: basic.ID},
		{name: "token in X-Api-Key", path: "/v1/prices/AAPL", header: map[string]string{"X-Api-Key": basicV}, status: 200, token: basicV, tokenID: basic.ID},
		{name: "token as Bearer", path: "/v1/prices/AAPL", header: map[string]string{"Authorization": "Bearer " + basicV}, status: 200, token: basicV, tokenID: basic.ID},
		{name: "caller's identity and route headers", path: "/v1/prices/AAPL", status: 200, token: basicV, tokenID: basic.ID, header: map[string]string{
			"X-Api-Key": basicV, "X-Tollgate-Token-Id": "tk_forged", "X-Tollgate-Account-Id": "acct_forged", "X-Tollgate-Tier": "premium"}},
		{name: "bad Referer", path: "/v1/prices/AAPL", header: map[string]string{"X-Api-Key": domainV, "Referer": "https://evil.example/"}, status: 403, code: policy.CodeRefererDenied},
		{name: "unknown token", path: "/v1/prices/AAPL?token=" + unknownToken(), status: 401, code: policy.CodeTokenUnknown},
		{name: "credit limit, first", path: "/v1/prices/AAPL", header: map[string]string{"X-Api-Key": creditV}, status: 200, token: creditV, tokenID: credit.ID},
		{name: "credit limit, spent", path: "/v1/prices/AAPL", header: map[string]string{"X-Api-Key": creditV}, status: 402, code: policy.CodeCreditsExhausted},
		{name: "rate limit, first", path: "/v1/prices/AAPL", header: map[string]string{"X-Api-Key": rateV}, status: 200, token: rateV, tokenID: rate.ID},
		{name: "rate limit, second", path: "/v1/prices/AAPL", header: map[string]string{"X-Api-Key": rateV}, status: 429, code: policy.CodeRateLimited},
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for _, tc := range cases {
		_, before := up.last()
		req, err := http.NewRequest("GET", "http://"+listen+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range tc.header {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status got %d, want %d (body %s, headers %v)", tc.name, resp.StatusCode, tc.status, body, resp.Header)
			continue
		}
		seen, after := up.last()
		if tc.code != "" {
			checkProxyDeny(t, tc, resp, body)
			if after != before {
				t.Errorf("%s: a denied request reached the upstream", tc.name)
			}
			continue
		}
		if string(body) != "upstream ok" || after != before+1 {
			t.Errorf("%s: got body %q and %d upstream requests, want the upstream's answer once", tc.name, body, after-before)
			continue
		}
		if got := seen.header.Get("X-Tollgate-Token-Id"); got != tc.tokenID {
			t.Errorf("%s: upstream's X-Tollgate-Token-Id got %q, want %q", tc.name, got, tc.tokenID)
		}
		if got := seen.header.Get("X-Tollgate-Account-Id"); got != acc.ID {
			t.Errorf("%s: upstream's X-Tollgate-Account-Id got %q, want %q", tc.name, got, acc.ID)
		}
		if got := resp.Header.Get("X-Credits-Used"); got == "" {
			t.Errorf("%s: no X-Credits-Used for the caller (headers %v)", tc.name, resp.Header)
		}
		if v := seen.header.Get("X-Credits-Used"); v != "" {
			t.Errorf("%s: the upstream got the caller's credit headers (%q)", tc.name, v)
		}
		if tc.token == "" {
			continue
		}
		for k, vs := range seen.header {
			for _, v := range vs {
				if strings.Contains(v, tc.token) {
					t.Errorf("%s: the token reached the upstream in %s", tc.name, k)
				}
			}
		}
		if strings.Contains(seen.uri, tc.token) {
			t.Errorf("%s: the token reached the upstream in %s", tc.name, seen.uri)
		}
	}
}

// checkProxyDeny checks a deny as the caller sees it: Tollgate's JSON body
// and the headers its status calls for.
func checkProxyDeny(t *testing.T, tc proxyCase, resp *http.Response, body []byte) {
	t.Helper()
	var b struct {
		Error struct {
			Code    policy.DenyCode `json:"code"`
			Message string          `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		t.Errorf("%s: body %q is not Tollgate's JSON: %v", tc.name, body, err)
		return
	}
	if b.Error.Code != tc.code || b.Error.Message == "" {
		t.Errorf("%s: code got %q (%q), want %q", tc.name, b.Error.Code, b.Error.Message, tc.code)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type got %q, want application/json", tc.name, ct)
	}
	checkDenyHeaders(t, tc.name, tc.status, resp.Header)
	switch tc.status {
	case http.StatusPaymentRequired:
		if resp.Header.Get("X-Credits-Remaining") != "0" || resp.Header.Get("X-Credits-Limit") != "1" {
			t.Errorf("%s: credit headers got %v, want limit 1 and 0 remaining", tc.name, resp.Header)
		}
	}
}

// shippedConfig reads a file of proxies/ with the shipped addresses
// replaced by the test's.
func shippedConfig(tb testing.TB, name, authz, up, listen string) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "proxies", name))
	if err != nil {
		tb.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(listen)
	s := strings.NewReplacer(shippedAuthz, authz, shippedUpstream, up,
		"127.0.0.1:"+shippedListen, listen, ":"+shippedListen+" {", ":"+port+" {").Replace(string(b))
	if s == string(b) && name != "tollgate-protect.conf" {
		tb.Fatalf("%s: no shipped address to replace", name)
	}
	return s
}

// startNginx runs nginx in the foreground with the shipped config in a
// temporary prefix.
func startNginx(tb testing.TB, authz, up, listen string) {
	tb.Helper()
	dir := tb.TempDir()
	for _, name := range []string{"nginx.conf", "tollgate-protect.conf"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(shippedConfig(tb, name, authz, up, listen)), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	startProxy(tb, listen, "nginx", "-p", dir+"/", "-c", filepath.Join(dir, "nginx.conf"), "-e", "stderr", "-g", "daemon off;")
}

// startCaddy runs caddy with the shipped Caddyfile, its state in a
// temporary directory.
func startCaddy(tb testing.TB, authz, up, listen string) {
	tb.Helper()
	dir := tb.TempDir()
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(shippedConfig(tb, "Caddyfile", authz, up, listen)), 0o644); err != nil {
		tb.Fatal(err)
	}
	startProxy(tb, listen, "caddy", "run", "--config", path, "--adapter", "caddyfile")
}

// startProxy starts a proxy process, stops it when tb ends, and waits
// until it accepts connections on listen.
func startProxy(tb testing.TB, listen, name string, args ...string) {
	tb.Helper()
	out := &syncBuffer{}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+tb.TempDir(), "XDG_CONFIG_HOME="+tb.TempDir())
	// nginx's workers hold the output pipe: should one outlive its master,
	// Wait must not wait for it forever.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	tb.Cleanup(func() {
		// SIGTERM: nginx's master stops its workers, where SIGKILL would
		// leave them running.
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if tb.Failed() {
			tb.Logf("--- %s output ---\n%s", name, out.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", listen, time.Second); err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			tb.Fatalf("%s exited before it listened:\n%s", name, out.String())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s not listening on %s after 20s:\n%s", name, listen, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkDenyHeaders checks what a deny of status must tell the caller
// whichever response profile answered: a 401's Bearer challenge, a 429's
// Retry-After and the limit's state (as the README promises).
func checkDenyHeaders(t *testing.T, name string, status int, h http.Header) {
	t.Helper()
	switch status {
	case http.StatusUnauthorized:
		if v := h.Values("Www-Authenticate"); len(v) != 1 || !strings.HasPrefix(v[0], "Bearer ") {
			t.Errorf("%s: WWW-Authenticate got %q, want one Bearer challenge", name, v)
		}
	case http.StatusTooManyRequests:
		if h.Get("Retry-After") == "" {
			t.Errorf("%s: no Retry-After (headers %v)", name, h)
		}
		if h.Get("RateLimit") == "" || h.Get("RateLimit-Policy") == "" {
			t.Errorf("%s: no RateLimit or RateLimit-Policy (headers %v)", name, h)
		}
	}
}
