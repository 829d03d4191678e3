package e2e_test

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/redislimit/redistest"
	"github.com/tollgate/tollgate/internal/store"
)

// fleetRate is what a rate-limited token sustained, in allows a second
// over a measuring window that starts after a warm-up (so the burst, and
// in the Postgres-only mode the shares' convergence, are left out).
type fleetRate struct {
	allowed, sent, errors int64
	window                time.Duration
}

func (f fleetRate) rps() float64 { return float64(f.allowed) / f.window.Seconds() }

// driveRate sends Checks from workers goroutines (a worker's n-th with
// calls[(worker+n) % len(calls)]), each pausing pace
// between Checks (so the offered load is workers/pace, well above the
// limit, without spinning a loaded machine), for warmup+window. pick
// chooses the replica for a worker's n-th Check. Allows are counted only
// inside the window, by the time each Check was sent.
func driveRate(reps []*replica, calls []call, workers int, pace, warmup, window time.Duration, pick func(worker, n int) int) fleetRate {
	start := time.Now()
	from, until := start.Add(warmup), start.Add(warmup+window)
	var allowed, sent, errs atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for n := 0; ; n++ {
				at := time.Now()
				if !at.Before(until) {
					return
				}
				o := reps[pick(w, n)].check(calls[(w+n)%len(calls)], 5*time.Second)
				if o.GRPC != 0 || o.Bad != "" || (!o.Allowed && o.DenyCode != string(policy.CodeRateLimited)) {
					errs.Add(1)
				}
				if !at.Before(from) {
					sent.Add(1)
					if o.Allowed {
						allowed.Add(1)
					}
				}
				time.Sleep(pace)
			}
		})
	}
	wg.Wait()
	return fleetRate{allowed: allowed.Load(), sent: sent.Load(), errors: errs.Load(), window: window}
}

// checkFleetRate runs the fleet-wide evidence on four replicas, for a
// token's own limit and for an account's limit shared by two of its
// tokens: traffic that all goes through one replica sustains at least 90%
// of the limit, and traffic spread round-robin over every replica
// sustains at most 110% of it. Both spreads run at once, on two subjects.
func checkFleetRate(t *testing.T, db *store.DB, reps []*replica, warmup time.Duration) {
	t.Helper()
	const limit, burst = 50, 10
	rl := &policy.RateLimit{RPS: limit, Burst: burst}
	// Two subjects for each kind of limit: one for each spread.
	subjects := func(kind string) [2][]call {
		var out [2][]call
		for i := range out {
			switch kind {
			case "token":
				acc := MustCreateAccount(t, db, "Fleet Ltd", false)
				_, v := MustCreateToken(t, db, acc.ID, func(tok *policy.Token) { tok.RateLimit = rl })
				out[i] = []call{{Token: v, Ext: meteredExt()}}
			case "account":
				acc := MustCreateAccount(t, db, "Fleet Ltd", false)
				MustUpdateAccountRate(t, db, acc.ID, rl)
				for range 2 {
					_, v := MustCreateToken(t, db, acc.ID, nil)
					out[i] = append(out[i], call{Token: v, Ext: meteredExt()})
				}
			}
		}
		return out
	}
	for _, kind := range []string{"token", "account"} {
		t.Run(kind, func(t *testing.T) { checkSpreads(t, reps, subjects(kind), limit, warmup) })
	}
}

