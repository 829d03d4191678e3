package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/tollgate/tollgate/policy"
)

// apiToken is a token as the API shows it. The value appears only in the
// answers to create and roll; a signing secret only when one is made.
type apiToken struct {
	*policy.Token
	CreditsUsed   int64  `json:"credits_used"`
	Value         string `json:"token,omitempty"`
	SigningSecret string `json:"signing_secret,omitempty"`
}

func (h *Handler) listTokens(w http.ResponseWriter, r *http.Request, p *principal) error {
	limit := 100
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return &policy.Error{Code: policy.EInvalid, Field: "limit", Message: "must be a whole number from 1 to 1000"}
		}
		limit = n
	}
	// Members see their own tokens; admins every token of the account, or
	// with owner=me their own.
	owner := p.userID
	switch o := r.URL.Query().Get("owner"); {
	case o == "me" && p.userID == "":
		return &policy.Error{Code: policy.EInvalid, Field: "owner", Message: "owner=me needs a signed-in user, not the secret token"}
	case o != "" && o != "me":
		return &policy.Error{Code: policy.EInvalid, Field: "owner", Message: "the only owner filter is owner=me"}
	case o == "" && p.admin:
		owner = ""
	}
	toks, err := h.db.ListUserTokens(r.Context(), p.accountID, owner, r.URL.Query().Get("after"), limit+1)
	if err != nil {
		return err
	}
	var next *string
	if len(toks) > limit {
		toks = toks[:limit]
		next = &toks[limit-1].ID
	}
	out, err := h.withCredits(r.Context(), toks)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": out, "next": next})
	return nil
}

// withCredits adds each token's credits used this period.
func (h *Handler) withCredits(ctx context.Context, toks []*policy.Token) ([]apiToken, error) {
	ids := make([]string, len(toks))
	for i, t := range toks {
		ids[i] = t.ID
	}
	used, err := h.db.CreditsUsed(ctx, ids, h.cfg.Period.Start(h.cfg.Now()))
	if err != nil {
		return nil, err
	}
	out := make([]apiToken, len(toks))
	for i, t := range toks {
		out[i] = apiToken{Token: h.shown(t), CreditsUsed: used[t.ID]}
	}
	return out, nil
}

// shown hides what is past: a grace period that has ended.
func (h *Handler) shown(t *policy.Token) *policy.Token {
	if t.PreviousExpiresAt != nil && !t.PreviousExpiresAt.After(h.cfg.Now()) {
		t.PreviousExpiresAt = nil
	}
	return t
}

func (h *Handler) createToken(w http.ResponseWriter, r *http.Request, p *principal) error {
	var body map[string]json.RawMessage
	if err := decode(r, &body); err != nil {
		return err
	}
	kind := policy.Publishable
	if raw, ok := body["kind"]; ok {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return &policy.Error{Code: policy.EInvalid, Field: "kind", Message: "must be publishable or secret"}
		}
		k, err := policy.ParseKind(s)
		if err != nil {
			return err
		}
		kind = k
		delete(body, "kind")
	}
	if kind == policy.Secret && !p.admin {
		return &policy.Error{Code: policy.EForbidden, Field: "kind", Message: "only admins may make a secret token"}
	}
	t := policy.NewToken(p.accountID, kind)
	t.UserID = p.userID
	if err := applyFields(t, body); err != nil {
		return err
	}
	if err := h.lockoutCheck(p, t, false); err != nil {
		return err
	}
	secret, err := h.signingSecret(t, false)
	if err != nil {
		return err
	}
	value, err := h.db.CreateToken(r.Context(), t)
	if err != nil {
		return err
	}
	h.audit(r.Context(), p, "token.create", t.ID, fieldList(body))
	writeJSON(w, http.StatusCreated, apiToken{Token: t, Value: value, SigningSecret: secret})
	return nil
}

// visible returns the token if the principal may see it: admins and the
// secret token see every token of the account, members their own.
// Anything else is not found, so as not to tell what exists.
func (h *Handler) visible(ctx context.Context, p *principal, id string) (*policy.Token, error) {
	t, err := h.db.Token(ctx, id)
	if err != nil {
		return nil, err
	}
	if t.AccountID != p.accountID || (!p.admin && t.UserID != p.userID) {
		return nil, fmt.Errorf("token %s: %w", id, policy.ErrNotFound)
	}
	return t, nil
}

