package admin

import (
	"encoding/json"

	"github.com/tollgate/tollgate/internal/policy"
)

// CartoPatch is cartoPatch, for its fuzz target.
func CartoPatch(body map[string]json.RawMessage, create bool) (*policy.TokenPatch, error) {
	return cartoPatch(body, create)
}
