package e2e_test

import (
	"context"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestSIGTERMDrains sends SIGTERM to a replica started with
// --drain-delay 500ms. For the drain window it must tell Envoy and
// Kubernetes to go away (/readyz 503, gRPC health NOT_SERVING) while it
// keeps answering Checks; a Check still in flight when the window ends
// must finish; then the process exits 0.
func TestSIGTERMDrains(t *testing.T) {
	t.Parallel()
	const drainDelay = 500 * time.Millisecond
	db, dbURL := MustOpenDB(t)
	acc := MustCreateAccount(t, db, "Drain Ltd", false)
	_, warmValue := MustCreateToken(t, db, acc.ID, nil)
	_, slowValue := MustCreateToken(t, db, acc.ID, nil)
	proxy := newPGProxy(t, postgresAddr(t, dbURL))
	// The credits flush is pushed out of the way: on the slow database
	// below it would hold the warm token's books and delay its Checks (see
	// TestSlowDatabase), which is not what this test is about.
	r := startReplica(t, "drain", proxy.url(t, dbURL), "--drain-delay", drainDelay.String(), "--store-timeout", "5s",
		"--usage-flush-interval", "1h")
	warm := call{Token: warmValue}
	r.mustAllow(t, warm)
	if st := healthStatus(t, r); st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC health before SIGTERM: got %v, want SERVING", st)
	}

	// The slow Check below is a miss on a database 300 ms away (two round
	// trips at least): it is still in flight when the drain window ends
	// and GracefulStop begins. Once it is answered the database is fast
	// again, so that what is measured is the drain, not the shutdown's
	// own writes (credits) on a slow database.
	proxy.setLatency(300 * time.Millisecond)

	// Checks keep coming, as from an Envoy that has not yet noticed.
	type sent struct {
		at time.Time
		o  outcome
	}
	var (
		mu    sync.Mutex
		flow  []sent
		wg    sync.WaitGroup
		sigAt time.Time
	)
	wg.Go(func() {
		for {
			select {
			case <-r.exited:
				return
			default:
			}
			at := time.Now()
			o := r.check(warm, 2*time.Second)
			mu.Lock()
			flow = append(flow, sent{at, o})
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	})
	time.Sleep(50 * time.Millisecond)

	sigAt = time.Now()
	r.signal(t, syscall.SIGTERM)

	var slow outcome
	var slowDone time.Time
	wg.Go(func() {
		time.Sleep(150 * time.Millisecond)
		slow = r.check(call{Token: slowValue}, 10*time.Second)
		slowDone = time.Now()
		proxy.setLatency(0)
	})

	readyTook := waitUntil(t, drainDelay, "/readyz 503 during the drain", func() bool {
		code, err := r.readyz()
		return err == nil && code == http.StatusServiceUnavailable
	})
	healthTook := waitUntil(t, drainDelay, "gRPC health NOT_SERVING during the drain", func() bool {
		return healthStatus(t, r) == healthpb.HealthCheckResponse_NOT_SERVING
	})
	t.Logf("after SIGTERM: /readyz 503 within %v, gRPC health NOT_SERVING within %v", readyTook, healthTook+readyTook)

	select {
	case <-r.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the replica did not exit within 10s of SIGTERM")
	}
	exitedAt := time.Now()
	wg.Wait()
	if r.waitErr != nil {
		t.Errorf("exit after SIGTERM: got %v, want status 0", r.waitErr)
	}
	t.Logf("exited %v after SIGTERM", exitedAt.Sub(sigAt).Round(time.Millisecond))

	// Every Check sent within the drain window was answered.
	var inWindow, allowed int
	for _, s := range flow {
		if s.at.Before(sigAt.Add(drainDelay - 50*time.Millisecond)) {
			inWindow++
			if isAllowed(s.o) {
				allowed++
			} else {
				t.Errorf("Check sent %v after SIGTERM (drain window %v): got %v, want allow", s.at.Sub(sigAt), drainDelay, s.o)
			}
		}
	}
	t.Logf("%d of %d Checks sent before the end of the drain window allowed", allowed, inWindow)

	t.Logf("slow Check sent 150ms after SIGTERM: %v, finished %v after SIGTERM", slow, slowDone.Sub(sigAt).Round(time.Millisecond))
	if !isAllowed(slow) {
		t.Errorf("Check in flight when the drain window ended: got %v, want allow", slow)
	}
	if slowDone.Sub(sigAt) < drainDelay {
		t.Logf("note: the slow Check finished within the drain window, so it did not straddle GracefulStop")
	}
}

// healthStatus asks the replica's gRPC health service about the server as
// a whole (service ""), as Envoy's gRPC health checker does.
func healthStatus(t *testing.T, r *replica) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := r.health.Check(ctx, &healthpb.HealthCheckRequest{Service: ""})
	if err != nil {
		return healthpb.HealthCheckResponse_UNKNOWN
	}
	return resp.GetStatus()
}

// waitUntil polls cond every 10 ms and returns how long it took to hold.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}
