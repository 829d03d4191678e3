package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/seal"
	"github.com/tollgate/tollgate/internal/server"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/signing"
)

// signer is a token that requires signed requests, with its signing secret.
type signer struct {
	fixtureToken
	secret []byte
}

// mustSigner creates a publishable token of f's premium account that
// requires signed requests, its secret sealed with box, changed by change.
func mustSigner(tb testing.TB, f *fixture, box *seal.Box, change func(*policy.Token)) signer {
	tb.Helper()
	tok := policy.NewToken(f.Premium.ID, policy.Publishable)
	secret := []byte(policy.NewSigningSecret())
	tok.Signed, tok.SigningSecret = true, box.Seal(tok.ID, secret)
	tok.Datasets = map[string]policy.Actions{"prices": rd}
	if change != nil {
		change(tok)
	}
	value, err := f.DB.CreateToken(context.Background(), tok)
	if err != nil {
		tb.Fatalf("create signed token: %v", err)
	}
	return signer{fixtureToken{ID: tok.ID, AccountID: tok.AccountID, Value: value, Kind: tok.Kind}, secret}
}

// signed returns a GET of path (which must not carry the token) signed now
// with signing.SignHTTP, as a client would send it, the token in
// ?token= and from peer. Its route reads the dataset the token may read.
func (s signer) signed(tb testing.TB, path, peer string) envoyRequest {
	tb.Helper()
	full := path + "?token=" + s.Value
	req, err := http.NewRequest("GET", "https://api.tollgate.test"+full, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if err := signing.SignHTTP(req, s.ID, s.secret, time.Now()); err != nil {
		tb.Fatalf("sign: %v", err)
	}
	h := map[string]string{}
	for _, name := range []string{"authorization", signing.DateHeader, signing.ContentHeader} {
		h[name] = req.Header.Get(name)
	}
	return envoyRequest{Path: full, Headers: h, Peer: peer, Ext: ext("api", "data", "dataset", "prices", "tier", "core", "action", "read")}
}

// answer is what a Check said: "" for an allow, else the deny's code, its
// HTTP status and Retry-After.
type answer struct {
	code       policy.DenyCode
	status     int
	retryAfter string
}

func mustAnswer(tb testing.TB, s *testServer, r envoyRequest) answer {
	tb.Helper()
	resp := s.MustCheck(tb, r.proto())
	return answerOf(tb, resp)
}

func answerOf(tb testing.TB, resp *authv3.CheckResponse) answer {
	tb.Helper()
	if resp.GetOkResponse() != nil {
		return answer{}
	}
	d := resp.GetDeniedResponse()
	if d == nil {
		tb.Fatalf("got %s, want allow or deny", describe(resp))
	}
	var body denyBody
	if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil {
		tb.Fatalf("deny body %q: %v", d.GetBody(), err)
	}
	a := answer{code: policy.DenyCode(body.Error.Code), status: int(d.GetStatus().GetCode())}
	if h, ok := responseHeaders(tb, d.GetHeaders())["retry-after"]; ok {
		a.retryAfter = h.GetHeader().GetValue()
	}
	return a
}

// Replay protection's limits, small so that a test can reach them.
const (
	replaySize     = 32
	replayPerToken = 4
	// replayFlood is more fresh signatures than the whole memory used to
	// hold in two generations: enough to push out anything it held.
	replayFlood = 2*replaySize + 8
	// insidePeer is inside the fenced token's ranges; defaultPeer is not.
	insidePeer = "203.0.113.9"
)

// TestReplayCatalogue is the replay-protection attack class through the
// real gRPC server on Postgres. Each case has tokens of its own on one
// server, so that the per-token shares are what keeps the cases apart.
func TestReplayCatalogue(t *testing.T) {
	t.Parallel()
	f := MustSeed(t, store.Postgres)
	key := bytes.Repeat([]byte{0x5a}, seal.KeySize)
	box, err := seal.NewBox(key)
	if err != nil {
		t.Fatal(err)
	}
	s := MustStartServer(t, f.URL, func(c *server.Config) {
		c.Signing.EncryptionKey, c.Signing.Replay.Size, c.Signing.Replay.PerToken = key, replaySize, replayPerToken
	})
	fenced := func(t *policy.Token) { t.IPs = []string{"203.0.113.0/24"} }

	cases := map[string]func(t *testing.T){
		// The attack: a victim's signed request was captured. Another
		// customer's token floods the replica with fresh signatures
		// (all allowed, or all denied) until the victim's is forgotten,
		// then the capture is replayed.
		"a flood of another token's allowed requests does not evict a victim's signature": func(t *testing.T) {
			victim, flooder := mustSigner(t, f, box, nil), mustSigner(t, f, box, nil)
			captured := victim.signed(t, "/v1/prices/AAPL", defaultPeer)
			if got := mustAnswer(t, s, captured); got.code != "" {
				t.Fatalf("the original: got %+v, want allowed", got)
			}
			refused := 0
			for i := range replayFlood {
				got := mustAnswer(t, s, flooder.signed(t, "/v1/prices/F"+strconv.Itoa(i), defaultPeer))
				if got.code == policy.CodeReplayUnverifiable {
					refused++
				} else if got.code != "" {
					t.Fatalf("flood %d: got %+v, want allowed or %s", i, got, policy.CodeReplayUnverifiable)
				}
			}
			if refused == 0 {
				t.Errorf("the flooder was never refused: got %d refusals of %d, want its share bounded", refused, replayFlood)
			}
			if got := mustAnswer(t, s, captured); got.code != policy.CodeSignatureReplayed {
				t.Errorf("the replay: got %+v, want %s", got, policy.CodeSignatureReplayed)
			}
			if got := mustAnswer(t, s, victim.signed(t, "/v1/prices/MSFT", defaultPeer)); got.code != "" {
				t.Errorf("the victim's next request: got %+v, want allowed (its share is its own)", got)
			}
		},
		"a flood of another token's denied requests does not evict a victim's signature": func(t *testing.T) {
			victim, flooder := mustSigner(t, f, box, nil), mustSigner(t, f, box, fenced)
			captured := victim.signed(t, "/v1/prices/AAPL", defaultPeer)
			if got := mustAnswer(t, s, captured); got.code != "" {
				t.Fatalf("the original: got %+v, want allowed", got)
			}
			for i := range replayFlood {
				if got := mustAnswer(t, s, flooder.signed(t, "/v1/prices/F"+strconv.Itoa(i), defaultPeer)); got.code != policy.CodeIPDenied {
					t.Fatalf("flood %d: got %+v, want %s", i, got, policy.CodeIPDenied)
				}
			}
			if got := mustAnswer(t, s, captured); got.code != policy.CodeSignatureReplayed {
				t.Errorf("the replay: got %+v, want %s", got, policy.CodeSignatureReplayed)
			}
			// The denied requests took nothing: the flooder's own share
			// is whole.
			for i := range replayPerToken {
				if got := mustAnswer(t, s, flooder.signed(t, "/v1/prices/OK"+strconv.Itoa(i), insidePeer)); got.code != "" {
					t.Errorf("the flooder's allowed request %d: got %+v, want allowed", i, got)
				}
			}
		},
		// Sent first from the wrong address (by whoever captured it), a
		// request does not burn its signature for the real client.
		"a request denied for its IP does not use up its signature": func(t *testing.T) {
			tok := mustSigner(t, f, box, fenced)
			req := tok.signed(t, "/v1/prices/AAPL", defaultPeer)
			if got := mustAnswer(t, s, req); got.code != policy.CodeIPDenied {
				t.Fatalf("from outside: got %+v, want %s", got, policy.CodeIPDenied)
			}
			req.Peer = insidePeer
			if got := mustAnswer(t, s, req); got.code != "" {
				t.Fatalf("from inside: got %+v, want allowed", got)
			}
			if got := mustAnswer(t, s, req); got.code != policy.CodeSignatureReplayed {
				t.Errorf("again: got %+v, want %s", got, policy.CodeSignatureReplayed)
			}
		},
		// Refuse rather than forget: a token past its share is refused
		// until its oldest signatures expire, and what it sent stays
		// remembered.
		"a full share refuses, and forgets nothing": func(t *testing.T) {
			tok := mustSigner(t, f, box, nil)
			var sent []envoyRequest
			refused := false
			for i := range 3 * replayPerToken {
				req := tok.signed(t, "/v1/prices/S"+strconv.Itoa(i), defaultPeer)
				got := mustAnswer(t, s, req)
				switch got.code {
				case "":
					sent = append(sent, req)
				case policy.CodeReplayUnverifiable:
					refused = true
					if n, err := strconv.Atoi(got.retryAfter); got.status != http.StatusTooManyRequests || err != nil || n < 1 {
						t.Errorf("refusal: got status %d, Retry-After %q; want 429 and a Retry-After of at least 1s", got.status, got.retryAfter)
					}
				default:
					t.Fatalf("request %d: got %+v, want allowed or %s", i, got, policy.CodeReplayUnverifiable)
				}
			}
			if !refused || len(sent) > 2*replayPerToken {
				t.Errorf("got %d allowed and refused=%v, want at most %d allowed, then refusals", len(sent), refused, 2*replayPerToken)
			}
			for i, req := range sent {
				if got := mustAnswer(t, s, req); got.code != policy.CodeSignatureReplayed {
					t.Errorf("replay of %d: got %+v, want %s", i, got, policy.CodeSignatureReplayed)
				}
			}
		},
		// Remembering is one atomic check and insert at the end of the
		// decision: copies of a request in flight at once are allowed
		// once, not once each.
		"concurrent copies are allowed once": func(t *testing.T) {
			tok := mustSigner(t, f, box, nil)
			req := tok.signed(t, "/v1/prices/AAPL", defaultPeer)
			if got := mustAnswer(t, s, tok.signed(t, "/v1/prices/WARM", defaultPeer)); got.code != "" {
				t.Fatalf("warming the cache: got %+v, want allowed", got)
			}
			const copies = 16
			answers := make([]answer, copies)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range copies {
				cr := req.proto()
				wg.Go(func() {
					<-start
					resp, err := s.Auth.Check(context.Background(), cr)
					if err != nil {
						t.Errorf("copy %d: %v", i, err)
						return
					}
					answers[i] = answerOf(t, resp)
				})
			}
			close(start)
			wg.Wait()
			allowed := 0
			for i, a := range answers {
				switch a.code {
				case "":
					allowed++
				case policy.CodeSignatureReplayed:
				default:
					t.Errorf("copy %d: got %+v, want allowed or %s", i, a, policy.CodeSignatureReplayed)
				}
			}
			if allowed != 1 {
				t.Errorf("got %d copies allowed, want 1", allowed)
			}
		},
	}
	for name, run := range cases {
		t.Run(name, run)
	}
}
