package extauthz_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/tollgate/tollgate/internal/extauthz"
	"github.com/tollgate/tollgate/internal/policy"
)

// answerCode is the code of an answer's JSON body, "" for an allow.
func answerCode(tb testing.TB, status int, body string) policy.DenyCode {
	tb.Helper()
	if status == http.StatusOK {
		return ""
	}
	var b struct {
		Error struct {
			Code policy.DenyCode `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &b); err != nil {
		tb.Fatalf("body %q: %v", body, err)
	}
	return b.Error.Code
}

// FuzzHTTPSameAsCheck is differential: the same request, sent to Check as
// Envoy's gRPC filter would and to the HTTP endpoint in each proxy's
// dialect, must reach the decider as the same policy.Request, or be
// refused by both with the same code.
func FuzzHTTPSameAsCheck(f *testing.F) {
	f.Add("GET", "/v1/prices/AAPL?token="+tokA, "", "", "https://example.com/", "198.51.100.1, 203.0.113.5", "203.0.113.9", "data", "core", uint8(1))
	f.Add("POST", "/v1/sql?q=SELECT+1&q=2", "Bearer "+tokA, tokB, "", "", "10.0.0.1", "sql", "premium", uint8(0))
	f.Add("BREW", "//v2/%2e%2e/x;y?%74oken=a&token=b", "bearer", " ", "", ",,", "::ffff:10.0.0.1", "", "gold", uint8(2))
	f.Add("HEAD", "/v2/data/sales.q1%2F..%2Fpayroll", "", tokA, "null", "not-an-ip", "", "lds", "", uint8(3))
	f.Fuzz(func(t *testing.T, method, path, authorization, apiKey, referer, xff, peer, api, tier string, hops uint8) {
		if !strings.HasPrefix(path, "/") || method == "" {
			t.Skip("every proxy sends a method and an origin-form path")
		}
		for _, s := range []string{method, path, authorization, apiKey, referer, xff, peer, api, tier} {
			if !utf8.ValidString(s) {
				t.Skip("Codec repairs such a CheckRequest before Check; tested in FuzzCodec")
			}
		}
		hdr := map[string]string{"authorization": authorization, "x-api-key": apiKey, "referer": referer, "x-forwarded-for": xff}
		ext := map[string]string{"api": api, "tier": tier}
		cfg := extauthz.Config{TrustedHops: int(hops % 4)}

		checkD := &fakeDecider{}
		check := extauthz.NewServer(checkD, cfg, discard, nil)
		hm := &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "host", RawValue: []byte("api.example.com")}}}
		for k, v := range hdr {
			if v != "" {
				hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(v)})
			}
		}
		resp, err := check.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source:            &authv3.AttributeContext_Peer{Address: sockAddr(peer)},
			Request:           &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Host: "api.example.com", HeaderMap: hm}},
			ContextExtensions: ext,
		}})
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		var want policy.DenyCode
		if d := resp.GetDeniedResponse(); d != nil {
			want = answerCode(t, 403, d.GetBody())
		}

		for _, dia := range []string{"envoy", "nginx", "forward-auth"} {
			httpD := &fakeDecider{}
			h, err := extauthz.NewServer(httpD, cfg, discard, nil).HTTPHandler(extauthz.DefaultHTTPPrefix)
			if err != nil {
				t.Fatal(err)
			}
			r := &http.Request{Method: "GET", Header: http.Header{}, Host: "api.example.com"}
			for k, v := range hdr {
				if v != "" {
					r.Header.Set(k, v)
				}
			}
			for k, v := range ext {
				r.Header.Set("X-Tollgate-"+k, v)
			}
			if peer != "" {
				r.Header.Set("X-Real-Ip", peer)
			}
			switch dia {
			case "envoy":
				r.Method, r.RequestURI = method, extauthz.DefaultHTTPPrefix+path
			case "nginx":
				r.RequestURI = extauthz.NginxPath
				r.Header.Set("X-Original-Method", method)
				r.Header.Set("X-Original-Uri", path)
			case "forward-auth":
				r.RequestURI, r.Host = extauthz.ForwardAuthPath, "proxy.internal"
				r.Header.Set("X-Forwarded-Method", method)
				r.Header.Set("X-Forwarded-Uri", path)
				r.Header.Set("X-Forwarded-Host", "api.example.com")
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			body := w.Body.String()
			if dia == "nginx" && w.Code != http.StatusOK {
				body = w.Header().Get(extauthz.HeaderBody)
			}
			if got := answerCode(t, w.Code, body); got != want {
				t.Fatalf("%s: got %q, want %q (Check's)", dia, got, want)
			}
			if len(httpD.reqs) != len(checkD.reqs) {
				t.Fatalf("%s: the decider was asked %d times, want %d", dia, len(httpD.reqs), len(checkD.reqs))
			}
			if len(checkD.reqs) == 1 {
				got, wantReq := httpD.reqs[0], checkD.reqs[0]
				got.Headers, wantReq.Headers = nil, nil
				if !reflect.DeepEqual(got, wantReq) {
					t.Fatalf("%s: got %+v, want %+v (Check's)", dia, got, wantReq)
				}
			}
		}
	})
}

// TestHTTPNginxStatuses: nginx's auth_request passes on only 2xx, 401 and
// 403, so the nginx dialect answers 401 or 403 and carries the status the
// caller must get.
func TestHTTPNginxStatuses(t *testing.T) {
	for code, want := range map[policy.DenyCode][2]int{
		policy.CodeTokenUnknown:       {401, 401},
		policy.CodeRefererDenied:      {403, 403},
		policy.CodeCreditsExhausted:   {403, 402},
		policy.CodeRateLimited:        {403, 429},
		policy.CodeRouteMisconfigured: {403, 500},
	} {
		t.Run(string(code), func(t *testing.T) {
			h, err := extauthz.NewServer(&fakeDecider{DecideFn: denyAll(code)}, extauthz.Config{AllowUnmatchedRoutes: true}, discard, nil).HTTPHandler("/authz")
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest("GET", extauthz.NginxPath, nil)
			r.Header.Set("X-Original-Method", "GET")
			r.Header.Set("X-Original-Uri", "/v1/prices?token="+tokA)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != want[0] {
				t.Errorf("status got %d, want %d", w.Code, want[0])
			}
			if got := w.Header().Get(extauthz.HeaderStatus); got != strconv.Itoa(want[1]) {
				t.Errorf("%s got %q, want %d", extauthz.HeaderStatus, got, want[1])
			}
			if got := answerCode(t, want[1], w.Header().Get(extauthz.HeaderBody)); got != code {
				t.Errorf("%s code got %q, want %q", extauthz.HeaderBody, got, code)
			}
		})
	}
}

// TestHTTPPrefix checks the Envoy path prefix is refused where it would
// shadow the other dialects or match every path.
func TestHTTPPrefix(t *testing.T) {
	for prefix, ok := range map[string]bool{"/authz": true, "/a/b": true, "/": false, "": false, "authz": false, "/authz/": false, "/nginx": false, "/forward-auth": false} {
		if err := extauthz.ValidateHTTPPrefix(prefix); (err == nil) != ok {
			t.Errorf("%q: got %v, want ok=%v", prefix, err, ok)
		}
	}
}

// TestHTTPCannotDecide: when the decider fails, the answer is a 5xx every
// proxy denies on (never a 2xx), with a JSON body; for nginx a 403 that
// carries it.
func TestHTTPCannotDecide(t *testing.T) {
	for name, tc := range map[string]struct {
		err                 error
		dialectPath, status string
		want                int
	}{
		"timeout, envoy":  {err: fmt.Errorf("store: %w", context.DeadlineExceeded), dialectPath: "/authz/v1/prices", want: 503},
		"internal, envoy": {err: errors.New("store: broken"), dialectPath: "/authz/v1/prices", want: 500},
		"timeout, nginx":  {err: fmt.Errorf("store: %w", context.DeadlineExceeded), dialectPath: extauthz.NginxPath, want: 403, status: "503"},
	} {
		t.Run(name, func(t *testing.T) {
			d := &fakeDecider{DecideFn: func(*policy.Request) (policy.Decision, error) { return policy.Decision{}, tc.err }}
			h, err := extauthz.NewServer(d, extauthz.Config{AllowUnmatchedRoutes: true}, discard, nil).HTTPHandler("/authz")
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest("GET", tc.dialectPath+"?token="+tokA, nil)
			r.Header.Set("X-Original-Method", "GET")
			r.Header.Set("X-Original-Uri", "/v1/prices?token="+tokA)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.want || w.Header().Get(extauthz.HeaderStatus) != tc.status {
				t.Errorf("got %d (%s %q), want %d (%q)", w.Code, extauthz.HeaderStatus, w.Header().Get(extauthz.HeaderStatus), tc.want, tc.status)
			}
			if got := answerCode(t, w.Code, w.Body.String()); got != "unavailable" {
				t.Errorf("code got %q, want unavailable", got)
			}
		})
	}
}
