package bench

import (
	"bytes"
	"cmp"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tollgate/tollgate/signing"
)

// Where a request carries its token.
const (
	inQuery  = iota // ?token=
	inBearer        // Authorization: Bearer
	inAPIKey        // X-API-Key
)

// shape is one kind of request the benchmark sends.
type shape struct {
	place   int    // where the token goes
	referer string // "" sends none
	nonce   uint64 // added to the query as nonce=, for signed requests
	dataset string // the route's dataset; "" means prices
}

// Referers: one the seeded tokens allow, one they do not.
const (
	goodReferer = "https://app.example.com/dashboard?tab=prices"
	badReferer  = "https://evil.example.net/scrape"
	apiHost     = "api.example.com"
	apiPath     = "/v1/datasets/prices/rows"
	// clientXFF is what Envoy forwards when one proxy (a load balancer)
	// stands in front of it: the caller, then the balancer's view of it.
	// With --xff-trusted-hops 1 Tollgate takes the last entry.
	clientXFF = "198.51.100.23, 203.0.113.7"
)

// envoyCheck is a CheckRequest shaped as Envoy's ext_authz filter sends it
// for a browser's GET of the data API through one load balancer: peer and
// listener addresses, HTTP/2 pseudo-headers and a browser's headers, the
// path with its query, the route's context_extensions.
func envoyCheck(token string, sh shape, extra map[string]string) *authv3.CheckRequest {
	query := "limit=100&format=json"
	if sh.nonce != 0 {
		query += "&nonce=" + strconv.FormatUint(sh.nonce, 10)
	}
	if sh.place == inQuery {
		query += "&token=" + token
	}
	path := apiPath + "?" + query
	id := "5f0c6c1e-8e8a-4a57-9d0e-3b1f2a6c9d10"
	h := map[string]string{
		":authority":                     apiHost,
		":method":                        "GET",
		":path":                          path,
		":scheme":                        "https",
		"accept":                         "application/json, text/plain, */*",
		"accept-encoding":                "gzip, deflate, br, zstd",
		"accept-language":                "en-GB,en;q=0.9",
		"user-agent":                     "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 Safari/537.36",
		"sec-fetch-mode":                 "cors",
		"sec-fetch-site":                 "same-site",
		"x-forwarded-for":                clientXFF,
		"x-forwarded-proto":              "https",
		"x-request-id":                   id,
		"x-envoy-expected-rq-timeout-ms": "15000",
	}
	if sh.referer != "" {
		h["referer"] = sh.referer
	}
	switch sh.place {
	case inBearer:
		h["authorization"] = "Bearer " + token
	case inAPIKey:
		h["x-api-key"] = token
	}
	for k, v := range extra {
		h[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: sockAddr("10.0.3.41", 41872)},
		Destination: &authv3.AttributeContext_Peer{Address: sockAddr("10.0.4.17", 10000)},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.New(time.Date(2026, 11, 22, 9, 30, 0, 0, time.UTC)),
			Http: &authv3.AttributeContext_HttpRequest{
				Id: id, Method: "GET", Headers: h, Path: path, Host: apiHost,
				Scheme: "https", Protocol: "HTTP/2",
			},
		},
		ContextExtensions: map[string]string{"api": "data", "dataset": cmp.Or(sh.dataset, "prices"), "tier": "core", "cost": "1"},
		MetadataContext:   &corev3.Metadata{},
	}}
}

func sockAddr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol: corev3.SocketAddress_TCP, Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// placeholder stands for the token in a template; it has a real token's
// length (41 bytes), so patching one in keeps the encoding valid.
const placeholder = "pk_QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQZZZZZZ"

// template is an encoded CheckRequest with the places of its token.
type template struct {
	b    []byte
	offs []int
}

func newTemplate(sh shape) *template {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(envoyCheck(placeholder, sh, nil))
	if err != nil {
		panic(err) // the request is built here: a failure is a bug in this file
	}
	t := &template{b: b}
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte(placeholder))
		if j < 0 {
			break
		}
		t.offs = append(t.offs, i+j)
		i += j + len(placeholder)
	}
	if len(t.offs) == 0 {
		panic("bench: placeholder not found in template")
	}
	return t
}

