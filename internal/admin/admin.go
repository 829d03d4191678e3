// Package admin is the Tokens API (JSON over HTTP under /v1) and the web
// console that customers use to manage their tokens. Both authenticate with
// the account's secret token (Authorization: Bearer sk_…) or a console
// session (a cookie, with a CSRF token on every change). The Check path
// shares nothing with this package but the store.
package admin

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/tollgate/tollgate/internal/manage"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/seal"
)

// Config shapes the API.
type Config struct {
	// SessionTTL is how long a console sign-in lasts.
	SessionTTL time.Duration
	// InsecureCookies drops the Secure attribute from the session cookie,
	// for a console served over plain HTTP other than on localhost.
	InsecureCookies bool
	// Box seals the signing secrets of tokens with signed requests on,
	// and publishable token values so they can be shown again; nil
	// refuses to switch signing on and shows every value only once.
	Box *seal.Box
	// Period is the credit period, for the credits used this period.
	Period policy.Period
	// Now is the clock.
	Now func() time.Time
	// Eval is the operator's choices Check decides with (secret tokens in
	// browsers, signature skew, the replay cache): the secret token is held
	// to the same rules here.
	Eval policy.EvalOptions
	// TrustedHops is how many proxies in front of this HTTP API append to
	// X-Forwarded-For; 0 takes the caller's address from the TCP peer.
	TrustedHops int
	// SignIn bounds console sign-in: attempt limits and the hashing pool.
	SignIn SignInConfig
}

// Store is what the API keeps beside the tokens and users it changes
// through manage.Service: credentials, sessions, sign-in failures, the
// audit log and usage. Lookups return policy.ErrNotFound (wrapped) for a
// missing record.
type Store interface {
	manage.Store
	// TokenByHash finds a token and its account by the hash of its value.
	TokenByHash(ctx context.Context, h policy.Hash) (*policy.Token, *policy.Account, error)
	Account(ctx context.Context, id string) (*policy.Account, error)
	UserByEmail(ctx context.Context, email string) (*policy.User, error)
	UserByAccountEmail(ctx context.Context, accountID, email string) (*policy.User, error)

	CreateSession(ctx context.Context, id string, s policy.Session) error
	// SessionByID returns a live session by its secret id.
	SessionByID(ctx context.Context, id string) (*policy.Session, error)
	DeleteSession(ctx context.Context, id string) error

	// SignInFailures counts the failures for key since a time, with the
	// time of the earliest.
	SignInFailures(ctx context.Context, key policy.SignInKey, since time.Time) (int, time.Time, error)
	RecordSignInFailure(ctx context.Context, at, prune time.Time, keys ...policy.SignInKey) error
	ClearSignInFailures(ctx context.Context, key policy.SignInKey) error

	Audit(ctx context.Context, e policy.AuditEntry) error
	ListAudit(ctx context.Context, accountID string, before int64, limit int) ([]policy.AuditEntry, error)

	// Leaks lists reported leaks of an account's tokens, newest first:
	// of one token, or of one user's ("" for every token).
	Leaks(ctx context.Context, accountID, tokenID, userID string, limit int) ([]policy.Leak, error)
	// Flags lists anomaly flags likewise, open ones only when open is set.
	Flags(ctx context.Context, accountID, tokenID, userID string, open bool, limit int) ([]policy.Flag, error)
	Flag(ctx context.Context, id int64) (*policy.Flag, error)
	ResolveFlag(ctx context.Context, id int64, by string) (*policy.Flag, error)

	// CreditsUsed returns the credits each subject used in the period.
	CreditsUsed(ctx context.Context, subjects []string, period time.Time) (map[string]int64, error)
	// Usage returns a token's daily usage between two days (YYYY-MM-DD).
	Usage(ctx context.Context, tokenID, from, to string) ([]policy.DailyUsage, error)
}

// Handler serves the API and the console.
type Handler struct {
	db  Store
	svc *manage.Service
	cfg Config
	log *slog.Logger
	mux *http.ServeMux
	// hashes runs bcrypt, for sign-ins and invitations.
	hashes *hashPool
	// limited remembers sign-in keys over their limit on this replica.
	limited limitedMemo
}

// route is one endpoint; the table is also what the OpenAPI document is
// checked against.
type route struct {
	method, path string
	public       bool // needs no principal
	handle       func(w http.ResponseWriter, r *http.Request, p *principal) error
}

