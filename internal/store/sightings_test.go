package store_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/store"
)

// TestRecordMinutesSightings holds what RecordMinutes keeps of network
// ranges and sites: a new value while its token has room for the kind, a
// kept one only moving last_seen, nothing at all once the token is full,
// a value seen twice in one batch kept once.
func TestRecordMinutesSightings(t *testing.T) {
	const max = 3
	eachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		minute := time.Now().UTC().Truncate(time.Minute)
		record := func(batch ...policy.MinuteUsage) map[string]time.Time {
			t.Helper()
			if err := db.RecordMinutes(ctx, batch, max); err != nil {
				t.Fatalf("RecordMinutes: %v", err)
			}
			rows, err := db.Sightings(ctx)
			if err != nil {
				t.Fatalf("read sightings: %v", err)
			}
			out := map[string]time.Time{}
			for _, r := range rows {
				out[r.TokenID+" "+r.Kind+" "+r.Value] = r.LastSeen
			}
			// The next batch's clock reads later than this one's.
			time.Sleep(5 * time.Millisecond)
			return out
		}
		use := func(token string, networks, sites []string) policy.MinuteUsage {
			return policy.MinuteUsage{TokenID: token, AccountID: "acc_1", Minute: minute, Requests: 1, Networks: networks, Sites: sites}
		}
		first := record(use("tok_a", []string{"n1", "n2"}, nil))
		second := record(
			use("tok_a", []string{"n2", "n3", "n4"}, []string{"s1"}),
			use("tok_b", []string{"n1"}, nil),
			nextMinute(use("tok_b", []string{"n1", "n2"}, nil)), // the same token in another row
		)
		want := []string{"tok_a network n1", "tok_a network n2", "tok_a network n3", "tok_a site s1", "tok_b network n1", "tok_b network n2"}
		if got := keys(second); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("after the second batch got %v, want %v (n4 past the bound of %d)", got, want, max)
		}
		if !second["tok_a network n2"].After(first["tok_a network n2"]) {
			t.Errorf("a kept value seen again: last_seen %v, want after %v", second["tok_a network n2"], first["tok_a network n2"])
		}
		if !second["tok_a network n1"].Equal(first["tok_a network n1"]) {
			t.Errorf("a kept value not seen: last_seen moved from %v to %v", first["tok_a network n1"], second["tok_a network n1"])
		}
		// tok_a's networks are full: nothing of them moves, its sites do.
		third := record(use("tok_a", []string{"n1", "n5"}, []string{"s1", "s2"}))
		if !third["tok_a network n1"].Equal(second["tok_a network n1"]) {
			t.Errorf("a full token's kept value: last_seen moved from %v to %v, want it left", second["tok_a network n1"], third["tok_a network n1"])
		}
		if _, ok := third["tok_a network n5"]; ok {
			t.Errorf("a full token kept a new network")
		}
		if _, ok := third["tok_a site s2"]; !ok || !third["tok_a site s1"].After(second["tok_a site s1"]) {
			t.Errorf("sites with room: got %v", third)
		}
	})
}

func nextMinute(u policy.MinuteUsage) policy.MinuteUsage {
	u.Minute = u.Minute.Add(time.Minute)
	return u
}

func keys(m map[string]time.Time) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
