package e2e_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/redislimit/redistest"
	"github.com/tollgate/tollgate/internal/seal"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/signing"
)

// replayKey seals the signing secrets of the replay tests' tokens; every
// replica is given it as TOLLGATE_ENCRYPTION_KEY.
var replayKey = bytes.Repeat([]byte{0x3c}, seal.KeySize)

// signer is a token that requires signed requests, and its secret.
type signer struct {
	id, value string
	secret    []byte
}

// MustCreateSigner creates a token of a new account that requires signed
// requests, its secret sealed with replayKey.
func MustCreateSigner(tb testing.TB, db *store.DB) signer {
	tb.Helper()
	box, err := seal.NewBox(replayKey)
	if err != nil {
		tb.Fatal(err)
	}
	secret := []byte(policy.NewSigningSecret())
	acc := MustCreateAccount(tb, db, "Signed Ltd", false)
	tok, value := MustCreateToken(tb, db, acc.ID, func(t *policy.Token) {
		t.Signed, t.SigningSecret = true, box.Seal(t.ID, secret)
	})
	return signer{id: tok.ID, value: value, secret: secret}
}

var signedSeq atomic.Uint64

// request returns a new signed request, as Envoy would pass it on: each
// call's path differs, so that each has a signature of its own; sending
// the same CheckRequest again is a replay.
func (s signer) request(tb testing.TB) *authv3.CheckRequest {
	tb.Helper()
	req := envoyRequest(call{Token: s.value})
	h := req.Attributes.Request.Http
	h.Path += fmt.Sprintf("&n=%d", signedSeq.Add(1))
	h.Headers[":path"] = h.Path
	hr, err := http.NewRequest(h.Method, "https://"+h.Host+h.Path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if err := signing.SignHTTP(hr, s.id, s.secret, time.Now()); err != nil {
		tb.Fatalf("sign: %v", err)
	}
	for _, name := range []string{"authorization", signing.DateHeader, signing.ContentHeader} {
		h.Headers[name] = hr.Header.Get(name)
	}
	return req
}

// startSignedReplicas starts n replicas on databaseURL that can check
// signed requests, with extra flags.
func startSignedReplicas(tb testing.TB, databaseURL string, n int, extra ...string) []*replica {
	tb.Helper()
	env := []string{"TOLLGATE_DATABASE_URL=" + databaseURL, "TOLLGATE_ENCRYPTION_KEY=" + base64.StdEncoding.EncodeToString(replayKey)}
	reps := make([]*replica, n)
	for i := range reps {
		reps[i] = startServe(tb, fmt.Sprintf("replica-%c", 'a'+i), env, extra...)
	}
	return reps
}

// mustAnswer sends req to r and fails unless the answer is an allow (want
// "") or a deny with code want.
func mustAnswer(tb testing.TB, r *replica, req *authv3.CheckRequest, want policy.DenyCode, what string) {
	tb.Helper()
	o := r.checkRequest(req, 5*time.Second)
	ok := o.Allowed && o.Bad == "" && want == ""
	if want != "" {
		ok = o.denied(string(want))
	}
	if !ok {
		wantS := "allow"
		if want != "" {
			wantS = "deny " + string(want)
		}
		tb.Errorf("%s: %s got %v, want %s", what, r.name, o, wantS)
	}
}

// TestReplayAcrossReplicas is the replay attack against a fleet: a signed
// request allowed by replica a is captured and sent to replica b. With
// --redis-url, b refuses it; without, only a remembers it, so b lets it
// through once — the per-replica bound the docs state.
func TestReplayAcrossReplicas(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		flags     []string
		onReplica policy.DenyCode // what b answers to a's request
	}{
		"redis: refused fleet-wide": {
			flags:     []string{"--redis-url", redistest.URL(), "--redis-timeout", "500ms"},
			onReplica: policy.CodeSignatureReplayed,
		},
		"postgres only: refused only by the replica that saw it": {onReplica: ""},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db, dbURL := MustOpenDB(t)
			reps := startSignedReplicas(t, dbURL, 2, tc.flags...)
			a, b := reps[0], reps[1]
			s := MustCreateSigner(t, db)

			req := s.request(t)
			mustAnswer(t, a, req, "", "the original")
			mustAnswer(t, a, req, policy.CodeSignatureReplayed, "replayed to the same replica")
			mustAnswer(t, b, req, tc.onReplica, "replayed to another replica")
			mustAnswer(t, b, req, policy.CodeSignatureReplayed, "replayed to that replica again")
			other := s.request(t)
			mustAnswer(t, b, other, "", "another signed request")
			mustAnswer(t, a, other, tc.onReplica, "that one replayed to the first replica")
			for _, r := range reps {
				if v, _ := r.metric(t, "tollgate_replay_fallback_total"); v != 0 {
					t.Errorf("%s: tollgate_replay_fallback_total got %v, want 0", r.name, v)
				}
			}
		})
	}
}