// with returns the template with token in place (a fresh slice).
func (t *template) with(token string) []byte {
	if len(token) != len(placeholder) {
		panic(fmt.Sprintf("bench: token of %d bytes, want %d", len(token), len(placeholder)))
	}
	b := bytes.Clone(t.b)
	for _, o := range t.offs {
		copy(b[o:], token)
	}
	return b
}

// splitmix64 scrambles i, so that request kinds and tokens are spread
// evenly yet the same for every server.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// Mix is the benchmark's request mix over a pool of tokens: 90% allowed
// (the token in the query, a Bearer header or X-API-Key), 5% from a
// Referer the token does not allow, 3% unknown (well-formed) tokens and 2%
// malformed ones.
type Mix struct {
	tokens    []string // allowed; index 0.. of the pool
	unknown   []string
	malformed []string
	allowed   [3]*template
	refDenied *template
	// sign, when set, builds every request that carries a pool token
	// (signed requests); i is the request index, k the pool index.
	sign func(i uint64, k int, sh shape) []byte
}

// NewMix returns the mix over tokens; unknown and malformed supply the
// 5% of requests with tokens Tollgate must refuse without a policy.
func NewMix(tokens, unknown, malformed []string) *Mix {
	m := &Mix{tokens: tokens, unknown: unknown, malformed: malformed}
	for p := range m.allowed {
		m.allowed[p] = newTemplate(shape{place: p, referer: goodReferer})
	}
	m.refDenied = newTemplate(shape{place: inQuery, referer: badReferer})
	return m
}

// Next implements Source.
func (m *Mix) Next(i uint64) ([]byte, string) {
	r := splitmix64(i)
	kind, pick := r%100, r/100
	switch {
	case kind < 5:
		k := int(pick % uint64(len(m.tokens)))
		if m.sign != nil {
			return m.sign(i, k, shape{place: inQuery, referer: badReferer}), "referer_denied"
		}
		return m.refDenied.with(m.tokens[k]), "referer_denied"
	case kind < 8:
		return m.allowed[0].with(m.unknown[pick%uint64(len(m.unknown))]), "token_unknown"
	case kind < 10:
		return m.allowed[1].with(m.malformed[pick%uint64(len(m.malformed))]), "token_malformed"
	}
	k := int(pick % uint64(len(m.tokens)))
	if m.sign != nil {
		return m.sign(i, k, shape{place: inQuery, referer: goodReferer}), ""
	}
	return m.allowed[pick%3].with(m.tokens[k]), ""
}

// Sweep sends every token of the pool once, in order, allowed: the cold
// path, and how the cache is warmed.
type Sweep struct {
	tokens []string
	t      *template
}

// NewSweep returns a Sweep over tokens.
func NewSweep(tokens []string) *Sweep {
	return &Sweep{tokens: tokens, t: newTemplate(shape{place: inQuery, referer: goodReferer})}
}

// Next implements Source; i wraps around the pool.
func (s *Sweep) Next(i uint64) ([]byte, string) {
	return s.t.with(s.tokens[i%uint64(len(s.tokens))]), ""
}

// signer signs requests for tokens that require them, as a customer's
// client does with signing.SignHTTP: every request gets the current time
// and a nonce of its own, so none is a replay.
type signer struct {
	tokens []Token
}

func (s *signer) build(i uint64, k int, sh shape) []byte {
	t := &s.tokens[k]
	sh.nonce = i + 1
	// The URL the customer's client requests; Envoy turns it into the
	// CheckRequest below.
	q := "limit=100&format=json&nonce=" + strconv.FormatUint(sh.nonce, 10) + "&token=" + t.Value
	hr, err := http.NewRequest("GET", "https://"+apiHost+apiPath+"?"+q, nil)
	if err != nil {
		panic(err)
	}
	if err := signing.SignHTTP(hr, t.ID, t.Secret, time.Now()); err != nil {
		panic(err)
	}
	extra := map[string]string{}
	for k, vs := range hr.Header {
		extra[strings.ToLower(k)] = strings.Join(vs, ",")
	}
	b, err := proto.Marshal(envoyCheck(t.Value, sh, extra))
	if err != nil {
		panic(err)
	}
	return b
}
