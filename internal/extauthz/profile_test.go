package extauthz_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/tollgate/tollgate/internal/extauthz"
	"github.com/tollgate/tollgate/internal/policy"
)

// iexWant is the IEX profile's documented table (docs/responses.md):
// every deny code's status and plain-text message.
var iexWant = map[policy.DenyCode]struct {
	status int
	msg    string
}{
	policy.CodeTokenMissing:         {401, "An API key is required to access the requested endpoint."},
	policy.CodeTokenMalformed:       {403, "The API key provided is not valid."},
	policy.CodeTokenUnknown:         {403, "The API key provided is not valid."},
	policy.CodeTokenDisabled:        {403, "The provided API token has been disabled"},
	policy.CodeTokenExpired:         {403, "The provided API token has expired."},
	policy.CodeTokenConflict:        {401, "More than one API token was provided. Send one."},
	policy.CodeSecretTokenInBrowser: {403, "A secret API token may not be used from a browser. Use a publishable token."},
	policy.CodeIPDenied:             {401, "The request's IP address is not allowed due to API token restrictions."},
	policy.CodeRefererDenied:        {401, "The referer in the request header is not allowed. Please check the associated domain(s) for this API key"},
	policy.CodeAPIDenied:            {401, "The requested data is marked restricted and the account does not have access."},
	policy.CodeDatasetDenied:        {401, "The requested data is marked restricted and the account does not have access."},
	policy.CodeSourceDenied:         {401, "The requested data is marked restricted and the account does not have access."},
	policy.CodeSourceUnseen:         {403, "The query must be sent in the q parameter of a GET request."},
	policy.CodeTierDenied:           {402, "The requested data is not available to your current tier."},
	policy.CodeCreditsExhausted:     {402, "You have exceeded your allotted message quota and pay-as-you-go is not enabled."},
	policy.CodeQuotaExhausted:       {402, "You have exceeded your allotted message quota and pay-as-you-go is not enabled."},
	policy.CodeRateLimited:          {429, "Too many requests hit the API too quickly. An exponential backoff of your requests is recommended."},
	policy.CodeSignatureRequired:    {401, "Hashed token authorization is required"},
	policy.CodeSignatureInvalid:     {403, "Hashed token authorization is invalid."},
	policy.CodeSignatureExpired:     {403, "The signed request's date is too far from the server's time. Sign it again."},
	policy.CodeSignatureReplayed:    {403, "This signed request was already used. Sign each request once."},
	policy.CodeReplayUnverifiable:   {429, "Too many signed requests to verify now. Retry later with a newly signed request."},
	policy.CodeRouteUnmatched:       {403, "No route is configured for the requested endpoint."},
	policy.CodeRouteMisconfigured:   {500, "Something went wrong on the server. Retry later."},
	policy.CodeMethodUnknown:        {400, "Invalid values were supplied for the API request"},
	policy.CodePathInvalid:          {400, "Invalid values were supplied for the API request"},
	policy.CodeQueryInvalid:         {400, "Invalid values were supplied for the API request"},
	policy.CodeParamRepeated:        {400, "Invalid values were supplied for the API request"},
	policy.CodeRequestInvalid:       {400, "Invalid values were supplied for the API request"},
}

// TestIEXAnswers: the IEX profile's table names every deny code, with a
// status the shipped nginx config can hand on and a message that fits in
// one header line. A code added to policy without an entry fails here.
func TestIEXAnswers(t *testing.T) {
	nginxStatuses := map[int]bool{400: true, 401: true, 402: true, 403: true, 429: true, 500: true}
	for _, c := range policy.DenyCodes() {
		status, msg, ok := extauthz.IEXAnswer(c)
		if !ok {
			t.Errorf("deny code %q has no answer in the IEX profile", c)
			continue
		}
		if !nginxStatuses[status] {
			t.Errorf("%s: status %d is not one nginx.conf's @tollgate_denied answers with", c, status)
		}
		if msg == "" || strings.IndexFunc(msg, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
			t.Errorf("%s: message %q is not one line of printable text", c, msg)
		}
		if _, ok := iexWant[c]; !ok {
			t.Errorf("deny code %q is missing from this test's table (and docs/responses.md)", c)
		}
	}
	if len(iexWant) != len(policy.DenyCodes()) {
		t.Errorf("the table names %d codes, DenyCodes %d", len(iexWant), len(policy.DenyCodes()))
	}
}

