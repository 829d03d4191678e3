package admin

import (
	"crypto/rand"
	"encoding/base64"
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
