package admin

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/tollgate/tollgate/internal/manage"
	"github.com/tollgate/tollgate/internal/policy"
)

// CARTO's Tokens API (/v3/tokens), so that scripts written for CARTO keep
// working unchanged. It is a translation only: CARTO's request shapes
// become a policy.TokenPatch for the same manage.Service /v1 calls, with
// the same authentication and the same audit entries. Every rule (what a
// grant, an API list or a referer may be; who may change what) comes from
// policy through the Service. What is CARTO's alone: the field names, the
// source of a grant written as one string, the token value in the path,
// the expiry set only at creation, and errors as {"error": "…"}.
// docs/carto.md has the mapping table.

// cartoGrant is a grant as CARTO writes it: a source is a table (or a
// wildcard over tables), a SQL query, or "*" for every source.
type cartoGrant struct {
	ConnectionName string `json:"connection_name"`
	Source         string `json:"source"`
}

// cartoToken is a token as the /v3 API shows it. The value appears only in
// the answer to create: Tollgate keeps only its hash.
type cartoToken struct {
	Token          string       `json:"token,omitempty"`
	ID             string       `json:"id"`
	Kind           policy.Kind  `json:"kind"`
	Prefix         string       `json:"prefix"`
	Grants         []cartoGrant `json:"grants"`
	AllowedAPIs    []string     `json:"allowed_apis"`
	Referers       []string     `json:"referers"`
	ExpirationDate *time.Time   `json:"expiration_date"`
	CreatedAt      time.Time    `json:"created_at"`
}

func toCarto(t *policy.Token, value string) cartoToken {
	grants := make([]cartoGrant, len(t.Grants))
	for i, g := range t.Grants {
		src := g.Source
		if g.Type == policy.GrantAll {
			src = "*"
		}
		grants[i] = cartoGrant{ConnectionName: g.Connection, Source: src}
	}
	return cartoToken{Token: value, ID: t.ID, Kind: t.Kind, Prefix: t.Prefix, Grants: grants,
		AllowedAPIs: nonNilList(t.APIs), Referers: nonNilList(t.Domains), ExpirationDate: t.ExpiresAt, CreatedAt: t.CreatedAt}
}

func nonNilList(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// cartoRoute serves a /v3 endpoint. The routes are public to wrap, so that
// this, not wrap, answers a failed authentication, in CARTO's error shape;
// the principal is found by the same authenticate as /v1's.
func (h *Handler) cartoRoute(fn func(w http.ResponseWriter, r *http.Request, p *principal) error) func(http.ResponseWriter, *http.Request, *principal) error {
	return func(w http.ResponseWriter, r *http.Request, _ *principal) error {
		p, err := h.authenticate(r)
		if err == nil {
			err = fn(w, r, p)
		}
		if err != nil {
			h.writeCartoError(w, err)
		}
		return nil
	}
}

// cartoFields renames Tollgate's field names to CARTO's in error messages.
var cartoFields = map[string]string{"allowed_domains": "referers", "expires_at": "expiration_date"}

// writeCartoError answers as CARTO does, {"error": "…"}, with admin's
// status table; code is Tollgate's stable error code.
func (h *Handler) writeCartoError(w http.ResponseWriter, err error) {
	code, st, msg := policy.EInternal, http.StatusInternalServerError, "internal error"
	var tooLarge *http.MaxBytesError
	switch pe, ok := errors.AsType[*policy.Error](err); {
	case errors.As(err, &tooLarge):
		code, st, msg = policy.EInvalid, http.StatusRequestEntityTooLarge, "the body is larger than 64 KiB"
	case ok && pe.Code == policy.ENotFound:
		code, st, msg = pe.Code, http.StatusNotFound, "token not found"
	case ok && pe.Code != policy.EInternal:
		code, st, msg = pe.Code, status(pe.Code), pe.Message
		if f := cmp.Or(cartoFields[pe.Field], pe.Field); f != "" {
			msg = f + ": " + msg
		}
	default:
		h.log.Error("admin: /v3 request failed", "err", err)
	}
	if st == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tollgate"`)
	}
	writeJSON(w, st, map[string]string{"error": msg, "code": string(code)})
}