// manages reports whether the principal may do everything with the token:
// its owner may, and admins may for tokens that belong to no one.
func manages(p *principal, t *policy.Token) bool {
	if t.UserID != "" {
		return t.UserID == p.userID
	}
	return p.admin
}

func (h *Handler) getToken(w http.ResponseWriter, r *http.Request, p *principal) error {
	t, err := h.visible(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	out, err := h.withCredits(r.Context(), []*policy.Token{t})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out[0])
	return nil
}

var errSecretLockout = &policy.Error{Code: policy.EConflict,
	Message: "the account's secret token cannot be disabled or deleted through the API (that would lock the account out); roll it instead"}

func (h *Handler) patchToken(w http.ResponseWriter, r *http.Request, p *principal) error {
	id := r.PathValue("id")
	if _, err := h.visible(r.Context(), p, id); err != nil {
		return err
	}
	var body map[string]json.RawMessage
	if err := decode(r, &body); err != nil {
		return err
	}
	var secret string
	t, err := h.db.UpdateToken(r.Context(), id, func(t *policy.Token) error {
		if !manages(p, t) {
			// Admins may switch another's token on or off, nothing more.
			for k := range body {
				if k != "enabled" {
					return &policy.Error{Code: policy.EForbidden, Field: k, Message: "only the token's owner may change this; admins may only enable or disable it"}
				}
			}
		}
		wasEnabled := t.Enabled
		if err := applyFields(t, body); err != nil {
			return err
		}
		if err := h.lockoutCheck(p, t, wasEnabled); err != nil {
			return err
		}
		var err error
		secret, err = h.signingSecret(t, false)
		return err
	})
	if err != nil {
		return err
	}
	h.audit(r.Context(), p, "token.update", id, fieldList(body))
	out, err := h.withCredits(r.Context(), []*policy.Token{t})
	if err != nil {
		return err
	}
	out[0].SigningSecret = secret
	writeJSON(w, http.StatusOK, out[0])
	return nil
}

