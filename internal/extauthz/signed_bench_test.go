package extauthz_test

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/tollgate/tollgate/internal/extauthz"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/seal"
	"github.com/tollgate/tollgate/signing"
)

// signedStore holds the one token of the signed-request benchmarks.
type signedStore struct {
	tok *policy.Token
	acc *policy.Account
	h   policy.Hash
}

func (s *signedStore) TokenByHash(_ context.Context, h policy.Hash) (*policy.Token, *policy.Account, error) {
	if h != s.h {
		return nil, nil, policy.ErrNotFound
	}
	return s.tok, s.acc, nil
}

// signedSetup is a Check server over a cache holding one restricted
// publishable token (restricted as benchServer's is), which requires signed
// requests when signed is set.
type signedSetup struct {
	srv    *extauthz.Server
	value  string // the token
	tokID  string
	secret []byte
	date   string // x-tollgate-date of every request
}

func signedBenchServer(b *testing.B, signed bool, replaySize int) *signedSetup {
	b.Helper()
	box, err := seal.NewBox(make([]byte, seal.KeySize))
	if err != nil {
		b.Fatal(err)
	}
	tok := policy.NewToken("acc_bench0000000000", policy.Publishable)
	tok.Domains = []string{"example.com", "*.example.org"}
	tok.IPs = []string{"10.0.0.0/8"}
	tok.Datasets = map[string]policy.Actions{"prices": policy.Actions(policy.Read)}
	secret := []byte(policy.NewSigningSecret())
	if signed {
		tok.Signed = true
		tok.SigningSecret = box.Seal(tok.ID, secret)
	}
	if err := tok.Normalize(); err != nil {
		b.Fatal(err)
	}
	value := policy.NewValue(policy.Publishable)
	st := &signedStore{tok: tok, acc: &policy.Account{ID: tok.AccountID}, h: policy.HashValue(value)}
	cache, err := policy.NewCache(st, policy.CacheConfig{Size: 1000, TTL: time.Hour, NegativeSize: 100,
		NegativeTTL: time.Minute, MaxStaleness: time.Hour, StoreTimeout: time.Second}, time.Now, box.Open)
	if err != nil {
		b.Fatal(err)
	}
	replay, err := policy.NewReplayCache(policy.ReplayConfig{Size: replaySize, PerToken: replaySize}, time.Now)
	if err != nil {
		b.Fatal(err)
	}
	d := policy.NewDecider(cache, nil, time.Now, policy.EvalOptions{
		Signatures: policy.SignatureOptions{Skew: 5 * time.Minute, Replay: replay}})
	srv := extauthz.NewServer(d, extauthz.Config{StripCredentials: true}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	return &signedSetup{srv: srv, value: value, tokID: tok.ID, secret: secret, date: time.Now().UTC().Format(signing.DateFormat)}
}

// signedStrings is n strings stored in one, so that a million of them
// are one object for the garbage collector rather than a million.
type signedStrings struct {
	blob string
	end  []int32
}

func newSignedStrings(ss []string) signedStrings {
	var b strings.Builder
	end := make([]int32, len(ss))
	for i, s := range ss {
		b.WriteString(s)
		end[i] = int32(b.Len())
	}
	return signedStrings{blob: b.String(), end: end}
}

// at returns the i'th string, without allocating.
func (s signedStrings) at(i int) string {
	start := int32(0)
	if i > 0 {
		start = s.end[i-1]
	}
	return s.blob[start:s.end[i]]
}

// signedRequests returns n distinct requests as paths and Authorization
// headers, varying a query parameter; the headers are empty unless signed.
// With inCredential, the token travels only in the signature's Credential;
// otherwise in ?token= and the Credential names the token's id. The
// signing runs in parallel, before the timer starts.
func (s *signedSetup) signedRequests(n int, signed, inCredential bool) (paths, auths signedStrings) {
	ps, as := make([]string, n), make([]string, n)
	prefix, cred := "token="+s.value+"&", s.tokID
	if inCredential {
		prefix, cred = "", s.value
	}
	names := []string{"host", signing.DateHeader}
	header := func(name string) string {
		if name == "host" {
			return "api.example.com"
		}
		return s.date
	}
	day, _ := time.Parse(signing.DateFormat, s.date)
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				query := prefix + "range=1d&n=" + strconv.Itoa(i)
				ps[i] = "/v1/prices/AAPL?" + query
				if signed {
					r := signing.Request{Method: "GET", Path: "/v1/prices/AAPL", RawQuery: query, Header: header,
						PayloadHash: signing.HashPayload(nil)}
					as[i] = signing.Sign(r, cred, s.secret, day, names).String()
				}
			}
		})
	}
	wg.Wait()
	return newSignedStrings(ps), newSignedStrings(as)
}

