package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tollgate/tollgate/internal/policy"
)

// SignInConfig bounds console sign-in, which costs a bcrypt comparison
// (tens of milliseconds of CPU) in the process that also answers Check.
//
// Failures are counted in the store, so the limits hold across the fleet:
// N replicas together allow EmailFailures per email per EmailWindow, not
// N times as many.
type SignInConfig struct {
	// EmailFailures failed sign-ins for one email within EmailWindow
	// refuse further attempts for it (429) until the oldest leaves the
	// window. Unknown emails are counted the same way, so the limit says
	// nothing about which emails exist.
	EmailFailures int
	EmailWindow   time.Duration
	// IPFailures failed sign-ins from one client address within IPWindow
	// refuse further attempts from it.
	IPFailures int
	IPWindow   time.Duration
	// Workers is how many password hashes run at once on this replica;
	// Queue how many more may wait for one. A sign-in that finds the queue
	// full is answered 503 at once rather than queued without bound.
	Workers, Queue int
}

// DefaultSignInConfig returns the defaults documented in the README: 5
// failures per email per 15 minutes, 20 per address per minute, one
// hashing worker per two cores (at least one) and a queue of four per
// worker.
func DefaultSignInConfig() SignInConfig {
	w := max(1, runtime.NumCPU()/2)
	return SignInConfig{EmailFailures: 5, EmailWindow: 15 * time.Minute, IPFailures: 20, IPWindow: time.Minute, Workers: w, Queue: 4 * w}
}

// Validate reports the first unusable setting.
func (c SignInConfig) Validate() error {
	switch {
	case c.EmailFailures < 1 || c.EmailWindow <= 0:
		return errors.New("the sign-in failures allowed per email must be >= 1 and their window > 0")
	case c.IPFailures < 1 || c.IPWindow <= 0:
		return errors.New("the sign-in failures allowed per client address must be >= 1 and their window > 0")
	case c.Workers < 1 || c.Queue < 0:
		return errors.New("the password-hashing workers must be >= 1 and their queue >= 0")
	}
	return nil
}

// hashPool runs password hashing on at most a fixed number of goroutines at
// once, so that sign-in can never take more than its share of the CPU
// that Check needs.
type hashPool struct {
	admit   chan struct{} // workers + queue: who may wait at all
	workers chan struct{}
}

func newHashPool(workers, queue int) *hashPool {
	return &hashPool{admit: make(chan struct{}, workers+queue), workers: make(chan struct{}, workers)}
}

var errBusy = &retryLater{code: policy.EUnavailable, after: time.Second,
	msg: "sign-in is busy; try again in a moment"}

// do runs fn when a worker is free, or refuses at once when the queue is
// full.
func (p *hashPool) do(ctx context.Context, fn func()) error {
	leave, err := p.enter()
	if err != nil {
		return err
	}
	defer leave()
	return p.run(ctx, fn)
}

// enter takes a place in the pool, or refuses at once when there is none;
// leave gives it back. A sign-in enters before it spends anything else
// (the store's attempt counts), so a full pool is answered for free.
func (p *hashPool) enter() (leave func(), err error) {
	select {
	case p.admit <- struct{}{}:
		return func() { <-p.admit }, nil
	default:
		return nil, errBusy
	}
}

// run runs fn on a worker, waiting for one; the caller has entered.
func (p *hashPool) run(ctx context.Context, fn func()) error {
	select {
	case p.workers <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("wait for a hashing worker: %w", ctx.Err())
	}
	defer func() { <-p.workers }()
	fn()
	return nil
}

// limitedMemo remembers, on this replica, the keys the store found over
// their limit and until when, so that a flood of attempts on one key is
// refused without a query each. It only ever refuses what the store
// refused, for no longer than the store would; it is bounded and forgets
// everything when full (the store still has the counts).
type limitedMemo struct {
	mu    sync.Mutex
	until map[policy.SignInKey]time.Time
}

const limitedMemoSize = 10_000

func (m *limitedMemo) get(k policy.SignInKey, now time.Time) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.until[k]
	if ok && !t.After(now) {
		delete(m.until, k)
		return time.Time{}, false
	}
	return t, ok
}

func (m *limitedMemo) put(k policy.SignInKey, until time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.until == nil || len(m.until) >= limitedMemoSize {
		m.until = map[policy.SignInKey]time.Time{}
	}
	m.until[k] = until
}

func (m *limitedMemo) forget(k policy.SignInKey) {
	m.mu.Lock()
	delete(m.until, k)
	m.mu.Unlock()
}

// dummyHash is compared against when an email is unknown, so that sign-in
// takes as long either way and does not tell which emails exist. It is
// made on first use: every binary links this package, and a bcrypt at
// start-up costs each of them (and every test binary) ~50 ms.
var dummyHash = sync.OnceValue(func() []byte {
	b, _ := bcrypt.GenerateFromPassword([]byte("tollgate-no-such-user"), bcrypt.DefaultCost)
	return b
})

var errSignIn = &policy.Error{Code: policy.EUnauthorized, Message: "the email or the password is wrong"}