// New returns the Handler.
func New(db Store, cfg Config, log *slog.Logger) *Handler {
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Period == "" {
		cfg.Period = policy.PeriodMonth
	}
	if cfg.SignIn == (SignInConfig{}) {
		cfg.SignIn = DefaultSignInConfig()
	}
	h := &Handler{db: db, cfg: cfg, log: log, mux: http.NewServeMux(), hashes: newHashPool(cfg.SignIn.Workers, cfg.SignIn.Queue)}
	h.svc = manage.New(db, manage.Config{Box: cfg.Box, Now: cfg.Now, Eval: cfg.Eval, Hash: h.hashes.do})
	for _, rt := range h.routes() {
		h.mux.HandleFunc(rt.method+" "+rt.path, h.wrap(rt))
	}
	h.mux.Handle("GET /console/", consoleHandler())
	h.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/console/", http.StatusFound)
	})
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) routes() []route {
	return append([]route{
		{method: "POST", path: "/v1/session", public: true, handle: h.signIn},
		{method: "GET", path: "/v1/session", handle: h.whoAmI},
		{method: "DELETE", path: "/v1/session", handle: h.signOut},
		{method: "GET", path: "/v1/tokens", handle: h.listTokens},
		{method: "POST", path: "/v1/tokens", handle: h.createToken},
		{method: "GET", path: "/v1/tokens/{id}", handle: h.getToken},
		{method: "PATCH", path: "/v1/tokens/{id}", handle: h.patchToken},
		{method: "DELETE", path: "/v1/tokens/{id}", handle: h.deleteToken},
		{method: "POST", path: "/v1/tokens/{id}/roll", handle: h.rollToken},
		{method: "GET", path: "/v1/tokens/{id}/usage", handle: h.tokenUsage},
		{method: "GET", path: "/v1/tokens/{id}/value", handle: h.revealToken},
		{method: "GET", path: "/v1/account", handle: h.getAccount},
		{method: "GET", path: "/v1/users", handle: h.listUsers},
		{method: "POST", path: "/v1/users", handle: h.inviteUser},
		{method: "DELETE", path: "/v1/users/{id}", handle: h.removeUser},
		{method: "PATCH", path: "/v1/users/{id}", handle: h.changeRole},
		{method: "PUT", path: "/v1/users/{id}/password", handle: h.setPassword},
		{method: "GET", path: "/v1/audit", handle: h.listAudit},
		{method: "GET", path: "/v1/openapi.json", public: true, handle: serveOpenAPI},
		// CARTO's Tokens API: public to wrap only because cartoRoute
		// authenticates itself, to answer failures in CARTO's shape.
		{method: "GET", path: "/v3/tokens", public: true, handle: h.cartoRoute(h.cartoList)},
		{method: "POST", path: "/v3/tokens", public: true, handle: h.cartoRoute(h.cartoCreate)},
		{method: "GET", path: "/v3/tokens/{token}", public: true, handle: h.cartoRoute(h.cartoGet)},
		{method: "PATCH", path: "/v3/tokens/{token}", public: true, handle: h.cartoRoute(h.cartoUpdate)},
		{method: "DELETE", path: "/v3/tokens/{token}", public: true, handle: h.cartoRoute(h.cartoDelete)},
	}, h.alertRoutes()...)
}

// principal is who a request acts for, and from where (for the audit log).
type principal struct {
	policy.Principal
	ip string
}

func (p *principal) actor() string {
	if p.UserID != "" {
		return p.UserID
	}
	return p.TokenID
}

const (
	sessionCookie = "tollgate_session"
	csrfHeader    = "X-CSRF-Token"
	maxBody       = 64 << 10
)

func (h *Handler) wrap(rt route) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		var p *principal
		if !rt.public {
			var err error
			if p, err = h.authenticate(r); err != nil {
				writeError(w, h.log, err)
				return
			}
		}
		if err := rt.handle(w, r, p); err != nil {
			writeError(w, h.log, err)
		}
	}
}

var (
	errUnauthenticated = &policy.Error{Code: policy.EUnauthorized, Message: "sign in, or send the account's secret token as Authorization: Bearer sk_…"}
	errPublishable     = &policy.Error{Code: policy.EForbidden, Message: "publishable tokens never authenticate this API: use the account's secret token"}
	errCSRF            = &policy.Error{Code: policy.EForbidden, Field: csrfHeader, Message: "a change from a console session needs the session's CSRF token in the " + csrfHeader + " header"}
)

// authenticate finds the principal: the account's secret token, or a
// console session (whose changes must carry its CSRF token).
func (h *Handler) authenticate(r *http.Request) (*principal, error) {
	ip := clientIP(r, h.cfg.TrustedHops)
	value, err := bearerValue(r)
	if err != nil {
		return nil, err
	}
	if value != "" {
		return h.authenticateToken(r, value, ip)
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil, errUnauthenticated
	}
	s, err := h.db.SessionByID(r.Context(), c.Value)
	if errors.Is(err, policy.ErrNotFound) {
		return nil, errUnauthenticated
	}
	if err != nil {
		return nil, err
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead &&
		subtle.ConstantTimeCompare([]byte(r.Header.Get(csrfHeader)), []byte(s.CSRF)) != 1 {
		return nil, errCSRF
	}
	u, err := h.db.User(r.Context(), s.UserID)
	if err != nil {
		if errors.Is(err, policy.ErrNotFound) {
			return nil, errUnauthenticated
		}
		return nil, err
	}
	return &principal{Principal: policy.Principal{AccountID: u.AccountID, UserID: u.ID, Admin: u.Role == policy.RoleAdmin}, ip: ipString(ip)}, nil
}

// audit records a change; a failure to record is logged, not returned:
// the change itself has happened.
func (h *Handler) audit(ctx context.Context, p *principal, action, target, details string) {
	err := h.db.Audit(ctx, policy.AuditEntry{AccountID: p.AccountID, Actor: p.actor(), Action: action, Target: target, IP: p.ip, Details: details})
	if err != nil {
		h.log.Error("admin: audit entry lost", "action", action, "target", target, "err", err)
	}
}