// checkSpreads drives two subjects with one limit: the first through one
// replica, the second round-robin over all.
func checkSpreads(t *testing.T, reps []*replica, subjects [2][]call, limit float64, warmup time.Duration) {
	const workers = 4
	pace, window := 10*time.Millisecond, 4*time.Second // offered: 400 a second per subject
	var one, rr fleetRate
	var wg sync.WaitGroup
	wg.Go(func() {
		one = driveRate(reps, subjects[0], workers, pace, warmup, window, func(int, int) int { return 0 })
	})
	wg.Go(func() {
		rr = driveRate(reps, subjects[1], workers, pace, warmup, window, func(w, n int) int { return (w + n) % len(reps) })
	})
	wg.Wait()
	t.Logf("limit %.0f rps, %d replicas, window %v after %v: one replica %.1f rps (%.0f%%, %d of %d sent), round-robin %.1f rps (%.0f%%, %d of %d sent)",
		limit, len(reps), window, warmup, one.rps(), 100*one.rps()/limit, one.allowed, one.sent,
		rr.rps(), 100*rr.rps()/limit, rr.allowed, rr.sent)
	if one.errors+rr.errors > 0 {
		t.Errorf("answers other than allow or rate_limited: got %d, want 0", one.errors+rr.errors)
	}
	if one.rps() < 0.9*limit {
		t.Errorf("all traffic through one replica: got %.1f rps, want at least 90%% of the limit %.0f", one.rps(), limit)
	}
	if rr.rps() > 1.1*limit {
		t.Errorf("traffic round-robin over %d replicas: got %.1f rps, want at most 110%% of the limit %.0f", len(reps), rr.rps(), limit)
	}
}

// TestFleetRateLimitRedis: with --redis-url, four replicas on one
// database and one Redis hold a token to its limit however its traffic
// is spread.
func TestFleetRateLimitRedis(t *testing.T) {
	t.Parallel()
	db, dbURL := MustOpenDB(t)
	// A loaded test machine can take longer than the default 10ms to
	// answer; this test is about the fleet-wide figure, not the fallback.
	reps := startMeteredReplicas(t, dbURL, 4, "--redis-url", redistest.URL(), "--redis-timeout", "500ms")
	checkFleetRate(t, db, reps, time.Second)
	for _, r := range reps {
		if v, _ := r.metric(t, "tollgate_ratelimit_fallback_total"); v != 0 {
			t.Errorf("%s fell back %v times with Redis up, want 0", r.name, v)
		}
	}
}

// redisProcess is a redis-server of the test's own, on a free port, that
// can be stopped and started again like a Redis being restarted.
type redisProcess struct {
	addr string
	cmd  *exec.Cmd
}

func startRedis(tb testing.TB, addr string) *redisProcess {
	tb.Helper()
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start redis-server (is it installed? run .ci/redis.sh): %v", err)
	}
	p := &redisProcess{addr: addr, cmd: cmd}
	tb.Cleanup(p.stop)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return p
		}
		if time.Now().After(deadline) {
			tb.Fatalf("redis-server on %s not answering after 10s", addr)
		}
	}
}

func (p *redisProcess) stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	p.cmd.Process.Kill()
	p.cmd.Wait()
}

