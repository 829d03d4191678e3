package admin_test

import (
	"testing"

	"github.com/tollgate/tollgate/internal/store"
)

// TestAccountSaysWhetherSigningWorks checks that GET /v1/account tells the
// console whether signed requests can be switched on: only a server with
// an encryption key can keep signing secrets.
func TestAccountSaysWhetherSigningWorks(t *testing.T) {
	for name, tc := range map[string]struct {
		f    *fixture
		want bool
	}{
		"no key": {newFixture(t, store.SQLite), false},
		"a key":  {MustSecurityFixture(t, t, store.SQLite, 0, false), true},
	} {
		got, ok := tc.f.admin.do("GET", "/v1/account", nil).want(t, name, 200).body["signing_available"].(bool)
		if !ok || got != tc.want {
			t.Errorf("%s: signing_available %v (present %v), want %v", name, got, ok, tc.want)
		}
	}
}