func (h *Handler) cartoCreate(w http.ResponseWriter, r *http.Request, p *principal) error {
	body, err := cartoBody(r)
	if err != nil {
		return err
	}
	patch, err := cartoPatch(body, true)
	if err != nil {
		return err
	}
	made, err := h.svc.CreateToken(r.Context(), p.Principal, "", policy.Publishable, patch)
	if err != nil {
		return err
	}
	h.audit(r.Context(), p, "token.create", made.Token.ID, fieldList(patch))
	writeJSON(w, http.StatusCreated, toCarto(made.Token, made.Value))
	return nil
}

func (h *Handler) cartoList(w http.ResponseWriter, r *http.Request, p *principal) error {
	limit, err := pageLimit(r)
	if err != nil {
		return err
	}
	toks, err := h.svc.ListTokens(r.Context(), p.Principal, manage.TokenFilter{After: r.URL.Query().Get("after"), Limit: limit + 1})
	if err != nil {
		return err
	}
	toks, next := page(toks, limit)
	out := make([]cartoToken, len(toks))
	for i, t := range toks {
		out[i] = toCarto(t, "")
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": out, "next": next})
	return nil
}

func (h *Handler) cartoGet(w http.ResponseWriter, r *http.Request, p *principal) error {
	t, err := h.cartoToken(r, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toCarto(t, ""))
	return nil
}

func (h *Handler) cartoUpdate(w http.ResponseWriter, r *http.Request, p *principal) error {
	t, err := h.cartoToken(r, p)
	if err != nil {
		return err
	}
	body, err := cartoBody(r)
	if err != nil {
		return err
	}
	patch, err := cartoPatch(body, false)
	if err != nil {
		return err
	}
	changed, err := h.svc.UpdateToken(r.Context(), p.Principal, t.ID, patch)
	if err != nil {
		return err
	}
	h.audit(r.Context(), p, "token.update", t.ID, fieldList(patch))
	writeJSON(w, http.StatusOK, toCarto(changed.Token, ""))
	return nil
}

func (h *Handler) cartoDelete(w http.ResponseWriter, r *http.Request, p *principal) error {
	t, err := h.cartoToken(r, p)
	if err != nil {
		return err
	}
	if err := h.svc.DeleteToken(r.Context(), p.Principal, t.ID); err != nil {
		return err
	}
	h.audit(r.Context(), p, "token.delete", t.ID, "{}")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

var errCartoNotFound = &policy.Error{Code: policy.ENotFound, Message: "token not found"}

// cartoToken finds the token the path names. CARTO's path carries the
// token's value; Tollgate keeps only hashes, so the value is checked
// (shape and checksum, with no look-up when they fail) and found by its
// hash. Tollgate's own token id (tok_…) is accepted too, since a list
// cannot show values. Either way the Service decides whether the
// principal may see it.
func (h *Handler) cartoToken(r *http.Request, p *principal) (*policy.Token, error) {
	ref := r.PathValue("token")
	id := ref
	if !strings.HasPrefix(ref, "tok_") {
		if _, err := policy.ParseValue(ref); err != nil {
			return nil, errCartoNotFound
		}
		t, _, err := h.db.TokenByHash(r.Context(), policy.HashValue(ref))
		if err != nil {
			return nil, err
		}
		id = t.ID
	}
	return h.svc.Token(r.Context(), p.Principal, id)
}

// cartoBody reads a /v3 body: a JSON object whose fields are checked by
// cartoPatch.
func cartoBody(r *http.Request) (map[string]json.RawMessage, error) {
	var body map[string]json.RawMessage
	if err := decode(r, &body); err != nil {
		return nil, err
	}
	if body == nil {
		return nil, &policy.Error{Code: policy.EInvalid, Message: "the body must be a JSON object"}
	}
	return body, nil
}

// cartoPatch translates CARTO's fields into a patch. Unknown fields are
// refused rather than dropped: a restriction silently lost would widen the
// token. At creation the token gets only what it is granted (no core data,
// which CARTO has no notion of), and must name its APIs, since Tollgate
// reads an empty list as every API but import.
func cartoPatch(body map[string]json.RawMessage, create bool) (*policy.TokenPatch, error) {
	var p policy.TokenPatch
	if create {
		noCore := false
		p.Core = &noCore
		if _, ok := body["allowed_apis"]; !ok {
			return nil, &policy.Error{Code: policy.EInvalid, Field: "allowed_apis", Message: "is required: name the APIs the token may call"}
		}
	}
	for k, raw := range body {
		null := bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
		var err error
		switch k {
		case "grants":
			var gs []cartoGrant
			if err = json.Unmarshal(raw, &gs); err == nil {
				p.Grants, err = cartoGrants(gs)
			}
		case "allowed_apis":
			var apis []string
			if err = json.Unmarshal(raw, &apis); err == nil {
				if len(apis) == 0 {
					return nil, &policy.Error{Code: policy.EInvalid, Field: k, Message: "name at least one API (Tollgate reads an empty list as every API but import)"}
				}
				for i, a := range apis {
					// CARTO names the import API "imports".
					if strings.EqualFold(strings.TrimSpace(a), "imports") {
						apis[i] = policy.APIImport
					}
				}
				p.APIs = &apis
			}
		case "referers":
			p.Domains, err = orEmpty(null, raw, []string{})
		case "expiration_date":
			if !create {
				return nil, &policy.Error{Code: policy.EInvalid, Field: k, Message: "can only be set when the token is created (create a new token and delete this one)"}
			}
			p.ExpiresAt, err = cartoExpiry(null, raw)
		default:
			return nil, &policy.Error{Code: policy.EInvalid, Field: k, Message: "is not a field of CARTO's Tokens API that Tollgate maps (see docs/carto.md)"}
		}
		if err != nil {
			if pe, ok := errors.AsType[*policy.Error](err); ok {
				return nil, &policy.Error{Code: policy.EInvalid, Field: k, Message: pe.Message}
			}
			return nil, &policy.Error{Code: policy.EInvalid, Field: k, Message: "has the wrong type: " + err.Error()}
		}
	}
	return &p, nil
}

// cartoGrants turns CARTO's one-string sources into Tollgate's typed
// grants: "*" is every source of the connection; a source with whitespace
// is a SQL query (a query needs at least one space, a table name holds
// none); anything else is a table or a wildcard over tables. policy
// validates each when the Service applies the patch.
func cartoGrants(gs []cartoGrant) (*[]policy.Grant, error) {
	out := make([]policy.Grant, len(gs))
	for i, g := range gs {
		src := strings.TrimSpace(g.Source)
		switch {
		case src == "":
			return nil, &policy.Error{Code: policy.EInvalid, Message: "each grant needs a source: a table, a SQL query or \"*\""}
		case src == "*":
			out[i] = policy.Grant{Connection: g.ConnectionName, Type: policy.GrantAll}
		case strings.ContainsFunc(src, unicode.IsSpace):
			out[i] = policy.Grant{Connection: g.ConnectionName, Type: policy.GrantQuery, Source: g.Source}
		default:
			out[i] = policy.Grant{Connection: g.ConnectionName, Type: policy.GrantTable, Source: src}
		}
	}
	return &out, nil
}

// cartoExpiry reads an expiration_date: an RFC 3339 time, or a date
// (YYYY-MM-DD), which expires at its start in UTC.
func cartoExpiry(null bool, raw json.RawMessage) (**time.Time, error) {
	var v *time.Time
	if null {
		return &v, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, err
	}
	for _, layout := range []string{time.RFC3339Nano, time.DateOnly} {
		if t, err := time.Parse(layout, s); err == nil {
			t = t.UTC()
			v = &t
			return &v, nil
		}
	}
	return nil, &policy.Error{Code: policy.EInvalid, Message: "must be an RFC 3339 time (2026-12-31T23:59:59Z) or a date (2026-12-31)"}
}