// TestFleetRateLimitRedisFaults stops Redis under load, makes it slow, and
// starts it again. Every Check is answered (allow or rate_limited, never an
// error, never a hang); while Redis is away each replica enforces its
// share of the limit, counts the fallback and logs it once; when Redis is
// back the limit is fleet-wide again.
func TestFleetRateLimitRedisFaults(t *testing.T) {
	t.Parallel()
	const limit, burst, replicas = 40, 4, 2
	db, dbURL := MustOpenDB(t)
	redisAddr := freeAddr(t)
	rp := startRedis(t, redisAddr)
	proxy := newPGProxy(t, redisAddr) // a TCP proxy: here it slows Redis down
	reps := startMeteredReplicas(t, dbURL, replicas, "--redis-url", "redis://"+proxy.ln.Addr().String(), "--redis-timeout", "100ms")
	acc := MustCreateAccount(t, db, "Faulty Ltd", false)
	_, value := MustCreateToken(t, db, acc.ID, func(tok *policy.Token) { tok.RateLimit = &policy.RateLimit{RPS: limit, Burst: burst} })
	c := call{Token: value, Ext: meteredExt()}
	onePod := func(int, int) int { return 0 }
	// fleetwide waits until the loaded replica reports want, sending a
	// Check now and then: only a Check tries Redis again.
	fleetwide := func(want float64) {
		t.Helper()
		r := reps[0]
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if v, _ := r.metric(t, "tollgate_ratelimit_fleetwide"); v == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: tollgate_ratelimit_fleetwide not %v within 10s", r.name, want)
			}
			if o := r.check(c, 5*time.Second); o.GRPC != 0 || o.Bad != "" {
				t.Errorf("%s: Check while waiting for fleetwide %v: got %v, want an answer", r.name, want, o)
			}
		}
	}

	up := driveRate(reps, []call{c}, 4, 10*time.Millisecond, 500*time.Millisecond, 2*time.Second, onePod)
	t.Logf("Redis up: %.1f rps through one of %d replicas", up.rps(), replicas)
	fleetwide(1)

	// Stopped: connections are refused at once.
	rp.stop()
	down := driveRate(reps, []call{c}, 4, 10*time.Millisecond, 500*time.Millisecond, 2*time.Second, onePod)
	t.Logf("Redis stopped: %.1f rps through one of %d replicas (its share starts at %d and follows demand)", down.rps(), replicas, limit/replicas)
	fleetwide(0)
	// Its share: R/N at first, then nearly all of R as its demand is
	// reported; never more than the limit (with room for the burst).
	if down.rps() > 1.1*limit+float64(burst) || down.allowed == 0 {
		t.Errorf("with Redis stopped: got %.1f rps through one replica, want within the limit %d (never unbounded, never nothing)", down.rps(), limit)
	}

	// Started again (an empty Redis: the script is loaded anew).
	startRedis(t, redisAddr)
	fleetwide(1)
	back := driveRate(reps, []call{c}, 4, 10*time.Millisecond, 500*time.Millisecond, 2*time.Second, onePod)
	t.Logf("Redis restarted: %.1f rps through one replica", back.rps())
	if back.rps() < 0.8*limit {
		t.Errorf("after Redis restarted: got %.1f rps through one replica, want the whole limit %d again", back.rps(), limit)
	}

	// Slow: every answer comes back later than --redis-timeout.
	proxy.setLatency(300 * time.Millisecond)
	slow := driveRate(reps, []call{c}, 4, 10*time.Millisecond, 500*time.Millisecond, 2*time.Second, onePod)
	t.Logf("Redis slow (300ms): %.1f rps through one replica", slow.rps())
	fleetwide(0)
	proxy.setLatency(0)
	fleetwide(1)

	for name, f := range map[string]fleetRate{"up": up, "stopped": down, "restarted": back, "slow": slow} {
		if f.errors > 0 {
			t.Errorf("Redis %s: got %d answers other than allow or rate_limited, want 0", name, f.errors)
		}
	}
	if v, _ := reps[0].metric(t, "tollgate_ratelimit_fallback_total"); v < float64(down.sent) {
		t.Errorf("tollgate_ratelimit_fallback_total after Redis stopped: got %v, want at least the %d Checks sent meanwhile", v, down.sent)
	}
	stopGracefully(t, reps...)
	// Once per outage (stopped, slow), not once per Check; a slow Redis
	// that answers a probe in time now and then may add a few.
	if n := strings.Count(reps[0].stderr.String(), "fleet limiter (Redis) failed"); n < 2 || n > 6 {
		t.Errorf("%s logged the fallback %d times, want about once per outage (2)", reps[0].name, n)
	}
}

// TestFleetRateLimitShares: without Redis, four replicas on one database
// split each limit by demand (reported through Postgres every second), so
// a token whose traffic all goes through one replica gets nearly the whole
// limit after a warm-up, and traffic spread over all of them still sums to
// the limit.
func TestFleetRateLimitShares(t *testing.T) {
	t.Parallel()
	db, dbURL := MustOpenDB(t)
	reps := startMeteredReplicas(t, dbURL, 4)
	for _, r := range reps {
		// The shares are split between the replicas each has counted.
		r.waitMetric(t, "tollgate_replicas", 10*time.Second, func(v float64) bool { return v == 4 }, "4 replicas counted")
	}
	checkFleetRate(t, db, reps, 3*time.Second)
}

// MustUpdateAccountRate sets an account's rate limit.
func MustUpdateAccountRate(tb testing.TB, db *store.DB, id string, rl *policy.RateLimit) {
	tb.Helper()
	if _, err := db.UpdateAccount(context.Background(), id, func(a *policy.Account) error {
		cp := *rl
		a.RateLimit = &cp
		return nil
	}); err != nil {
		tb.Fatalf("set the rate limit of account %s: %v", id, err)
	}
}