// answer is a deny or an allow as the caller of either front end sees it.
type answer struct {
	status      int
	contentType string
	body        string
	header      http.Header // the headers for the caller
}

// askCheck runs Check and reads its answer as Envoy would hand it on.
func askCheck(tb testing.TB, s *extauthz.Server, r httpReq) answer {
	tb.Helper()
	resp, err := s.Check(context.Background(), r.check())
	if err != nil {
		tb.Fatalf("Check: %v", err)
	}
	a := answer{status: http.StatusOK, header: http.Header{}}
	if d := resp.GetDeniedResponse(); d != nil {
		a.status, a.body = int(d.GetStatus().GetCode()), d.GetBody()
		for _, h := range d.GetHeaders() {
			a.header.Set(h.GetHeader().GetKey(), h.GetHeader().GetValue())
		}
	} else {
		for _, h := range resp.GetOkResponse().GetResponseHeadersToAdd() {
			a.header.Set(h.GetHeader().GetKey(), h.GetHeader().GetValue())
		}
	}
	a.contentType = a.header.Get("Content-Type")
	return a
}

// askHTTP sends r to the HTTP endpoint as the proxy of dialect dia would,
// and reads the answer; for nginx, the status and body meant for the
// client from the headers that carry them.
func askHTTP(tb testing.TB, s *extauthz.Server, dia string, r httpReq) answer {
	tb.Helper()
	h, err := s.HTTPHandler(extauthz.DefaultHTTPPrefix)
	if err != nil {
		tb.Fatal(err)
	}
	req := httptest.NewRequest("GET", extauthz.DefaultHTTPPrefix+r.path, nil)
	switch dia {
	case "nginx":
		req = httptest.NewRequest("GET", extauthz.NginxPath, nil)
		req.Header.Set("X-Original-Method", "GET")
		req.Header.Set("X-Original-Uri", r.path)
	case "forward-auth":
		req = httptest.NewRequest("GET", extauthz.ForwardAuthPath, nil)
		req.Header.Set("X-Forwarded-Method", "GET")
		req.Header.Set("X-Forwarded-Uri", r.path)
		req.Header.Set("X-Forwarded-Host", "api.example.com")
	}
	for k, v := range r.headers {
		req.Header.Set(k, v)
	}
	for k, v := range r.ext {
		req.Header.Set("X-Tollgate-"+k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	a := answer{status: w.Code, contentType: w.Header().Get("Content-Type"), body: w.Body.String(), header: w.Header()}
	if dia == "nginx" && w.Code != http.StatusOK {
		if w.Code != http.StatusUnauthorized && w.Code != http.StatusForbidden {
			tb.Fatalf("nginx: status %d, want 401 or 403", w.Code)
		}
		a.status, _ = strconv.Atoi(w.Header().Get(extauthz.HeaderStatus))
		a.body = w.Header().Get(extauthz.HeaderBody)
	}
	return a
}

// askAll asks Check and the HTTP endpoint in each dialect, by name.
func askAll(tb testing.TB, s *extauthz.Server, r httpReq) map[string]answer {
	tb.Helper()
	out := map[string]answer{"check": askCheck(tb, s, r)}
	for _, dia := range []string{"envoy", "nginx", "forward-auth"} {
		out[dia] = askHTTP(tb, s, dia, r)
	}
	return out
}

// TestIEXProfileDenies: with --response-profile iex, every deny code is
// answered by both front ends with the IEX status and plain-text message
// of the table; with the default profile, with Tollgate's JSON and
// DenyStatus. A code no table knows is a 403, never a crash.
func TestIEXProfileDenies(t *testing.T) {
	codes := append(policy.DenyCodes(), "code_from_the_future")
	for _, code := range codes {
		t.Run(string(code), func(t *testing.T) {
			deny := func(*policy.Request) (policy.Decision, error) {
				return policy.Decision{Code: code, Message: "denied by the fake",
					Usage: policy.Usage{Metered: true, Used: 10, Limit: 10, RateRPS: 1, RateBurst: 1, RetryAfter: 1500 * time.Millisecond}}, nil
			}
			r := httpReq{path: "/v1/prices?token=" + tokA}
			iex := extauthz.NewServer(&fakeDecider{DecideFn: deny},
				extauthz.Config{AllowUnmatchedRoutes: true, ResponseProfile: extauthz.ProfileIEX}, discard, nil)
			want, ok := iexWant[code]
			if !ok {
				want.status, want.msg = 403, "Forbidden"
			}
			for via, a := range askAll(t, iex, r) {
				if a.status != want.status || a.body != want.msg {
					t.Errorf("iex, %s: got %d %q, want %d %q", via, a.status, a.body, want.status, want.msg)
				}
				if !strings.HasPrefix(a.contentType, "text/plain") {
					t.Errorf("iex, %s: content type %q, want text/plain", via, a.contentType)
				}
				if want.status == 429 && a.header.Get("Retry-After") != "2" {
					t.Errorf("iex, %s: Retry-After %q, want 2", via, a.header.Get("Retry-After"))
				}
			}

			def := extauthz.NewServer(&fakeDecider{DecideFn: deny}, extauthz.Config{AllowUnmatchedRoutes: true}, discard, nil)
			for via, a := range askAll(t, def, r) {
				if a.status != extauthz.DenyStatus(code) || a.contentType != "application/json" {
					t.Errorf("tollgate, %s: got %d %q, want %d application/json", via, a.status, a.contentType, extauthz.DenyStatus(code))
				}
				if got := answerCode(t, a.status, a.body); got != code {
					t.Errorf("tollgate, %s: code got %q, want %q", via, got, code)
				}
			}
		})
	}
}

// TestIEXProfileUsageHeaders: an allowed request's cost goes out under
// IEX's names (its premium names for premium data) in the IEX profile,
// under Tollgate's in the default one; the period's totals keep
// Tollgate's names; the identity for the upstream is the same.
func TestIEXProfileUsageHeaders(t *testing.T) {
	allow := func(req *policy.Request) (policy.Decision, error) {
		return policy.Decision{Allow: true, TokenID: "tok_fake", AccountID: "acc_fake", Kind: policy.Publishable, Cost: 7,
			Usage: policy.Usage{Metered: true, Used: 30, Limit: 100}}, nil
	}
	all := []string{"x-credits-used", "x-credits-cost", "x-credits-limit", "x-credits-remaining",
		"iexcloud-messages-used", "iexcloud-credits-used", "iexcloud-premium-messages-used", "iexcloud-premium-credits-used"}
	for name, tc := range map[string]struct {
		profile extauthz.ResponseProfile
		tier    string
		want    map[string]string // every header of all not named here must be absent
	}{
		"tollgate, core": {extauthz.ProfileTollgate, "core",
			map[string]string{"x-credits-used": "30", "x-credits-cost": "7", "x-credits-limit": "100", "x-credits-remaining": "70"}},
		"iex, no tier": {extauthz.ProfileIEX, "",
			map[string]string{"x-credits-used": "30", "x-credits-limit": "100", "x-credits-remaining": "70",
				"iexcloud-messages-used": "7", "iexcloud-credits-used": "7"}},
		"iex, core": {extauthz.ProfileIEX, "core",
			map[string]string{"x-credits-used": "30", "x-credits-limit": "100", "x-credits-remaining": "70",
				"iexcloud-messages-used": "7", "iexcloud-credits-used": "7"}},
		"iex, premium": {extauthz.ProfileIEX, "premium",
			map[string]string{"x-credits-used": "30", "x-credits-limit": "100", "x-credits-remaining": "70",
				"iexcloud-premium-messages-used": "7", "iexcloud-premium-credits-used": "7"}},
	} {
		t.Run(name, func(t *testing.T) {
			s := extauthz.NewServer(&fakeDecider{DecideFn: allow},
				extauthz.Config{AllowUnmatchedRoutes: true, ResponseProfile: tc.profile}, discard, nil)
			r := httpReq{path: "/v1/prices?token=" + tokA, ext: map[string]string{"api": "data", "tier": tc.tier}}
			for via, a := range askAll(t, s, r) {
				if a.status != http.StatusOK {
					t.Fatalf("%s: status %d, want 200", via, a.status)
				}
				for _, h := range all {
					if got := a.header.Get(h); got != tc.want[h] {
						t.Errorf("%s: %s got %q, want %q", via, h, got, tc.want[h])
					}
				}
			}
			resp, err := s.Check(context.Background(), r.check())
			if err != nil {
				t.Fatal(err)
			}
			if got := upstreamHeader(resp, extauthz.HeaderTokenID); got != "tok_fake" {
				t.Errorf("upstream %s got %q, want tok_fake", extauthz.HeaderTokenID, got)
			}
		})
	}
}

func upstreamHeader(resp *authv3.CheckResponse, name string) string {
	for _, h := range resp.GetOkResponse().GetHeaders() {
		if h.GetHeader().GetKey() == name {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

// TestIEXProfileCannotDecide: when Tollgate cannot decide, the HTTP
// endpoint's 5xx speaks the profile too.
func TestIEXProfileCannotDecide(t *testing.T) {
	fail := func(*policy.Request) (policy.Decision, error) { return policy.Decision{}, context.DeadlineExceeded }
	s := extauthz.NewServer(&fakeDecider{DecideFn: fail},
		extauthz.Config{AllowUnmatchedRoutes: true, ResponseProfile: extauthz.ProfileIEX}, discard, nil)
	for _, dia := range []string{"envoy", "nginx", "forward-auth"} {
		a := askHTTP(t, s, dia, httpReq{path: "/v1/prices?token=" + tokA})
		if a.status != 503 || a.body != "Something went wrong on the server. Retry later." || !strings.HasPrefix(a.contentType, "text/plain") {
			t.Errorf("%s: got %d %q %q, want 503 text/plain", dia, a.status, a.contentType, a.body)
		}
	}
}

func TestParseResponseProfile(t *testing.T) {
	for s, want := range map[string]extauthz.ResponseProfile{"": extauthz.ProfileTollgate, "tollgate": extauthz.ProfileTollgate, "iex": extauthz.ProfileIEX} {
		got, err := extauthz.ParseResponseProfile(s)
		if err != nil || got != want {
			t.Errorf("%q: got %v, %v, want %v", s, got, err, want)
		}
		if s != "" && got.String() != s {
			t.Errorf("%q: String() got %q", s, got.String())
		}
	}
	for _, s := range []string{"IEX", "carto", "json"} {
		if _, err := extauthz.ParseResponseProfile(s); err == nil {
			t.Errorf("%q: got no error", s)
		}
	}
}

// TestResponsesDocMatches: docs/responses.md's table of deny codes is the
// code's, row by row, for both profiles, and names every code.
func TestResponsesDocMatches(t *testing.T) {
	doc, err := os.ReadFile("../../docs/responses.md")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[policy.DenyCode]bool{}
	for _, line := range strings.Split(string(doc), "\n") {
		cells := strings.Split(line, " | ")
		if len(cells) != 5 || !strings.HasPrefix(cells[0], "| `") {
			continue
		}
		code := policy.DenyCode(strings.Trim(cells[0], "| `"))
		seen[code] = true
		status, msg, ok := extauthz.IEXAnswer(code)
		if !ok {
			t.Errorf("docs/responses.md names %q, which the IEX table does not", code)
			continue
		}
		if got := cells[1]; got != strconv.Itoa(extauthz.DenyStatus(code)) {
			t.Errorf("%s: the doc's tollgate status %s, the code's %d", code, got, extauthz.DenyStatus(code))
		}
		if got := cells[2]; got != strconv.Itoa(status) {
			t.Errorf("%s: the doc's iex status %s, the code's %d", code, got, status)
		}
		if got := cells[3]; got != msg {
			t.Errorf("%s: the doc's iex message %q, the code's %q", code, got, msg)
		}
	}
	for _, c := range policy.DenyCodes() {
		if !seen[c] {
			t.Errorf("docs/responses.md has no row for %q", c)
		}
	}
}

// TestRateLimitedWithoutRate: a rate_limited refusal that names no rate
// (a limiter that sets only RetryAfter) is still a 429 from both front
// ends in both profiles; it used to divide by zero building the
// RateLimit-Policy header.
func TestRateLimitedWithoutRate(t *testing.T) {
	deny := func(*policy.Request) (policy.Decision, error) {
		return policy.Decision{Code: policy.CodeRateLimited, Message: "slow down",
			Usage: policy.Usage{Metered: true, RetryAfter: time.Second}}, nil
	}
	for _, prof := range []extauthz.ResponseProfile{extauthz.ProfileTollgate, extauthz.ProfileIEX} {
		s := extauthz.NewServer(&fakeDecider{DecideFn: deny},
			extauthz.Config{AllowUnmatchedRoutes: true, ResponseProfile: prof}, discard, nil)
		for via, a := range askAll(t, s, httpReq{path: "/v1/prices?token=" + tokA}) {
			if a.status != 429 || a.header.Get("Retry-After") != "1" {
				t.Errorf("profile %v, %s: got %d Retry-After %q, want 429 and 1", prof, via, a.status, a.header.Get("Retry-After"))
			}
		}
	}
}
