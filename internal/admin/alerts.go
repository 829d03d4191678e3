package admin

import (
	"net/http"

	"github.com/tollgate/tollgate/internal/policy"
)

// alertRoutes are the endpoints that tell an account its tokens are in
// trouble: leaks reported by secret scanning, and flags of unusual usage.
func (h *Handler) alertRoutes() []route {
	return []route{
		{method: "GET", path: "/v1/leaks", handle: h.listLeaks},
		{method: "GET", path: "/v1/tokens/{id}/leaks", handle: h.tokenLeaks},
		{method: "GET", path: "/v1/flags", handle: h.listFlags},
		{method: "GET", path: "/v1/tokens/{id}/flags", handle: h.tokenFlags},
		{method: "POST", path: "/v1/flags/{id}/resolve", handle: h.resolveFlag},
	}
}

// maxLeaksShown bounds a list of leaks; a token reported more often than
// this shows its newest reports.
const maxLeaksShown = 100

// listLeaks lists the reported leaks of the tokens the principal sees:
// admins and the secret token every token of the account, members their own.
func (h *Handler) listLeaks(w http.ResponseWriter, r *http.Request, p *principal) error {
	leaks, err := h.db.Leaks(r.Context(), p.AccountID, "", policy.ListedOwner(p.Principal), maxLeaksShown)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"leaks": nonNil(leaks)})
	return nil
}

func (h *Handler) tokenLeaks(w http.ResponseWriter, r *http.Request, p *principal) error {
	t, err := h.svc.Token(r.Context(), p.Principal, r.PathValue("id"))
	if err != nil {
		return err
	}
	leaks, err := h.db.Leaks(r.Context(), p.AccountID, t.ID, "", maxLeaksShown)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"token_id": t.ID, "leaks": nonNil(leaks)})
	return nil
}

// nonNil makes an empty list encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
