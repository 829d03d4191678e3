package store_test

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/store"
)

// TestReportDemand: each replica's report replaces its last one, the
// fleet's demand adds up the live replicas' reports for the subjects
// asked about, and a replica that left (or stopped beating) counts no more.
func TestReportDemand(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		const ttl = time.Minute
		for _, id := range []string{"rep_a", "rep_b", "rep_c"} {
			if _, err := db.Heartbeat(ctx, id, ttl); err != nil {
				t.Fatal(err)
			}
		}
		report := func(id string, demand map[string]float64) map[string]float64 {
			t.Helper()
			got, err := db.ReportDemand(ctx, id, ttl, demand)
			if err != nil {
				t.Fatalf("report of %s: %v", id, err)
			}
			return got
		}
		for _, step := range []struct {
			name   string
			id     string
			demand map[string]float64
			want   map[string]float64
		}{
			{"first report", "rep_a", map[string]float64{"tok_1": 10, "tok_2": 1}, map[string]float64{"tok_1": 10, "tok_2": 1}},
			{"a second replica adds", "rep_b", map[string]float64{"tok_1": 30}, map[string]float64{"tok_1": 40}},
			{"a report replaces the last", "rep_a", map[string]float64{"tok_1": 2}, map[string]float64{"tok_1": 32}},
			{"only subjects asked about", "rep_c", map[string]float64{"tok_2": 5}, map[string]float64{"tok_2": 5}},
			{"no demand is a report too", "rep_c", map[string]float64{"tok_2": 0}, map[string]float64{"tok_2": 0}},
			{"nothing to report", "rep_b", map[string]float64{}, map[string]float64{}},
			{"rep_b's report is gone", "rep_a", map[string]float64{"tok_1": 2}, map[string]float64{"tok_1": 2}},
		} {
			if got := report(step.id, step.demand); !maps.Equal(got, step.want) {
				t.Errorf("%s: got %v, want %v", step.name, got, step.want)
			}
		}
		report("rep_b", map[string]float64{"tok_1": 8})
		if err := db.RemoveReplica(ctx, "rep_b"); err != nil {
			t.Fatal(err)
		}
		if got := report("rep_a", map[string]float64{"tok_1": 2}); got["tok_1"] != 2 {
			t.Errorf("after rep_b left: got %v, want tok_1 2 (its demand forgotten)", got)
		}
		// A replica that stopped beating: its rows no longer count.
		report("rep_c", map[string]float64{"tok_1": 100})
		if got, _ := db.ReportDemand(ctx, "rep_a", time.Nanosecond, map[string]float64{"tok_1": 2}); got["tok_1"] != 0 {
			t.Errorf("with every heartbeat older than the ttl: got %v, want no live demand", got)
		}
	})
}
