// Package redistest gives tests a client of the shared test Redis under a
// key prefix of their own, as storetest gives them a database.
//
// Redis is found at TOLLGATE_TEST_REDIS_URL, by default the local server's
// database 0; .ci/redis.sh installs and starts it on a fresh machine.
// Tests share it, and never a key.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redislimit"
)

// URL returns the test Redis's URL.
func URL() string {
	if u := os.Getenv("TOLLGATE_TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// Prefix returns a key prefix no other test or run uses.
func Prefix(tb testing.TB) string {
	tb.Helper()
	var b [6]byte
	rand.Read(b[:])
	return "tollgate-test:" + tb.Name() + ":" + hex.EncodeToString(b[:]) + ":"
}

// MustOpen returns a client of the test Redis under prefix, closed when tb
// ends. It fails tb when Redis does not answer.
func MustOpen(tb testing.TB, prefix string) *redislimit.Client {
	tb.Helper()
	c, err := redislimit.Open(URL(), prefix)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx); err != nil {
		tb.Fatalf("redis at %s: %v (start it with .ci/redis.sh)", URL(), err)
	}
	return c
}
