package extauthz_test

import (
	"context"
	"testing"
)

// TestAllowedCheckAllocations holds an allowed Check on a cache hit to
// four allocations (the answer's block, the metadata map and its group,
// the token id): garbage on this path sets how often the collector runs.
func TestAllowedCheckAllocations(t *testing.T) {
	srv, req := benchServer(t, false)
	ctx := context.Background()
	if resp, err := srv.Check(ctx, req); err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("not allowed: %v %v", resp, err)
	}
	got := testing.AllocsPerRun(1000, func() {
		if _, err := srv.Check(ctx, req); err != nil {
			t.Fatal(err)
		}
	})
	if got > 4 {
		t.Errorf("got %v allocations per allowed Check, want at most 4", got)
	}
}
