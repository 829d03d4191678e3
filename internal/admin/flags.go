package admin

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/tollgate/tollgate/internal/policy"
)

// maxFlagsShown bounds a list of flags.
const maxFlagsShown = 200

// listFlags lists the flags of the tokens the principal sees, open ones
// unless state=all.
func (h *Handler) listFlags(w http.ResponseWriter, r *http.Request, p *principal) error {
	open, err := openOnly(r)
	if err != nil {
		return err
	}
	flags, err := h.db.Flags(r.Context(), p.AccountID, "", policy.ListedOwner(p.Principal), open, maxFlagsShown)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"flags": nonNil(flags)})
	return nil
}

func (h *Handler) tokenFlags(w http.ResponseWriter, r *http.Request, p *principal) error {
	open, err := openOnly(r)
	if err != nil {
		return err
	}
	t, err := h.svc.Token(r.Context(), p.Principal, r.PathValue("id"))
	if err != nil {
		return err
	}
	flags, err := h.db.Flags(r.Context(), p.AccountID, t.ID, "", open, maxFlagsShown)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"token_id": t.ID, "flags": nonNil(flags)})
	return nil
}

func openOnly(r *http.Request) (bool, error) {
	switch r.URL.Query().Get("state") {
	case "", "open":
		return true, nil
	case "all":
		return false, nil
	}
	return false, &policy.Error{Code: policy.EInvalid, Field: "state", Message: "must be open or all"}
}

// resolveFlag closes a flag: whoever may see the token may say they have
// dealt with it (rolled or disabled it, or found it expected).
func (h *Handler) resolveFlag(w http.ResponseWriter, r *http.Request, p *principal) error {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		return &policy.Error{Code: policy.ENotFound, Message: "no such flag"}
	}
	f, err := h.db.Flag(r.Context(), id)
	if errors.Is(err, policy.ErrNotFound) || (err == nil && f.AccountID != p.AccountID) {
		return &policy.Error{Code: policy.ENotFound, Message: "no such flag"}
	}
	if err != nil {
		return err
	}
	if _, err := h.svc.Token(r.Context(), p.Principal, f.TokenID); err != nil {
		return err
	}
	f, err = h.db.ResolveFlag(r.Context(), id, p.actor())
	if err != nil {
		return err
	}
	h.audit(r.Context(), p, "token.flag_resolved", f.TokenID, `{"flag":`+strconv.FormatInt(id, 10)+`,"kind":"`+string(f.Kind)+`"}`)
	writeJSON(w, http.StatusOK, f)
	return nil
}