// BenchmarkCheckSigned is Check on a cache hit, in process, for a token
// that requires signed requests against the same token without: what
// verifying a signature (parse, canonical request, two SHA-256 passes, one
// HMAC, the replay cache) adds. Every iteration presents a fresh, valid
// signature: b.N distinct requests are signed before the timer starts, and
// the replay cache (and the token's share of it) holds more than b.N, so
// it never refuses. Both sides vary a query parameter the same way. The replay
// cache grows to b.N entries during the run, and its garbage-collection
// cost grows with it, as it does in production up to --replay-cache-size.
func BenchmarkCheckSigned(b *testing.B) {
	for _, c := range []struct {
		name                 string
		signed, inCredential bool
	}{
		{"unsigned", false, false},
		{"signed", true, false},
		{"signed_token_in_credential", true, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			s := signedBenchServer(b, c.signed, b.N+16)
			paths, auths := s.signedRequests(b.N+1, c.signed, c.inCredential)
			base := envoyRequest(s.value)
			base.Attributes.Request.Http.Headers[signing.DateHeader] = s.date
			ctx := context.Background()
			check := func(req *authv3.CheckRequest, i int) string {
				h := req.Attributes.Request.Http
				path := paths.at(i)
				h.Path, h.Headers[":path"] = path, path
				if auth := auths.at(i); auth != "" {
					h.Headers["authorization"] = auth
				}
				resp, err := s.srv.Check(ctx, req)
				if err != nil {
					return err.Error()
				}
				if resp.GetOkResponse() == nil {
					return resp.GetDeniedResponse().GetBody()
				}
				return ""
			}
			// The last request loads the token into the cache.
			if msg := check(proto.Clone(base).(*authv3.CheckRequest), b.N); msg != "" {
				b.Fatalf("not allowed: %s", msg)
			}
			var next atomic.Int64
			runtime.GC() // the signing's garbage is not the benchmark's
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				req := proto.Clone(base).(*authv3.CheckRequest)
				for pb.Next() {
					if msg := check(req, int(next.Add(1)-1)); msg != "" {
						b.Errorf("not allowed: %s", strings.TrimSpace(msg))
						return
					}
				}
			})
		})
	}
}

// BenchmarkSignRequest is what signing costs the client (signing.Sign), for
// comparison with what verifying costs Tollgate.
func BenchmarkSignRequest(b *testing.B) {
	secret := []byte(policy.NewSigningSecret())
	now := time.Now()
	date := now.UTC().Format(signing.DateFormat)
	r := signing.Request{Method: "GET", Path: "/v1/prices/AAPL", RawQuery: "range=1d&n=1", PayloadHash: signing.HashPayload(nil),
		Header: func(name string) string {
			if name == "host" {
				return "api.example.com"
			}
			return date
		}}
	names := []string{"host", signing.DateHeader}
	b.ReportAllocs()
	for b.Loop() {
		signing.Sign(r, "tok_d1sBq0KTuzMEX0to", secret, now, names)
	}
}
