package redislimit_test

import (
	"context"
	"crypto/sha256"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redislimit"
	"github.com/tollgate/tollgate/internal/redislimit/redistest"
)

func allow(tb testing.TB, c *redislimit.Client, key string, rps, burst int64) (bool, int64, time.Duration) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ok, left, wait, err := c.Allow(ctx, key, rps, burst)
	if err != nil {
		tb.Fatalf("allow %s: %v", key, err)
	}
	return ok, left, wait
}

// TestAllowBurstThenRefuse spends a burst: each allow says what is left,
// the next request is refused with a wait of at most one interval, and
// after that wait a request passes again.
func TestAllowBurstThenRefuse(t *testing.T) {
	t.Parallel()
	c := redistest.MustOpen(t, redistest.Prefix(t))
	// One request a second: a loaded machine never refills one between
	// two calls.
	const rps, burst = 1, 5
	for i := range int64(burst) {
		ok, left, _ := allow(t, c, "tok", rps, burst)
		if !ok || left != burst-1-i {
			t.Fatalf("request %d of the burst: got ok=%t left=%d, want ok and left %d", i+1, ok, left, burst-1-i)
		}
	}
	var wait time.Duration
	for range 3 {
		var ok bool
		if ok, _, wait = allow(t, c, "tok", rps, burst); !ok {
			break
		}
	}
	if wait <= 0 || wait > time.Second/rps {
		t.Fatalf("request over the burst: got wait %v, want refused with a wait in (0, %v]", wait, time.Second/rps)
	}
	time.Sleep(wait)
	if ok, _, _ := allow(t, c, "tok", rps, burst); !ok {
		t.Errorf("request after the wait %v: got refused, want allowed", wait)
	}
}

// TestAllowExactAcrossClients spends one limit from several clients at
// once, as replicas do: together they get exactly the burst (plus what
// refills while they run), never one each.
func TestAllowExactAcrossClients(t *testing.T) {
	t.Parallel()
	prefix := redistest.Prefix(t)
	const rps, burst, clients, each = 1, 20, 4, 25
	var allowed atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		c := redistest.MustOpen(t, prefix)
		for range 2 {
			wg.Go(func() {
				for range each {
					if ok, _, _ := allow(t, c, "shared", rps, burst); ok {
						allowed.Add(1)
					}
				}
			})
		}
	}
	wg.Wait()
	refilled := int64(time.Since(start).Seconds()*rps) + 1
	if got := allowed.Load(); got < burst || got > burst+refilled {
		t.Errorf("allowed by %d clients: got %d, want the burst %d plus at most %d refilled", clients, got, burst, refilled)
	}
}

// TestAllowKeysApart checks that limits of different keys, and of the
// same key under different prefixes, never touch each other.
func TestAllowKeysApart(t *testing.T) {
	t.Parallel()
	prefix := redistest.Prefix(t)
	a, b := redistest.MustOpen(t, prefix), redistest.MustOpen(t, prefix+"other:")
	if ok, _, _ := allow(t, a, "k1", 1, 1); !ok {
		t.Fatal("first request of k1: got refused, want allowed")
	}
	for name, c := range map[string]*redislimit.Client{"k2 same prefix": a, "k1 other prefix": b} {
		key := map[string]string{"k2 same prefix": "k2", "k1 other prefix": "k1"}[name]
		if ok, _, _ := allow(t, c, key, 1, 1); !ok {
			t.Errorf("%s after k1 was spent: got refused, want allowed", name)
		}
	}
	if ok, _, _ := allow(t, a, "k1", 1, 1); ok {
		t.Error("second request of k1: got allowed, want refused")
	}
}

// TestAllowErrors covers the calls that must fail rather than guess.
func TestAllowErrors(t *testing.T) {
	t.Parallel()
	// A server that accepts and never answers: a Redis gone quiet.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			conn, err := silent.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	for name, tc := range map[string]struct {
		url        string
		rps, burst int64
		want       string
	}{
		"zero rps":          {redistest.URL(), 0, 5, "must be positive"},
		"zero burst":        {redistest.URL(), 5, 0, "must be positive"},
		"nothing listening": {"redis://" + closedAddr, 5, 5, "rate of"},
		"server silent":     {"redis://" + silent.Addr().String(), 5, 5, "rate of"},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := redislimit.Open(tc.url, redistest.Prefix(t))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			done := make(chan error, 1)
			go func() {
				ok, _, _, err := c.Allow(ctx, "tok", tc.rps, tc.burst)
				if ok {
					t.Error("got allowed, want an error")
				}
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("got error %v, want one containing %q", err, tc.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Allow still waiting 10s after its 50ms deadline")
			}
		})
	}
}

// TestOpenRefusesBadURLs checks that a bad --redis-url is refused at start,
// naming the setting and never repeating a password.
func TestOpenRefusesBadURLs(t *testing.T) {
	t.Parallel()
	for name, url := range map[string]string{
		"http scheme":      "http://127.0.0.1:6379",
		"no scheme":        "127.0.0.1:6379",
		"bad db":           "redis://127.0.0.1:6379/notanumber",
		"password, no url": "redis://u:s3cret@[::1",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := redislimit.Open(url, "p:")
			if err == nil {
				t.Fatalf("got no error for %q, want one", url)
			}
			if !strings.Contains(err.Error(), "redis-url") || strings.Contains(err.Error(), "s3cret") {
				t.Errorf("got %q, want it to name redis-url and not repeat the password", err)
			}
		})
	}
}