func (h *Handler) signIn(w http.ResponseWriter, r *http.Request, _ *principal) error {
	var body struct {
		Email    string `json:"email"`
		Password string `json:"password"`
		// AccountID picks the account when the email is a user of more
		// than one; without it, the account that added the email first.
		AccountID string `json:"account_id"`
	}
	if err := decode(r, &body); err != nil {
		return err
	}
	email := strings.ToLower(strings.TrimSpace(body.Email))
	ip := clientIP(r, h.cfg.TrustedHops)
	keys := []policy.SignInKey{{Scope: "email", Value: email}, {Scope: "ip", Value: ipString(ip)}}
	now := h.cfg.Now()
	for _, k := range keys {
		if until, ok := h.limited.get(k, now); ok {
			return tooMany(k, until.Sub(now))
		}
	}
	leave, err := h.hashes.enter()
	if err != nil {
		return err
	}
	defer leave()
	if err := h.signInAllowed(r.Context(), keys); err != nil {
		return err
	}
	var u *policy.User
	if body.AccountID != "" {
		u, err = h.db.UserByAccountEmail(r.Context(), body.AccountID, email)
	} else {
		u, err = h.db.UserByEmail(r.Context(), email)
	}
	hash := dummyHash()
	if err == nil && u.PasswordHash != "" {
		hash = []byte(u.PasswordHash)
	} else if err != nil && !errors.Is(err, policy.ErrNotFound) {
		return err
	}
	var mismatch error
	if err := h.hashes.run(r.Context(), func() { mismatch = bcrypt.CompareHashAndPassword(hash, []byte(body.Password)) }); err != nil {
		return err
	}
	if mismatch != nil || u == nil || u.PasswordHash == "" {
		return h.signInFailed(r.Context(), u, ip, keys)
	}
	if err := h.db.ClearSignInFailures(r.Context(), keys[0]); err != nil {
		return err
	}
	h.limited.forget(keys[0])
	id, csrf := randomToken(), randomToken()
	expires := h.cfg.Now().Add(h.cfg.SessionTTL)
	if err := h.db.CreateSession(r.Context(), id, policy.Session{UserID: u.ID, CSRF: csrf, ExpiresAt: expires}); err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: id, Path: "/", Expires: expires, HttpOnly: true,
		Secure: !h.cfg.InsecureCookies, SameSite: http.SameSiteStrictMode,
	})
	p := &principal{Principal: policy.Principal{AccountID: u.AccountID, UserID: u.ID, Admin: u.Role == policy.RoleAdmin}, ip: ipString(ip)}
	h.audit(r.Context(), p, "session.create", u.ID, "{}")
	writeJSON(w, http.StatusOK, map[string]any{"user": u, "csrf_token": csrf})
	return nil
}

// signInAllowed refuses an attempt while the email or the address has
// used up its failures, before any hashing is spent on it.
func (h *Handler) signInAllowed(ctx context.Context, keys []policy.SignInKey) error {
	now := h.cfg.Now()
	for _, k := range keys {
		limit, window := h.cfg.SignIn.EmailFailures, h.cfg.SignIn.EmailWindow
		if k.Scope == "ip" {
			limit, window = h.cfg.SignIn.IPFailures, h.cfg.SignIn.IPWindow
		}
		n, first, err := h.db.SignInFailures(ctx, k, now.Add(-window))
		if err != nil {
			return err
		}
		if n >= limit {
			h.limited.put(k, first.Add(window))
			return tooMany(k, first.Add(window).Sub(now))
		}
	}
	return nil
}

// signInFailed counts the failure and audits it. A known user's account
// sees it in its audit log; an unknown email is logged here only, since it
// belongs to no account, and the answer is the same either way.
func (h *Handler) signInFailed(ctx context.Context, u *policy.User, ip netip.Addr, keys []policy.SignInKey) error {
	now := h.cfg.Now()
	prune := now.Add(-max(h.cfg.SignIn.EmailWindow, h.cfg.SignIn.IPWindow))
	if err := h.db.RecordSignInFailure(ctx, now, prune, keys...); err != nil {
		return err
	}
	if u != nil {
		// The actor is unknown: whoever typed the password.
		e := policy.AuditEntry{AccountID: u.AccountID, Actor: "anonymous", Action: "session.fail", Target: u.ID, IP: ipString(ip)}
		if err := h.db.Audit(ctx, e); err != nil {
			h.log.Error("admin: audit entry lost", "action", e.Action, "target", e.Target, "err", err)
		}
	} else {
		h.log.Info("admin: failed sign-in for an unknown email", "ip", ipString(ip))
	}
	return errSignIn
}

func tooMany(k policy.SignInKey, after time.Duration) error {
	return &retryLater{code: policy.ERateLimited, after: after,
		msg: fmt.Sprintf("too many failed sign-ins for this %s; try again later", k.Scope)}
}

// retryLater is an answer that tells the client when to come back.
type retryLater struct {
	code  policy.Code
	after time.Duration
	msg   string
}

func (e *retryLater) Error() string { return e.msg }

func (e *retryLater) retryAfter() string {
	return strconv.FormatInt(max(1, int64((e.after+time.Second-1)/time.Second)), 10)
}
