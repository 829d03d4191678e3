package admin_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/store"
)

// TestPatchFields holds PATCH to its contract field by field, now that the
// body is read into a policy.TokenPatch: an absent field stays as it was,
// null clears a nullable one (lists to empty) and is refused for the rest.
func TestPatchFields(t *testing.T) {
	f := newFixture(t, store.SQLite)
	c := f.alice
	full := map[string]any{
		"nickname": "web", "enabled": true, "core": true, "premium": true,
		"datasets": map[string]any{"prices": []string{"read"}}, "allowed_apis": []string{"data"},
		"grants": []any{map[string]any{"connection": "warehouse", "type": "all"}}, "allowed_domains": []string{"example.com"},
		"allowed_ips": []string{"10.0.0.0/8"}, "expires_at": "2031-01-01T00:00:00Z",
		"credit_limit": 500, "rate_limit": map[string]any{"rps": 5, "burst": 10},
	}
	id := c.do("POST", "/v1/tokens", full).want(t, "create", 201).str("id")
	before := c.do("GET", "/v1/tokens/"+id, nil).want(t, "get", 200).body

	cleared := map[string]any{
		"datasets": map[string]any{}, "allowed_apis": []any{}, "grants": []any{}, "allowed_domains": []any{},
		"allowed_ips": []any{}, "expires_at": nil, "credit_limit": nil, "rate_limit": nil,
	}
	for field := range full {
		after := c.do("PATCH", "/v1/tokens/"+id, map[string]any{"nickname": "web"}).want(t, "patch another field", 200).body
		if !same(after[field], before[field]) {
			t.Errorf("%s after a patch that leaves it out: got %v, want %v", field, after[field], before[field])
		}
		want, nullable := cleared[field]
		r := c.do("PATCH", "/v1/tokens/"+id, map[string]any{field: nil})
		if !nullable {
			r.want(t, field+": null", 400, "invalid", field)
			continue
		}
		if got := r.want(t, field+": null", 200).body[field]; !same(got, want) {
			t.Errorf("%s after null: got %v, want %v", field, got, want)
		}
		c.do("PATCH", "/v1/tokens/"+id, map[string]any{field: full[field]}).want(t, field+": set again", 200)
	}
}

func same(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// TestPatchWrongTypes: a field of the wrong type, or a number out of
// range, is refused with a sentence naming the field, never with the JSON
// decoder's words about Go types.
func TestPatchWrongTypes(t *testing.T) {
	f := newFixture(t, store.SQLite)
	c := f.alice
	id := c.do("POST", "/v1/tokens", map[string]any{}).want(t, "create", 201).str("id")
	for field, v := range map[string]any{
		"core": "yes", "credit_limit": json.RawMessage("1e23"), "nickname": 5, "allowed_ips": "10.0.0.0/8",
		"rate_limit": map[string]any{"rps": "fast"},
	} {
		r := c.do("PATCH", "/v1/tokens/"+id, map[string]any{field: v}).want(t, field, 400, "invalid", field)
		e, _ := r.body["error"].(map[string]any)
		msg, _ := e["message"].(string)
		if strings.Contains(msg, "json:") || strings.Contains(msg, "Go value") || strings.Contains(msg, "int64") {
			t.Errorf("%s: message %q speaks Go", field, msg)
		}
	}
}
