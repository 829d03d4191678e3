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

	"github.com/tollgate/tollgate/internal/manage"
	"github.com/tollgate/tollgate/internal/policy"
)

// apiToken is a token as the API shows it. The value appears only in the
// answers to create and roll; a signing secret only when one is made.
type apiToken struct {
	*policy.Token
	CreditsUsed   int64  `json:"credits_used"`
	Value         string `json:"token,omitempty"`
	SigningSecret string `json:"signing_secret,omitempty"`
}

// pageLimit reads a list's ?limit=: 100 when absent, at most 1000.
func pageLimit(r *http.Request) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 1000 {
		return 0, &policy.Error{Code: policy.EInvalid, Field: "limit", Message: "must be a whole number from 1 to 1000"}
	}
	return n, nil
}

// page cuts a list asked for with limit+1 to limit, and returns the id to
// list after for the next page, or nil on the last.
func page(toks []*policy.Token, limit int) ([]*policy.Token, *string) {
	if len(toks) <= limit {
		return toks, nil
	}
	return toks[:limit], &toks[limit-1].ID
}

func (h *Handler) listTokens(w http.ResponseWriter, r *http.Request, p *principal) error {
	limit, err := pageLimit(r)
	if err != nil {
		return err
	}
	// Members see their own tokens; admins every token of the account, or
	// with owner=me their own.
	o := r.URL.Query().Get("owner")
	if o != "" && o != "me" {
		return &policy.Error{Code: policy.EInvalid, Field: "owner", Message: "the only owner filter is owner=me"}
	}
	toks, err := h.svc.ListTokens(r.Context(), p.Principal, manage.TokenFilter{Mine: o == "me", After: r.URL.Query().Get("after"), Limit: limit + 1})
	if err != nil {
		return err
	}
	toks, next := page(toks, limit)
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
	patch, err := tokenPatch(body)
	if err != nil {
		return err
	}
	made, err := h.svc.CreateToken(r.Context(), p.Principal, "", kind, patch)
	if err != nil {
		return err
	}
	h.audit(r.Context(), p, "token.create", made.Token.ID, fieldList(patch))
	writeJSON(w, http.StatusCreated, apiToken{Token: made.Token, Value: made.Value, SigningSecret: made.SigningSecret})
	return nil
}

func (h *Handler) getToken(w http.ResponseWriter, r *http.Request, p *principal) error {
	t, err := h.svc.Token(r.Context(), p.Principal, r.PathValue("id"))
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

func (h *Handler) patchToken(w http.ResponseWriter, r *http.Request, p *principal) error {
	id := r.PathValue("id")
	var body map[string]json.RawMessage
	if err := decode(r, &body); err != nil {
		return err
	}
	patch, err := tokenPatch(body)
	if err != nil {
		return err
	}
	changed, err := h.svc.UpdateToken(r.Context(), p.Principal, id, patch)
	if err != nil {
		return err
	}
	h.audit(r.Context(), p, "token.update", id, fieldList(patch))
	out, err := h.withCredits(r.Context(), []*policy.Token{changed.Token})
	if err != nil {
		return err
	}
	out[0].SigningSecret = changed.SigningSecret
	writeJSON(w, http.StatusOK, out[0])
	return nil
}

func (h *Handler) deleteToken(w http.ResponseWriter, r *http.Request, p *principal) error {
	id := r.PathValue("id")
	if err := h.svc.DeleteToken(r.Context(), p.Principal, id); err != nil {
		return err
	}
	h.audit(r.Context(), p, "token.delete", id, "{}")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) rollToken(w http.ResponseWriter, r *http.Request, p *principal) error {
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
		var err error
		if grace, err = time.ParseDuration(body.GracePeriod); err != nil {
			return &policy.Error{Code: policy.EInvalid, Field: "grace_period", Message: "must be a duration such as 0s, 1h or 24h"}
		}
	}
	rolled, err := h.svc.RollToken(r.Context(), p.Principal, r.PathValue("id"), grace)
	if err != nil {
		return err
	}
	h.audit(r.Context(), p, "token.roll", rolled.Token.ID, fmt.Sprintf(`{"grace_period":%q}`, grace))
	out, err := h.withCredits(r.Context(), []*policy.Token{rolled.Token})
	if err != nil {
		return err
	}
	out[0].Value = rolled.Value
	writeJSON(w, http.StatusOK, out[0])
	return nil
}

