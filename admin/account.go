package admin

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"strconv"

	"golang.org/x/crypto/bcrypt"

	"github.com/tollgate/tollgate/policy"
)

// HashPassword returns the bcrypt hash the store keeps for a password.
func HashPassword(pw string) (string, error) {
	if len(pw) < 10 || len(pw) > 72 {
		return "", &policy.Error{Code: policy.EInvalid, Field: "password", Message: "must be 10 to 72 characters"}
	}
	b, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	return string(b), err
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b) // never returns an error (crypto/rand's contract)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (h *Handler) whoAmI(w http.ResponseWriter, r *http.Request, p *principal) error {
	out := map[string]any{"account_id": p.accountID, "admin": p.admin}
	if p.userID != "" {
		u, err := h.db.User(r.Context(), p.userID)
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
		out["token_id"] = p.tokenID
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
	a, err := h.db.Account(r.Context(), p.accountID)
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
	users, err := h.db.ListUsers(r.Context(), p.accountID)
	if err != nil {
		return err
	}
	if users == nil {
		users = []*policy.User{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": users})
	return nil
}

var errAdminOnly = &policy.Error{Code: policy.EForbidden, Message: "only an admin may do this"}

func (h *Handler) inviteUser(w http.ResponseWriter, r *http.Request, p *principal) error {
	if !p.admin {
		return errAdminOnly
	}
	var body struct {
		Email    string      `json:"email"`
		Role     policy.Role `json:"role"`
		Password string      `json:"password"`
	}
	if err := decode(r, &body); err != nil {
		return err
	}
	if body.Role == "" {
		body.Role = policy.RoleMember
	}
	generated := ""
	if body.Password == "" {
		// An invitation: a first password, shown once, for the inviter to
		// pass on.
		generated = randomToken()[:20]
		body.Password = generated
	}
	var hash string
	var err error
	if perr := h.hashes.do(r.Context(), func() { hash, err = HashPassword(body.Password) }); perr != nil {
		return perr
	}
	if err != nil {
		return err
	}
	u := &policy.User{AccountID: p.accountID, Email: body.Email, Role: body.Role, PasswordHash: hash}
	if err := h.db.CreateUser(r.Context(), u); err != nil {
		return err
	}
	h.audit(r.Context(), p, "user.invite", u.ID, `{"role":"`+string(u.Role)+`"}`)
	out := map[string]any{"user": u}
	if generated != "" {
		out["password"] = generated
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (h *Handler) removeUser(w http.ResponseWriter, r *http.Request, p *principal) error {
	if !p.admin {
		return errAdminOnly
	}
	id := r.PathValue("id")
	u, err := h.db.User(r.Context(), id)
	if err != nil {
		return err
	}
	if u.AccountID != p.accountID {
		return policy.ErrNotFound
	}
	if u.ID == p.userID {
		return &policy.Error{Code: policy.EConflict, Message: "you cannot remove yourself; ask another admin"}
	}
	if err := h.db.DeleteUser(r.Context(), id); err != nil {
		return err
	}
	h.audit(r.Context(), p, "user.remove", id, "{}")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) listAudit(w http.ResponseWriter, r *http.Request, p *principal) error {
	if !p.admin {
		return errAdminOnly
	}
	var before int64
	if s := r.URL.Query().Get("before"); s != "" {
		var err error
		if before, err = strconv.ParseInt(s, 10, 64); err != nil || before < 1 {
			return &policy.Error{Code: policy.EInvalid, Field: "before", Message: "must be an entry id"}
		}
	}
	entries, err := h.db.ListAudit(r.Context(), p.accountID, before, 100)
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
