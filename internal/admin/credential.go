package admin

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/signing"
)

// The Tokens API holds the account's secret token to the same rules as
// Check: the request is translated into a policy.Request and the token's
// compiled policy decides it with policy.Policy.Evaluate, the function
// Check calls. Nothing here re-implements a rule; it only says what the
// API's request looks like to the policy.

var (
	errTokenConflict = &policy.Error{Code: policy.EUnauthorized, Field: "X-API-Key",
		Message: "the request carries two different tokens (Authorization: Bearer and X-API-Key); send one"}
	errNoSigningKey = &policy.Error{Code: policy.EUnavailable,
		Message: "this token requires signed requests and this server has no encryption key to check them"}
)

// bearerValue finds the token a request carries: Authorization: Bearer, or
// X-API-Key when Authorization holds a TOLLGATE-HMAC-SHA256 signature (a
// signed request cannot also carry the token in Authorization). It
// returns "" when the request carries no token at all.
func bearerValue(r *http.Request) (string, error) {
	auth := r.Header.Get("Authorization")
	keys := r.Header.Values("X-API-Key")
	if len(keys) > 1 {
		return "", errTokenConflict
	}
	key := ""
	if len(keys) == 1 {
		key = strings.TrimSpace(keys[0])
	}
	switch {
	case auth == "":
		return key, nil
	case signing.IsSigned(auth):
		if key == "" {
			return "", &policy.Error{Code: policy.EUnauthorized, Field: "X-API-Key",
				Message: "a signed request carries the secret token in X-API-Key (Authorization holds the signature)"}
		}
		return key, nil
	}
	scheme, value, _ := strings.Cut(auth, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", errUnauthenticated
	}
	value = strings.TrimSpace(value)
	if key != "" && key != value {
		return "", errTokenConflict
	}
	return value, nil
}

// authenticateToken checks a secret token the way Check would: it loads
// the token, compiles its policy and evaluates the request against it.
func (h *Handler) authenticateToken(r *http.Request, value string, ip netip.Addr) (*principal, error) {
	kind, err := policy.ParseValue(value)
	if err != nil {
		return nil, errUnauthenticated
	}
	if kind != policy.Secret {
		return nil, errPublishable
	}
	t, acc, err := h.db.TokenByHash(r.Context(), policy.HashValue(value))
	if errors.Is(err, policy.ErrNotFound) {
		return nil, errUnauthenticated
	}
	if err != nil {
		return nil, err
	}
	if t.Signed && h.cfg.Box == nil {
		return nil, errNoSigningKey
	}
	var open policy.Opener
	if h.cfg.Box != nil {
		open = h.cfg.Box.Open
	}
	pol, err := policy.Compile(t, acc, open)
	if err != nil {
		// A row validation would have refused, or a secret that does not
		// open: deny, never half-enforce.
		return nil, fmt.Errorf("compile token %s: %w", t.ID, err)
	}
	req, err := apiRequest(r, value, ip, t.Signed)
	if err != nil {
		return nil, err
	}
	// Admit, not Evaluate: an allowed signed request is remembered, so it
	// cannot be replayed to the API either.
	if d := pol.Admit(r.Context(), req, h.cfg.Now(), h.cfg.Eval); !d.Allow {
		return nil, denied(d)
	}
	return &principal{Principal: policy.Principal{AccountID: t.AccountID, TokenID: t.ID, Admin: true, Request: req}, ip: ipString(ip)}, nil
}

// denied turns Check's deny into the API's error: 401 when the caller did
// not prove who it is, 403 when the token may not be used like this. The
// message starts with Check's stable code, so a client sees the same
// reason it would see from Check.
func denied(d policy.Decision) error {
	code := policy.EForbidden
	if d.Code.Unauthenticated() {
		code = policy.EUnauthorized
	}
	return &policy.Error{Code: code, Message: string(d.Code) + ": " + d.Message}
}

// apiRequest translates an API request into what the policy decides on.
// The body is read (the API caps it at 64 KiB) and put back, only when the
// token requires signatures, since only a signature covers it.
func apiRequest(r *http.Request, value string, ip netip.Addr, signed bool) (*policy.Request, error) {
	path, query, _ := strings.Cut(r.RequestURI, "?")
	if path == "" || path[0] != '/' {
		// An absolute-form request target: what was signed is its path.
		path, query = r.URL.EscapedPath(), r.URL.RawQuery
	}
	req := &policy.Request{
		Token:         value,
		IP:            ip,
		Referer:       r.Header.Get("Referer"),
		Origin:        r.Header.Get("Origin"),
		Method:        r.Method,
		Path:          path,
		RawQuery:      query,
		Authorization: r.Header.Get("Authorization"),
		Headers:       httpHeaders{r},
	}
	// A Referer alone is a browser's mark too: servers do not send one.
	req.FromBrowser = req.Origin != "" || req.Referer != "" || r.Header.Get("Sec-Fetch-Site") != ""
	if signed && r.Body != nil && r.Body != http.NoBody {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		req.Body, req.HasBody = body, len(body) > 0
	}
	return req, nil
}

// httpHeaders reads headers as the signing scheme does: host from the
// request line or Host header, and a repeated header joined with commas.
type httpHeaders struct{ r *http.Request }

func (h httpHeaders) Get(name string) string {
	if name == "host" {
		return h.r.Host
	}
	return strings.Join(h.r.Header.Values(name), ",")
}

// clientIP is the caller's address as the API sees it: the TCP peer, or
// with hops trusted proxies in front of the API, the address the nearest
// untrusted hop was seen from, counted from the right of X-Forwarded-For
// (every line of it). When the header has fewer entries than the trusted
// hops, or an entry is not an address, the caller cannot be placed: the
// invalid address, which no IP restriction contains.
func clientIP(r *http.Request, hops int) netip.Addr {
	if hops <= 0 {
		return policy.ParseAddr(r.RemoteAddr)
	}
	return policy.ForwardedFor(r.Header.Values("X-Forwarded-For"), hops)
}

func ipString(a netip.Addr) string {
	if !a.IsValid() {
		return "unknown"
	}
	return a.String()
}
