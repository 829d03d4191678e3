package policy_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
)

// sigN returns a distinct signature for each n.
func sigN(n int) [sha256.Size]byte { return sha256.Sum256([]byte(strconv.Itoa(n))) }

// mustRemember calls Remember and checks its answer: want is "new",
// "seen", "token full" or "full".
func mustRemember(tb testing.TB, r *policy.ReplayCache, tok string, sig [sha256.Size]byte, until time.Time, want string) {
	tb.Helper()
	fresh, err := r.Remember(context.Background(), tok, sig, until)
	got := "seen"
	var full *policy.ReplayFullError
	switch {
	case errors.As(err, &full) && full.Token:
		got = "token full"
	case errors.As(err, &full):
		got = "full"
	case err != nil:
		tb.Fatalf("remember: %v", err)
	case fresh:
		got = "new"
	}
	if got != want {
		tb.Errorf("remember %s's %x…: got %s, want %s", tok, sig[:4], got, want)
	}
}

func TestReplayCache(t *testing.T) {
	const window = 5 * time.Minute
	cases := map[string]func(t *testing.T, c *clock, r *policy.ReplayCache){
		"a signature is new once": func(t *testing.T, c *clock, r *policy.ReplayCache) {
			until := c.now().Add(window)
			mustRemember(t, r, "tok_a", sigN(1), until, "new")
			mustRemember(t, r, "tok_a", sigN(1), until, "seen")
			mustRemember(t, r, "tok_a", sigN(2), until, "new")
			mustRemember(t, r, "tok_a", sigN(1), until, "seen")
		},
		"a flood from another token does not evict": func(t *testing.T, c *clock, r *policy.ReplayCache) {
			until := c.now().Add(window)
			mustRemember(t, r, "tok_victim", sigN(0), until, "new")
			for i := 1; i <= 1000; i++ {
				fresh, err := r.Remember(context.Background(), "tok_flood", sigN(i), until)
				if fresh && i > 2*4 {
					t.Fatalf("flood %d: remembered beyond the token's share (4 a generation, 2 generations)", i)
				}
				if !fresh && err == nil {
					t.Fatalf("flood %d: got seen, want new or refused", i)
				}
			}
			mustRemember(t, r, "tok_victim", sigN(0), until, "seen")
			mustRemember(t, r, "tok_victim", sigN(5000), until, "new")
		},
		"a token's share full refuses that token only": func(t *testing.T, c *clock, r *policy.ReplayCache) {
			until := c.now().Add(window)
			mustRemember(t, r, "tok_a", sigN(0), until, "new") // starts a generation
			for i := 1; i <= 4; i++ {
				mustRemember(t, r, "tok_a", sigN(i), until, "new")
			}
			mustRemember(t, r, "tok_a", sigN(5), until, "token full")
			mustRemember(t, r, "tok_a", sigN(3), until, "seen") // a replay is still a replay
			mustRemember(t, r, "tok_b", sigN(6), until, "new")
		},
		"the whole cache full refuses everyone": func(t *testing.T, c *clock, r *policy.ReplayCache) {
			until := c.now().Add(window)
			mustRemember(t, r, "tok_0", sigN(0), until, "new")
			for i := 1; i <= 8; i++ {
				mustRemember(t, r, "tok_"+strconv.Itoa(i), sigN(i), until, "new")
			}
			mustRemember(t, r, "tok_new", sigN(100), until, "full")
			mustRemember(t, r, "tok_0", sigN(0), until, "seen")
		},
		"kept while fresh, dropped after": func(t *testing.T, c *clock, r *policy.ReplayCache) {
			mustRemember(t, r, "tok_a", sigN(0), c.now().Add(window), "new")
			mustRemember(t, r, "tok_a", sigN(1), c.now().Add(window), "new")
			c.advance(window) // the last moment both are fresh
			mustRemember(t, r, "tok_a", sigN(2), c.now().Add(window), "new")
			mustRemember(t, r, "tok_a", sigN(0), c.now().Add(window), "seen")
			mustRemember(t, r, "tok_a", sigN(1), c.now().Add(window), "seen")
			c.advance(time.Nanosecond)
			mustRemember(t, r, "tok_a", sigN(0), c.now().Add(window), "new")
			mustRemember(t, r, "tok_a", sigN(2), c.now().Add(window), "seen")
		},
		"refusing says when there will be room": func(t *testing.T, c *clock, r *policy.ReplayCache) {
			mustRemember(t, r, "tok_a", sigN(0), c.now().Add(window), "new")
			c.advance(time.Minute)
			for i := 1; i <= 4; i++ {
				mustRemember(t, r, "tok_a", sigN(i), c.now().Add(window), "new")
			}
			_, err := r.Remember(context.Background(), "tok_a", sigN(5), c.now().Add(window))
			var full *policy.ReplayFullError
			if !errors.As(err, &full) || full.RetryAfter != window-time.Minute+time.Nanosecond {
				t.Fatalf("got %v, want a refusal for %v", err, window-time.Minute+time.Nanosecond)
			}
			c.advance(full.RetryAfter)
			mustRemember(t, r, "tok_a", sigN(5), c.now().Add(window), "new")
			mustRemember(t, r, "tok_a", sigN(4), c.now().Add(window), "seen")
		},
		"forget gives back the signature and the share": func(t *testing.T, c *clock, r *policy.ReplayCache) {
			until := c.now().Add(window)
			mustRemember(t, r, "tok_a", sigN(0), until, "new")
			for i := 1; i <= 4; i++ {
				mustRemember(t, r, "tok_a", sigN(i), until, "new")
			}
			if err := r.Forget(context.Background(), "tok_a", sigN(4)); err != nil {
				t.Fatal(err)
			}
			mustRemember(t, r, "tok_a", sigN(5), until, "new")
			mustRemember(t, r, "tok_a", sigN(4), until, "token full")
			if err := r.Forget(context.Background(), "tok_a", sigN(0)); err != nil { // in the older generation
				t.Fatal(err)
			}
			mustRemember(t, r, "tok_b", sigN(0), until, "new")
		},
		"concurrent copies: one is new": func(t *testing.T, c *clock, r *policy.ReplayCache) {
			until := c.now().Add(window)
			var wg sync.WaitGroup
			var mu sync.Mutex
			news := 0
			for range 32 {
				wg.Go(func() {
					fresh, err := r.Remember(context.Background(), "tok_a", sigN(7), until)
					if err != nil {
						t.Error(err)
					}
					if fresh {
						mu.Lock()
						news++
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if news != 1 {
				t.Errorf("got %d callers told new, want 1", news)
			}
		},
	}
	for name, run := range cases {
		t.Run(name, func(t *testing.T) {
			c := newClock()
			run(t, c, mustReplayCache(t, 8, 4, c))
		})
	}
}

func TestReplayConfig(t *testing.T) {
	for name, c := range map[string]struct {
		cfg  policy.ReplayConfig
		want string
	}{
		"ok":              {cfg: policy.ReplayConfig{Size: 10, PerToken: 10}},
		"no size":         {cfg: policy.ReplayConfig{PerToken: 1}, want: "the replay memory must hold at least 1 signature"},
		"no share":        {cfg: policy.ReplayConfig{Size: 1}, want: "one token's share of the replay memory must be at least 1"},
		"share too large": {cfg: policy.ReplayConfig{Size: 10, PerToken: 11}, want: "one token's share of the replay memory (11) must not exceed its size (10)"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := policy.NewReplayCache(c.cfg, time.Now)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

// meterFunc is a policy.Meter whose Settle is a function.
type meterFunc func(d policy.Decision) (policy.Decision, error)

func (m meterFunc) Settle(_ context.Context, _ policy.Policy, d policy.Decision) (policy.Decision, error) {
	return m(d)
}

// TestReplayCatalogue is the replay-protection attack class through the
// Decider: what uses up a signature, and what may not.
func TestReplayCatalogue(t *testing.T) {
	inside, outside := netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("198.51.100.1")
	restrict := func(tok *policy.Token) {
		tok.IPs = []string{"203.0.113.0/24"}
		tok.Datasets = map[string]policy.Actions{"prices": policy.Actions(policy.Read)}
	}
	// request returns a request from inside, reading prices, signed now.
	request := func(f *sigFixture, n int) policy.Request {
		req := f.request()
		req.IP, req.Dataset, req.Action = inside, "prices", policy.Read
		req.RawQuery += "&n=" + strconv.Itoa(n)
		sigSign(t, &req, f.tok.ID, f.secret, f.clock.now())
		return req
	}
	var charges chargeCounter
	cases := map[string]struct {
		meter policy.Meter
		run   func(t *testing.T, f *sigFixture, d *policy.Decider)
	}{
		"denied for its IP, the signature is not used up": {run: func(t *testing.T, f *sigFixture, d *policy.Decider) {
			req := request(f, 0)
			bad := req
			bad.IP = outside
			expect(t, d, bad, policy.CodeIPDenied)
			expect(t, d, req, "")
			expect(t, d, req, policy.CodeSignatureReplayed)
		}},
		"denied for its dataset, the signature is not used up": {run: func(t *testing.T, f *sigFixture, d *policy.Decider) {
			req := request(f, 0)
			bad := req
			bad.Dataset = "payroll"
			expect(t, d, bad, policy.CodeDatasetDenied)
			expect(t, d, req, "")
			expect(t, d, req, policy.CodeSignatureReplayed)
		}},
		"denied requests take none of the token's share": {run: func(t *testing.T, f *sigFixture, d *policy.Decider) {
			for i := range 20 {
				bad := request(f, i)
				bad.IP = outside
				expect(t, d, bad, policy.CodeIPDenied)
			}
			for i := range 5 { // one starts a generation, four fill it
				expect(t, d, request(f, 100+i), "")
			}
		}},
		"refused by the meter, the signature is not used up": {
			meter: refuseFirst(),
			run: func(t *testing.T, f *sigFixture, d *policy.Decider) {
				req := request(f, 0)
				expect(t, d, req, policy.CodeRateLimited)
				expect(t, d, req, "")
				expect(t, d, req, policy.CodeSignatureReplayed)
			},
		},
		// The meter sees every decision but charges only allows: a
		// replay must reach it already refused.
		"a replay is never charged": {
			meter: &charges,
			run: func(t *testing.T, f *sigFixture, d *policy.Decider) {
				req := request(f, 0)
				expect(t, d, req, "")
				for range 3 {
					expect(t, d, req, policy.CodeSignatureReplayed)
				}
				if got := charges.Load(); got != 1 {
					t.Errorf("got %d requests charged, want 1", got)
				}
			},
		},
		"a full share refuses, and forgets nothing": {run: func(t *testing.T, f *sigFixture, d *policy.Decider) {
			var sent []policy.Request
			for i := range 5 {
				req := request(f, i)
				expect(t, d, req, "")
				sent = append(sent, req)
			}
			dec := mustDecide(t, d, request(f, 5))
			if dec.Code != policy.CodeReplayUnverifiable || dec.Usage.RetryAfter <= 0 {
				t.Fatalf("got %q retry after %v, want %q and a time to retry", dec.Code, dec.Usage.RetryAfter, policy.CodeReplayUnverifiable)
			}
			for _, req := range sent {
				expect(t, d, req, policy.CodeSignatureReplayed)
			}
		}},
		"concurrent copies are allowed once": {run: func(t *testing.T, f *sigFixture, d *policy.Decider) {
			expect(t, d, request(f, 99), "") // load the policy
			req := request(f, 0)
			var wg sync.WaitGroup
			var mu sync.Mutex
			allowed := 0
			for range 32 {
				wg.Go(func() {
					dec := mustDecide(t, d, req)
					if dec.Allow {
						mu.Lock()
						allowed++
						mu.Unlock()
					} else if dec.Code != policy.CodeSignatureReplayed {
						t.Errorf("got %q, want allowed or %q", dec.Code, policy.CodeSignatureReplayed)
					}
				})
			}
			wg.Wait()
			if allowed != 1 {
				t.Errorf("got %d copies allowed, want 1", allowed)
			}
		}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			f := newSigFixture(t, policy.Publishable)
			restrict(f.tok)
			if err := f.tok.Normalize(); err != nil {
				t.Fatal(err)
			}
			cache, err := policy.NewCache(f.store, testCacheConfig(), f.clock.now, f.box.Open)
			if err != nil {
				t.Fatal(err)
			}
			d := policy.NewDecider(cache, c.meter, f.clock.now, policy.EvalOptions{Signatures: policy.SignatureOptions{
				Skew: sigSkew, Replay: mustReplayCache(t, 100, 4, f.clock)}})
			c.run(t, f, d)
		})
	}
}

// refuseFirst is a meter that rate-limits the first request it is asked
// to charge and lets the rest through.
func refuseFirst() policy.Meter {
	var once sync.Once
	return meterFunc(func(d policy.Decision) (policy.Decision, error) {
		if !d.Allow {
			return d, nil
		}
		refused := false
		once.Do(func() { refused = true })
		if refused {
			d.Allow, d.Code, d.Message, d.Cost = false, policy.CodeRateLimited, "slow down", 0
		}
		return d, nil
	})
}

// chargeCounter is a meter that counts the allowed decisions it is asked
// to charge.
type chargeCounter struct{ atomic.Int64 }

func (c *chargeCounter) Settle(_ context.Context, _ policy.Policy, d policy.Decision) (policy.Decision, error) {
	if d.Allow {
		c.Add(1)
	}
	return d, nil
}

// BenchmarkReplayRemember is the replay memory's cost per signed request:
// one Remember of a fresh signature, from all cores at once, for one busy
// token and spread over many tokens. Signatures are made before the timer
// starts; the cache is sized to hold them all.
func BenchmarkReplayRemember(b *testing.B) {
	for _, tokens := range []int{1, 1000} {
		b.Run("tokens="+strconv.Itoa(tokens), func(b *testing.B) {
			ids := make([]string, tokens)
			for i := range ids {
				ids[i] = policy.NewID("tok")
			}
			sigs := make([][sha256.Size]byte, b.N)
			for i := range sigs {
				sigs[i] = sigN(i)
			}
			r := mustReplayCache(b, b.N+1, b.N+1, nil)
			until := time.Now().Add(time.Hour)
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					i := int(next.Add(1) - 1)
					if fresh, err := r.Remember(ctx, ids[i%tokens], sigs[i], until); !fresh || err != nil {
						b.Errorf("remember %d: got %v, %v; want new", i, fresh, err)
						return
					}
				}
			})
		})
	}
}