// revealToken shows a publishable token's value again; see
// manage.Service.RevealToken for when it cannot.
func (h *Handler) revealToken(w http.ResponseWriter, r *http.Request, p *principal) error {
	id := r.PathValue("id")
	value, err := h.svc.RevealToken(r.Context(), p.Principal, id)
	if err != nil {
		return err
	}
	h.audit(r.Context(), p, "token.reveal", id, "{}")
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "token": value})
	return nil
}

func (h *Handler) tokenUsage(w http.ResponseWriter, r *http.Request, p *principal) error {
	t, err := h.svc.Token(r.Context(), p.Principal, r.PathValue("id"))
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

// tokenPatch reads the token fields a request names into a patch: an
// absent field is left alone, and JSON's null clears the nullable ones.
// Unknown and read-only fields are refused.
func tokenPatch(body map[string]json.RawMessage) (*policy.TokenPatch, error) {
	var p policy.TokenPatch
	for k, raw := range body {
		null := bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
		var err error
		switch k {
		case "nickname":
			p.Nickname, err = notNull[string](null, raw)
		case "enabled":
			p.Enabled, err = notNull[bool](null, raw)
		case "core":
			p.Core, err = notNull[bool](null, raw)
		case "premium":
			p.Premium, err = notNull[bool](null, raw)
		case "signed_requests":
			p.Signed, err = notNull[bool](null, raw)
		case "datasets":
			p.Datasets, err = orEmpty(null, raw, map[string]policy.Actions{})
		case "allowed_apis":
			p.APIs, err = orEmpty(null, raw, []string{})
		case "grants":
			p.Grants, err = orEmpty(null, raw, []policy.Grant{})
		case "allowed_domains":
			p.Domains, err = orEmpty(null, raw, []string{})
		case "allowed_ips":
			p.IPs, err = orEmpty(null, raw, []string{})
		case "expires_at":
			p.ExpiresAt, err = orNull[time.Time](null, raw)
		case "credit_limit":
			p.CreditLimit, err = orNull[int64](null, raw)
		case "rate_limit":
			var rl *policy.RateLimit
			if !null {
				dec := json.NewDecoder(bytes.NewReader(raw))
				dec.DisallowUnknownFields()
				rl = new(policy.RateLimit)
				err = dec.Decode(rl)
			}
			p.RateLimit = &rl
		default:
			if slices.Contains(readOnly, k) {
				return nil, &policy.Error{Code: policy.EInvalid, Field: k, Message: "cannot be changed"}
			}
			return nil, &policy.Error{Code: policy.EInvalid, Field: k, Message: "is not a token field"}
		}
		if err != nil {
			return nil, jsonError(k, err)
		}
	}
	return &p, nil
}

var readOnly = []string{"id", "account_id", "user_id", "kind", "prefix", "token", "created_at", "updated_at",
	"last_used_at", "credits_used", "previous_token_expires_at", "signing_secret", "value_kept"}

var errNull = errors.New("must not be null")

// notNull reads a field that cannot be cleared.
func notNull[T any](null bool, raw json.RawMessage) (*T, error) {
	if null {
		return nil, errNull
	}
	v := new(T)
	return v, json.Unmarshal(raw, v)
}

// orEmpty reads a list or map field; null clears it (to empty).
func orEmpty[T any](null bool, raw json.RawMessage, empty T) (*T, error) {
	if null {
		return &empty, nil
	}
	return &empty, json.Unmarshal(raw, &empty)
}

// orNull reads a nullable field; null clears it.
func orNull[T any](null bool, raw json.RawMessage) (**T, error) {
	var v *T
	if null {
		return &v, nil
	}
	return &v, json.Unmarshal(raw, &v)
}

// fieldList names the fields a change sets, for the audit log; values are
// left out (they may be long, and a log is no place for policy detail).
func fieldList(p *policy.TokenPatch) string {
	names := p.Fields()
	if names == nil {
		names = []string{}
	}
	b, _ := json.Marshal(map[string][]string{"fields": names})
	return string(b)
}
