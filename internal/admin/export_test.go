package admin

import (
	"context"
	"net/http"
	"net/netip"
	"testing"
	"time"
)

// Routes lists the API's method and path pairs, for the test that checks
// them against the OpenAPI document.
func Routes() [][2]string {
	var out [][2]string
	for _, r := range (&Handler{}).routes() {
		out = append(out, [2]string{r.method, r.path})
	}
	return out
}

// FillHashPool takes every place in the hashing pool (workers and queue),
// as a flood of sign-ins would, until release is called.
func (h *Handler) FillHashPool(tb testing.TB) (release func()) {
	tb.Helper()
	n := cap(h.hashes.admit)
	held := make(chan struct{})
	started := make(chan struct{}, n)
	for range n {
		go h.hashes.do(context.Background(), func() { started <- struct{}{}; <-held })
	}
	// Workers start at once; the rest wait in the queue, holding admission.
	deadline := time.After(10 * time.Second)
	for range cap(h.hashes.workers) {
		select {
		case <-started:
		case <-deadline:
			close(held)
			tb.Fatal("the hashing pool's workers did not start")
		}
	}
	for len(h.hashes.admit) < n {
		select {
		case <-deadline:
			close(held)
			tb.Fatalf("the hashing pool admitted %d, want %d", len(h.hashes.admit), n)
		case <-time.After(time.Millisecond):
		}
	}
	return func() { close(held) }
}

// ClientIP is clientIP, for its fuzz target.
func ClientIP(r *http.Request, hops int) netip.Addr { return clientIP(r, hops) }

// BearerValue is bearerValue, for its fuzz target.
func BearerValue(r *http.Request) (string, error) { return bearerValue(r) }

// JSONError is jsonError, for the test of its sentences.
func JSONError(field string, err error) (code, errField, message string) {
	pe := jsonError(field, err)
	return string(pe.Code), pe.Field, pe.Message
}