func (h *Handler) deleteToken(w http.ResponseWriter, r *http.Request, p *principal) error {
	t, err := h.visible(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	if t.Kind == policy.Secret {
		return errSecretLockout
	}
	if !manages(p, t) && !p.admin {
		return &policy.Error{Code: policy.EForbidden, Message: "only the token's owner or an admin may delete it"}
	}
	if err := h.db.DeleteToken(r.Context(), t.ID); err != nil {
		return err
	}
	h.audit(r.Context(), p, "token.delete", t.ID, "{}")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) rollToken(w http.ResponseWriter, r *http.Request, p *principal) error {
	t, err := h.visible(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	if !manages(p, t) {
		// The new value would be shown to whoever rolls: never to anyone
		// but the owner.
		return &policy.Error{Code: policy.EForbidden, Message: "only the token's owner may roll it"}
	}
	var body struct {
		GracePeriod string `json:"grace_period"`
	}
	if r.ContentLength != 0 {
		if err := decode(r, &body); err != nil {
			return err
		}
	}
	var grace time.Duration
	if body.GracePeriod != "" {
		if grace, err = time.ParseDuration(body.GracePeriod); err != nil {
			return &policy.Error{Code: policy.EInvalid, Field: "grace_period", Message: "must be a duration such as 0s, 1h or 24h"}
		}
	}
	t, value, err := h.db.RollToken(r.Context(), t.ID, grace)
	if err != nil {
		return err
	}
	h.audit(r.Context(), p, "token.roll", t.ID, fmt.Sprintf(`{"grace_period":%q}`, grace))
	out, err := h.withCredits(r.Context(), []*policy.Token{t})
	if err != nil {
		return err
	}
	out[0].Value = value
	writeJSON(w, http.StatusOK, out[0])
	return nil
}

func (h *Handler) tokenUsage(w http.ResponseWriter, r *http.Request, p *principal) error {
	t, err := h.visible(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	days := 30
	if s := r.URL.Query().Get("days"); s != "" {
		if days, err = strconv.Atoi(s); err != nil || days < 1 || days > 366 {
			return &policy.Error{Code: policy.EInvalid, Field: "days", Message: "must be a whole number from 1 to 366"}
		}
	}
	now := h.cfg.Now().UTC()
	rows, err := h.db.Usage(r.Context(), t.ID, now.AddDate(0, 0, -(days-1)).Format(time.DateOnly), now.Format(time.DateOnly))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"token_id": t.ID, "days": rows})
	return nil
}

// signingSecret gives a token that requires signed requests a signing
// secret when it has none, sealed, and returns it in clear ("" if none was
// made).
func (h *Handler) signingSecret(t *policy.Token, roll bool) (string, error) {
	if !t.Signed || (len(t.SigningSecret) > 0 && !roll) {
		return "", nil
	}
	if h.cfg.Box == nil {
		return "", &policy.Error{Code: policy.EConflict, Field: "signed_requests",
			Message: "this server has no encryption key (TOLLGATE_ENCRYPTION_KEY), so it cannot keep signing secrets"}
	}
	secret := policy.NewSigningSecret()
	t.SigningSecret = h.cfg.Box.Seal(t.ID, []byte(secret))
	return secret, nil
}

// applyFields sets the token fields a request names, with JSON's null
// clearing the nullable ones. Unknown and read-only fields are refused.
func applyFields(t *policy.Token, body map[string]json.RawMessage) error {
	for k, raw := range body {
		null := bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
		var err error
		switch k {
		case "nickname":
			err = notNull(null, raw, &t.Nickname)
		case "enabled":
			err = notNull(null, raw, &t.Enabled)
		case "core":
			err = notNull(null, raw, &t.Core)
		case "premium":
			err = notNull(null, raw, &t.Premium)
		case "signed_requests":
			err = notNull(null, raw, &t.Signed)
		case "datasets":
			t.Datasets = map[string]policy.Actions{}
			err = orNull(null, raw, &t.Datasets)
		case "allowed_apis":
			t.APIs = []string{}
			err = orNull(null, raw, &t.APIs)
		case "grants":
			t.Grants = []policy.Grant{}
			err = orNull(null, raw, &t.Grants)
		case "allowed_domains":
			t.Domains = []string{}
			err = orNull(null, raw, &t.Domains)
		case "allowed_ips":
			t.IPs = []string{}
			err = orNull(null, raw, &t.IPs)
		case "expires_at":
			t.ExpiresAt = nil
			err = orNull(null, raw, &t.ExpiresAt)
		case "credit_limit":
			t.CreditLimit = nil
			err = orNull(null, raw, &t.CreditLimit)
		case "rate_limit":
			t.RateLimit = nil
			if !null {
				var rl policy.RateLimit
				dec := json.NewDecoder(bytes.NewReader(raw))
				dec.DisallowUnknownFields()
				if err = dec.Decode(&rl); err == nil {
					t.RateLimit = &rl
				}
			}
		default:
			if slices.Contains(readOnly, k) {
				return &policy.Error{Code: policy.EInvalid, Field: k, Message: "cannot be changed"}
			}
			return &policy.Error{Code: policy.EInvalid, Field: k, Message: "is not a token field"}
		}
		if err != nil {
			if pe, ok := errors.AsType[*policy.Error](err); ok {
				return &policy.Error{Code: policy.EInvalid, Field: k, Message: pe.Message}
			}
			return &policy.Error{Code: policy.EInvalid, Field: k, Message: "has the wrong type: " + err.Error()}
		}
	}
	return nil
}

var readOnly = []string{"id", "account_id", "user_id", "kind", "prefix", "token", "created_at", "updated_at",
	"last_used_at", "credits_used", "previous_token_expires_at", "signing_secret"}

var errNull = errors.New("must not be null")

func notNull(null bool, raw json.RawMessage, v any) error {
	if null {
		return errNull
	}
	return json.Unmarshal(raw, v)
}

func orNull(null bool, raw json.RawMessage, v any) error {
	if null {
		return nil
	}
	return json.Unmarshal(raw, v)
}

// fieldList names the fields a change set, for the audit log; values are
// left out (they may be long, and a log is no place for policy detail).
func fieldList(body map[string]json.RawMessage) string {
	names := make([]string, 0, len(body))
	for k := range body {
		names = append(names, k)
	}
	slices.Sort(names)
	b, _ := json.Marshal(map[string][]string{"fields": names})
	return string(b)
}
