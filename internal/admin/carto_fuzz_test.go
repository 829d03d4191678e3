package admin_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/tollgate/tollgate/internal/admin"
	"github.com/tollgate/tollgate/internal/policy"
)

// FuzzCartoPatch: whatever a /v3 body holds, it is refused with a field
// error or becomes a patch; a token created from a patch policy accepts
// has no core data and names its APIs (an empty list would mean every API
// but import), and never combines import with another API.
func FuzzCartoPatch(f *testing.F) {
	for _, s := range []string{
		`{"grants":[{"connection_name":"carto_dw","source":"a.b.*"}],"allowed_apis":["sql","maps"],"referers":["https://app.example.com/"]}`,
		`{"grants":[{"connection_name":"c","source":"*"},{"connection_name":"c","source":"SELECT 1"}],"allowed_apis":["imports"]}`,
		`{"allowed_apis":["import","sql"]}`, `{"allowed_apis":[]}`, `{"allowed_apis":null}`, `{"grants":null,"allowed_apis":["lds"]}`,
		`{"expiration_date":"2031-01-01","allowed_apis":["maps"]}`, `{"referers":["ftp://x/"],"allowed_apis":["maps"]}`, `{"x":1}`,
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, body string, create bool) {
		var m map[string]json.RawMessage
		if json.Unmarshal([]byte(body), &m) != nil || m == nil {
			return
		}
		p, err := admin.CartoPatch(m, create)
		if err != nil {
			if pe, ok := errors.AsType[*policy.Error](err); !ok || pe.Code != policy.EInvalid || pe.Field == "" {
				t.Fatalf("refusal %v: want an invalid-field *policy.Error", err)
			}
			return
		}
		tok := policy.NewToken("acc_fuzz", policy.Publishable)
		p.Apply(tok)
		if tok.Normalize() != nil {
			return
		}
		if create && (tok.Core || len(tok.APIs) == 0) {
			t.Fatalf("created token has core %v, APIs %v: want no core data and named APIs", tok.Core, tok.APIs)
		}
		if !create && p.APIs != nil && len(tok.APIs) == 0 {
			t.Fatalf("an update emptied allowed_apis")
		}
		for _, a := range tok.APIs {
			if a == policy.APIImport && len(tok.APIs) > 1 {
				t.Fatalf("import combined with %v", tok.APIs)
			}
		}
	})
}
