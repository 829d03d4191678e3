package admin

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"

	"github.com/tollgate/tollgate/internal/manage"
	"github.com/tollgate/tollgate/internal/policy"
)

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b) // never returns an error (crypto/rand's contract)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (h *Handler) whoAmI(w http.ResponseWriter, r *http.Request, p *principal) error {
	out := map[string]any{"account_id": p.AccountID, "admin": p.Admin}
	if p.UserID != "" {
		u, err := h.db.User(r.Context(), p.UserID)
		if err != nil {
			return err
		}
		out["user"] = u
		if c, err := r.Cookie(sessionCookie); err == nil {
			if s, err := h.db.SessionByID(r.Context(), c.Value); err == nil {
				out["csrf_token"] = s.CSRF
			}
		}
	} else {
		out["token_id"] = p.TokenID
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (h *Handler) signOut(w http.ResponseWriter, r *http.Request, p *principal) error {
	if c, err := r.Cookie(sessionCookie); err == nil {
		if err := h.db.DeleteSession(r.Context(), c.Value); err != nil {
			return err
		}
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: !h.cfg.InsecureCookies, SameSite: http.SameSiteStrictMode})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) getAccount(w http.ResponseWriter, r *http.Request, p *principal) error {
	a, err := h.db.Account(r.Context(), p.AccountID)
	if err != nil {
		return err
	}
	period := h.cfg.Period.Start(h.cfg.Now())
	used, err := h.db.CreditsUsed(r.Context(), []string{a.ID}, period)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"account": a, "plan": map[bool]string{true: "premium", false: "core"}[a.Premium],
		"period": string(h.cfg.Period), "period_start": period, "credits_used": used[a.ID], "credit_quota": a.CreditQuota,
		// Whether tokens may require signed requests: their signing
		// secrets are sealed with the server's encryption key. The console
		// offers the setting only when it can work.
		"signing_available": h.cfg.Box != nil,
		// Whether publishable values made or rolled now are kept (sealed
		// with the same key), so the console can say whether a roll would
		// let a token be copied again.
		"values_kept": h.cfg.Box != nil,
	})
	return nil
}

func (h *Handler) listUsers(w http.ResponseWriter, r *http.Request, p *principal) error {
	users, err := h.svc.ListUsers(r.Context(), p.Principal, "")
	if err != nil {
		return err
	}
	if users == nil {
		users = []*policy.User{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": users})
	return nil
}

func (h *Handler) inviteUser(w http.ResponseWriter, r *http.Request, p *principal) error {
	var body struct {
		Email    string      `json:"email"`
		Role     policy.Role `json:"role"`
		Password string      `json:"password"`
	}
	if err := decode(r, &body); err != nil {
		return err
	}
	u, generated, err := h.svc.CreateUser(r.Context(), p.Principal, manage.NewUser{Email: body.Email, Role: body.Role, Password: body.Password, MakePassword: body.Password == ""})
	if err != nil {
		return err
	}
	h.audit(r.Context(), p, "user.invite", u.ID, `{"role":"`+string(u.Role)+`"}`)
	out := map[string]any{"user": u}
	if generated != "" {
		// An invitation: a first password, shown once, for the inviter to
		// pass on.
		out["password"] = generated
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (h *Handler) removeUser(w http.ResponseWriter, r *http.Request, p *principal) error {
	id := r.PathValue("id")
	if err := h.svc.DeleteUser(r.Context(), p.Principal, id); err != nil {
		return err
	}
	h.audit(r.Context(), p, "user.remove", id, "{}")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) changeRole(w http.ResponseWriter, r *http.Request, p *principal) error {
	var body struct {
		Role policy.Role `json:"role"`
	}
	if err := decode(r, &body); err != nil {
		return err
	}
	u, err := h.svc.ChangeRole(r.Context(), p.Principal, r.PathValue("id"), body.Role)
	if err != nil {
		return err
	}
	h.audit(r.Context(), p, "user.role", u.ID, `{"role":"`+string(u.Role)+`"}`)
	writeJSON(w, http.StatusOK, map[string]any{"user": u})
	return nil
}

// setPassword changes the signed-in user's password. A wrong current
// password counts as a failed sign-in, against the same limits, so that a
// session left open does not let anyone guess the password faster than
// the sign-in form would.
func (h *Handler) setPassword(w http.ResponseWriter, r *http.Request, p *principal) error {
	var body struct {
		Current string `json:"current_password"`
		New     string `json:"new_password"`
	}
	if err := decode(r, &body); err != nil {
		return err
	}
	keys := []policy.SignInKey{{Scope: "ip", Value: p.ip}}
	if p.UserID != "" {
		me, err := h.db.User(r.Context(), p.UserID)
		if err != nil {
			return err
		}
		keys = append(keys, policy.SignInKey{Scope: "email", Value: me.Email})
	}
	if err := h.signInAllowed(r.Context(), keys); err != nil {
		return err
	}
	var keep string
	if c, err := r.Cookie(sessionCookie); err == nil {
		keep = c.Value
	}
	err := h.svc.SetPassword(r.Context(), p.Principal, r.PathValue("id"), body.Current, body.New, keep)
	if errors.Is(err, manage.ErrWrongPassword) {
		now := h.cfg.Now()
		if rerr := h.db.RecordSignInFailure(r.Context(), now, now.Add(-max(h.cfg.SignIn.EmailWindow, h.cfg.SignIn.IPWindow)), keys...); rerr != nil {
			return rerr
		}
		h.audit(r.Context(), p, "user.password.fail", p.UserID, "{}")
		return err
	}
	if err != nil {
		return err
	}
	h.audit(r.Context(), p, "user.password", p.UserID, "{}")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) listAudit(w http.ResponseWriter, r *http.Request, p *principal) error {
	if !policy.CanReadAudit(p.Principal, p.AccountID) {
		return manage.ErrAdminOnly
	}
	var before int64
	if s := r.URL.Query().Get("before"); s != "" {
		var err error
		if before, err = strconv.ParseInt(s, 10, 64); err != nil || before < 1 {
			return &policy.Error{Code: policy.EInvalid, Field: "before", Message: "must be an entry id"}
		}
	}
	entries, err := h.db.ListAudit(r.Context(), p.AccountID, before, 100)
	if err != nil {
		return err
	}
	out := make([]map[string]any, len(entries))
	for i, e := range entries {
		out[i] = map[string]any{"id": e.ID, "actor": e.Actor, "action": e.Action, "target": e.Target, "ip": e.IP,
			"at": e.At, "details": jsonRaw(e.Details)}
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": out})
	return nil
}