// TestRememberOnce checks replay memory: a signature is fresh once across
// every client, other signatures and tokens are apart, and it is forgotten
// when its window ends.
func TestRememberOnce(t *testing.T) {
	t.Parallel()
	prefix := redistest.Prefix(t)
	a, b := redistest.MustOpen(t, prefix), redistest.MustOpen(t, prefix)
	sig, other := sha256.Sum256([]byte("request one")), sha256.Sum256([]byte("request two"))
	ctx := context.Background()
	until := time.Now().Add(300 * time.Millisecond)
	for _, tc := range []struct {
		name  string
		c     *redislimit.Client
		token string
		sig   [32]byte
		fresh bool
	}{
		{"first sight", a, "tok_1", sig, true},
		{"same replica again", a, "tok_1", sig, false},
		{"another replica", b, "tok_1", sig, false},
		{"another signature", b, "tok_1", other, true},
		{"same signature, another token", b, "tok_2", sig, true},
	} {
		fresh, err := tc.c.Remember(ctx, tc.token, tc.sig, until)
		if err != nil || fresh != tc.fresh {
			t.Errorf("%s: got fresh=%t err=%v, want fresh=%t", tc.name, fresh, err, tc.fresh)
		}
	}
	if fresh, err := a.Remember(ctx, "tok_3", sig, time.Now().Add(-time.Second)); err != nil || !fresh {
		t.Errorf("window already passed: got fresh=%t err=%v, want fresh and nothing stored", fresh, err)
	}
	time.Sleep(time.Until(until) + 50*time.Millisecond)
	if fresh, err := b.Remember(ctx, "tok_1", sig, time.Now().Add(time.Second)); err != nil || !fresh {
		t.Errorf("after the window: got fresh=%t err=%v, want fresh (forgotten)", fresh, err)
	}
}

// TestForget checks that a forgotten signature is fresh again on every
// client, that forgetting touches no other signature or token, and that
// forgetting what is not remembered is no error.
func TestForget(t *testing.T) {
	t.Parallel()
	prefix := redistest.Prefix(t)
	a, b := redistest.MustOpen(t, prefix), redistest.MustOpen(t, prefix)
	sig, other := sha256.Sum256([]byte("refused after all")), sha256.Sum256([]byte("kept"))
	ctx := context.Background()
	until := time.Now().Add(time.Minute)
	for _, s := range []struct {
		token string
		sig   [32]byte
	}{{"tok_1", sig}, {"tok_1", other}, {"tok_2", sig}} {
		if fresh, err := a.Remember(ctx, s.token, s.sig, until); err != nil || !fresh {
			t.Fatalf("remember %s: got fresh=%t err=%v, want fresh", s.token, fresh, err)
		}
	}
	if err := a.Forget(ctx, "tok_1", sig); err != nil {
		t.Fatalf("forget: got %v, want nil", err)
	}
	for _, tc := range []struct {
		name  string
		token string
		sig   [32]byte
		fresh bool
	}{
		{"forgotten, from another client", "tok_1", sig, true},
		{"forgotten, sent again", "tok_1", sig, false},
		{"another signature of the token", "tok_1", other, false},
		{"same signature of another token", "tok_2", sig, false},
	} {
		if fresh, err := b.Remember(ctx, tc.token, tc.sig, until); err != nil || fresh != tc.fresh {
			t.Errorf("%s: got fresh=%t err=%v, want fresh=%t", tc.name, fresh, err, tc.fresh)
		}
	}
	if err := b.Forget(ctx, "tok_3", sig); err != nil {
		t.Errorf("forget what was never remembered: got %v, want nil", err)
	}
}

// TestRememberConcurrent sends one signature through many clients at once:
// exactly one is told it is fresh.
func TestRememberConcurrent(t *testing.T) {
	t.Parallel()
	prefix := redistest.Prefix(t)
	sig := sha256.Sum256([]byte("raced"))
	until := time.Now().Add(time.Minute)
	var fresh atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		c := redistest.MustOpen(t, prefix)
		wg.Go(func() {
			ok, err := c.Remember(context.Background(), "tok", sig, until)
			if err != nil {
				t.Error(err)
			}
			if ok {
				fresh.Add(1)
			}
		})
	}
	wg.Wait()
	if got := fresh.Load(); got != 1 {
		t.Errorf("fresh answers for one signature from 8 clients: got %d, want 1", got)
	}
}

// TestRememberUnreachable: a Redis that is down is an error, never fresh.
func TestRememberUnreachable(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c, err := redislimit.Open("redis://"+addr, "p:")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if fresh, err := c.Remember(ctx, "tok", [32]byte{1}, time.Now().Add(time.Minute)); err == nil || fresh {
		t.Errorf("remember: got fresh=%t err=%v, want an error and not fresh", fresh, err)
	}
	if err := c.Forget(ctx, "tok", [32]byte{1}); err == nil {
		t.Errorf("forget: got nil, want an error")
	}
}
