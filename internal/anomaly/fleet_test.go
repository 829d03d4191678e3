package anomaly_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/anomaly"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/internal/store/storetest"
)

// decider is a fake Decider: it answers what the test says.
type decider struct {
	answer func(req *policy.Request) policy.Decision
}

func (d decider) Decide(_ context.Context, req *policy.Request) (policy.Decision, error) {
	return d.answer(req), nil
}

// clock is a settable clock shared by the replicas and the store.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestFlagsAcrossReplicas: two replicas each see less than any threshold,
// the fleet together more; one detection run (of two racing) opens each
// flag once, a later run opens nothing new, and a resolved flag stays
// closed for what the window still holds.
func TestFlagsAcrossReplicas(t *testing.T) {
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) { testFlagsAcrossReplicas(t, d) })
	}
}

func testFlagsAcrossReplicas(t *testing.T, dialect store.Dialect) {
	db, _ := storetest.MustOpen(t, dialect)
	ctx := context.Background()
	// The tokens were made a month ago.
	clk := &clock{t: time.Date(2026, 2, 1, 12, 0, 0, 0, time.UTC)}
	db.Now = clk.now

	acc := &policy.Account{Name: "Acme"}
	secret, _, err := db.CreateAccount(ctx, acc)
	if err != nil {
		t.Fatal(err)
	}
	web, copied := policy.NewToken(acc.ID, policy.Publishable), policy.NewToken(acc.ID, policy.Publishable)
	for _, tok := range []*policy.Token{web, copied} {
		if _, err := db.CreateToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	// Two days ago each token was seen from its usual network and site;
	// over the last day, 60 requests an hour.
	start := time.Date(2026, 3, 2, 12, 0, 20, 0, time.UTC)
	home := start.AddDate(0, 0, -2)
	clk.set(home)
	var history []policy.MinuteUsage
	for _, id := range []string{web.ID, copied.ID, secret.ID} {
		history = append(history, policy.MinuteUsage{TokenID: id, AccountID: acc.ID, Minute: home.Truncate(time.Minute), Requests: 1,
			Networks: []string{"203.0.113.0/24"}, Sites: []string{"app.acme.test"}})
	}
	for h := 1; h <= 23; h++ {
		for _, id := range []string{web.ID, copied.ID, secret.ID} {
			history = append(history, policy.MinuteUsage{TokenID: id, AccountID: acc.ID,
				Minute: start.Add(-time.Duration(h) * time.Hour).Truncate(time.Minute), Requests: 60})
		}
	}
	if err := db.RecordMinutes(ctx, history, anomaly.MaxSightings); err != nil {
		t.Fatal(err)
	}

	// The window: 11:50 to 12:00. Each replica answers the same tokens.
	clk.set(start.Add(-5 * time.Minute))
	kinds := map[string]policy.Kind{web.ID: policy.Publishable, copied.ID: policy.Publishable, secret.ID: policy.Secret}
	values := map[string]string{}
	for id := range kinds {
		values[id] = id // the fake decider reads the token id from the request
	}
	answer := func(req *policy.Request) policy.Decision {
		d := policy.Decision{Allow: true, TokenID: req.Token, AccountID: acc.ID, Kind: kinds[req.Token]}
		if req.Referer == "https://copycat.example/page" {
			d.Allow, d.Code = false, policy.CodeRefererDenied
		}
		return d
	}
	var replicas []*anomaly.Recorder
	for range 2 {
		r, err := anomaly.NewRecorder(decider{answer}, db, anomaly.DefaultRecorderConfig(), clk.now, quiet)
		if err != nil {
			t.Fatal(err)
		}
		replicas = append(replicas, r)
	}
	usual, elsewhere := netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("198.51.100.7")
	for _, r := range replicas {
		for range 400 { // 800 across the fleet: a spike over 10 per window, above the 600 minimum
			r.Decide(ctx, &policy.Request{Token: web.ID, IP: usual})
		}
		for range 60 { // 120 referer_denied across the fleet: a burst over 100
			r.Decide(ctx, &policy.Request{Token: copied.ID, IP: elsewhere, Referer: "https://copycat.example/page", FromBrowser: true})
		}
		r.Decide(ctx, &policy.Request{Token: copied.ID, IP: usual, Referer: "https://app.acme.test/"})
		r.Flush(ctx)
	}
	replicas[1].Decide(ctx, &policy.Request{Token: secret.ID, IP: usual, Origin: "https://app.acme.test", FromBrowser: true})
	replicas[1].Flush(ctx)

	clk.set(start.Add(time.Minute)) // 12:01:20: the window 11:50–12:00 has settled
	var gauge map[policy.FlagKind]int64
	var gmu sync.Mutex
	// The webhook hears of each flag once, whichever detector opened it.
	var hooked sync.Map
	var hooks atomic.Int64
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Event string      `json:"event"`
			Flag  policy.Flag `json:"flag"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Event != "token.flagged" {
			t.Errorf("webhook body: %+v, %v", body, err)
		}
		hooked.Store(body.Flag.TokenID+" "+string(body.Flag.Kind), true)
		hooks.Add(1)
	}))
	defer hook.Close()
	cfg := anomaly.DefaultDetectorConfig()
	detectors := make([]*anomaly.Detector, 2)
	for i := range detectors {
		if detectors[i], err = anomaly.NewDetector(db, cfg, clk.now, quiet, anomaly.Webhook(hook.URL, hook.Client(), quiet), func(c map[policy.FlagKind]int64) {
			gmu.Lock()
			gauge = c
			gmu.Unlock()
		}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	opened := make([][]policy.Flag, 2)
	for i, d := range detectors {
		wg.Go(func() {
			var err error
			if opened[i], err = d.RunOnce(ctx); err != nil {
				t.Errorf("detector %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	got := map[string]bool{}
	for _, fs := range opened {
		for _, f := range fs {
			key := f.TokenID + " " + string(f.Kind)
			if got[key] {
				t.Errorf("flag %s opened twice", key)
			}
			got[key] = true
		}
	}
	want := []string{web.ID + " spike", copied.ID + " denials", copied.ID + " new_network", copied.ID + " new_site",
		secret.ID + " secret_in_browser"}
	for _, k := range want {
		if !got[k] {
			t.Errorf("flag %s not opened (opened: %v)", k, keysOf(got))
		}
	}
	if len(got) != len(want) {
		t.Errorf("opened %v, want exactly %v", keysOf(got), want)
	}
	if n := hooks.Load(); n != int64(len(want)) {
		t.Errorf("webhook calls: got %d, want %d (one per flag)", n, len(want))
	}
	for _, k := range want {
		if _, ok := hooked.Load(k); !ok {
			t.Errorf("webhook did not hear of %s", k)
		}
	}
	if gauge[policy.FlagSpike] != 1 || gauge[policy.FlagNewSite] != 1 {
		t.Errorf("open flags gauge: got %v, want one spike and one new_site", gauge)
	}

	// A later run refreshes what is still there and opens nothing new.
	clk.set(start.Add(2 * time.Minute))
	if again, err := detectors[0].RunOnce(ctx); err != nil || len(again) != 0 {
		t.Errorf("second run: opened %v (%v), want none", again, err)
	}
	flags, err := db.Flags(ctx, acc.ID, web.ID, "", true, 10)
	if err != nil || len(flags) != 1 {
		t.Fatalf("web's open flags: %v (%v)", flags, err)
	}
	if _, err := db.ResolveFlag(ctx, flags[0].ID, "usr_test"); err != nil {
		t.Fatal(err)
	}
	clk.set(start.Add(3 * time.Minute))
	if again, err := detectors[1].RunOnce(ctx); err != nil || len(again) != 0 {
		t.Errorf("run after resolving: opened %v (%v), want none (the window still holds what was resolved)", again, err)
	}
	if gauge[policy.FlagSpike] != 0 {
		t.Errorf("open spike flags after resolving: got %d, want 0", gauge[policy.FlagSpike])
	}
}

func keysOf(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