// TestReplayRedisOutage stops the fleet's Redis, starts it again, then
// makes it slower than --redis-timeout. While it is away or slow every
// signed request is answered (no error, no hang): a replay is refused by
// the replica that saw the original and, as without Redis, allowed once
// by another; the fallback is counted and logged once per outage. When
// Redis answers again, replays are refused fleet-wide again.
func TestReplayRedisOutage(t *testing.T) {
	t.Parallel()
	db, dbURL := MustOpenDB(t)
	redisAddr := freeAddr(t)
	rp := startRedis(t, redisAddr)
	proxy := newPGProxy(t, redisAddr) // a TCP proxy: here it slows Redis down
	reps := startSignedReplicas(t, dbURL, 2, "--redis-url", "redis://"+proxy.ln.Addr().String(), "--redis-timeout", "100ms")
	a, b := reps[0], reps[1]
	s := MustCreateSigner(t, db)

	// perReplica sends signed requests while Redis cannot answer: each is
	// remembered by the replica that allowed it alone.
	perReplica := func(phase string) {
		t.Helper()
		for i := range 10 {
			req := s.request(t)
			mustAnswer(t, a, req, "", fmt.Sprintf("%s: original %d", phase, i))
			mustAnswer(t, a, req, policy.CodeSignatureReplayed, fmt.Sprintf("%s: original %d replayed to the same replica", phase, i))
			mustAnswer(t, b, req, "", fmt.Sprintf("%s: original %d replayed to another replica (the per-replica bound)", phase, i))
		}
	}
	// fleetwide waits until replays are refused fleet-wide again: only a
	// request tries a failed Redis again, once a second.
	fleetwide := func(phase string) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			req := s.request(t)
			mustAnswer(t, a, req, "", phase+": the original")
			o := b.checkRequest(req, 5*time.Second)
			if o.denied(string(policy.CodeSignatureReplayed)) {
				return
			}
			if !o.Allowed || time.Now().After(deadline) {
				t.Fatalf("%s: the replay to %s got %v, want signature_replayed within 15s", phase, b.name, o)
			}
		}
	}

	fleetwide("Redis up")
	up := s.request(t)
	mustAnswer(t, a, up, "", "Redis up: the original")

	rp.stop()
	perReplica("Redis stopped")
	// A signature remembered before the outage is still refused by the
	// replica that saw it.
	mustAnswer(t, a, up, policy.CodeSignatureReplayed, "Redis stopped: a signature from before the outage")
	if v, _ := a.metric(t, "tollgate_replay_fallback_total"); v < 10 {
		t.Errorf("%s: tollgate_replay_fallback_total got %v, want at least 10", a.name, v)
	}
	startRedis(t, redisAddr)
	fleetwide("Redis restarted")

	// Slow: every answer comes back later than --redis-timeout.
	proxy.setLatency(300 * time.Millisecond)
	perReplica("Redis slow")
	proxy.setLatency(0)
	fleetwide("Redis fast again")

	stopGracefully(t, reps...)
	logs := a.stderr.String()
	// Once per outage (stopped, slow), not once per request; a loaded
	// machine that keeps Redis past the timeout now and then may add a
	// few.
	for _, line := range []string{"replay protection: Redis failed", "replay protection: Redis answers again"} {
		if n := strings.Count(logs, line); n < 2 || n > 6 {
			t.Errorf("%s logged %q %d times, want about once per outage (2)", a.name, line, n)
		}
	}
}
