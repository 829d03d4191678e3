package store_test

import (
	"context"
	"testing"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// TestOpenReady: the server and the command line open the store the same
// way. The embedded store is migrated on open; an unmigrated Postgres is
// refused (EUnavailable) unless migrate is set.
func TestOpenReady(t *testing.T) {
	ctx := context.Background()
	for name, tc := range map[string]struct {
		dialect store.Dialect
		migrate bool
		want    policy.Code
	}{
		"sqlite is migrated on open":      {store.SQLite, false, ""},
		"postgres unmigrated is refused":  {store.Postgres, false, policy.EUnavailable},
		"postgres with migrate is served": {store.Postgres, true, ""},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db, err := store.OpenReady(ctx, storetest.URL(t, tc.dialect), store.Options{}, tc.migrate)
			if got := policy.ErrorCode(err); got != tc.want {
				t.Fatalf("got %q (%v), want %q", got, err, tc.want)
			}
			if err != nil {
				return
			}
			defer db.Close()
			if cur, latest, err := db.SchemaVersion(ctx); err != nil || cur != latest {
				t.Errorf("schema at %d of %d (%v), want the latest", cur, latest, err)
			}
		})
	}
}
