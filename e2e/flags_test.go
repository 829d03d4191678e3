package e2e_test

import (
	"testing"
)

// TestServeDatabaseURLFlag starts a replica the way the README and the
// issue's contract do: "tollgate serve --database-url URL". The rest of the
// suite passes the URL as TOLLGATE_DATABASE_URL instead.
func TestServeDatabaseURLFlag(t *testing.T) {
	t.Parallel()
	_, dbURL := MustOpenDB(t)
	r := startServe(t, "flag-replica", nil, "--database-url", dbURL)
	if code, err := r.readyz(); err != nil || code != 200 {
		t.Fatalf("/readyz got %d, %v, want 200", code, err)
	}
}
