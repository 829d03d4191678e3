package server_test

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tollgate/tollgate/extauthz"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/server"
	"github.com/tollgate/tollgate/store"
	"github.com/tollgate/tollgate/store/storetest"
)

// testServer is a Tollgate started with Run on loopback ports, and the
// clients a test talks to it with.
type testServer struct {
	*server.Server
	Auth   authv3.AuthorizationClient
	Health healthpb.HealthClient
	// BaseURL is where /healthz, /readyz, the Tokens API and the console
	// answer; MetricsURL is where /metrics does.
	BaseURL, MetricsURL string
	// Logs holds everything the server logged.
	Logs *syncBuffer

	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	runErr error
}

// MustStartServer starts a server on dbURL with the test defaults (loopback
// ports, migrations on, small pool), changed by configure if it is not nil.
// The server stops when tb ends.
func MustStartServer(tb testing.TB, dbURL string, configure func(*server.Config)) *testServer {
	tb.Helper()
	cfg := server.DefaultConfig()
	cfg.GRPCAddr, cfg.HTTPAddr, cfg.MetricsAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.DatabaseURL = dbURL
	cfg.Migrate = true
	cfg.DBMaxConns = 4
	cfg.ShutdownTimeout = 5 * time.Second
	// Most cases here are about tokens, addresses and answers, not about
	// routing, and send requests no route describes. The routing
	// catalogue (TestFailClosed) and the route-rule servers set it back.
	cfg.ExtAuthz.AllowUnmatchedRoutes = true
	if configure != nil {
		configure(&cfg)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, log)
	if err != nil {
		cancel()
		tb.Fatalf("server.New: %v", err)
	}
	s := &testServer{Server: srv, Logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- srv.Run(ctx) }()

	conn, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatalf("grpc.NewClient: %v", err)
	}
	s.Auth, s.Health = authv3.NewAuthorizationClient(conn), healthpb.NewHealthClient(conn)
	s.BaseURL = "http://" + srv.HTTPAddr().String()
	s.MetricsURL = "http://" + srv.MetricsAddr().String()
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Errorf("server Run: %v", err)
		}
		conn.Close()
	})
	return s
}

// Stop cancels Run's context and waits for Run to return its error. It may
// be called more than once.
func (s *testServer) Stop() error {
	s.once.Do(func() {
		s.cancel()
		select {
		case s.runErr = <-s.done:
		case <-time.After(20 * time.Second):
			s.runErr = fmt.Errorf("Run did not return 20s after its context was cancelled")
		}
	})
	return s.runErr
}

// MustCheck sends req and fails the test on a gRPC error.
func (s *testServer) MustCheck(tb testing.TB, req *authv3.CheckRequest) *authv3.CheckResponse {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := s.Auth.Check(ctx, req)
	if err != nil {
		tb.Fatalf("Check: %v", err)
	}
	return resp
}

// Get fetches an HTTP endpoint and returns its status and body.
func (s *testServer) Get(tb testing.TB, path string) (int, string) {
	tb.Helper()
	return getURL(tb, s.BaseURL+path)
}

func getURL(tb testing.TB, url string) (int, string) {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// Metric returns the value of one series of /metrics, written as Prometheus
// prints it (labels sorted by name), e.g.
// `tollgate_check_decisions_total{code="token_unknown",result="deny"}`.
func (s *testServer) Metric(tb testing.TB, series string) (float64, bool) {
	tb.Helper()
	status, body := getURL(tb, s.MetricsURL+"/metrics")
	if status != http.StatusOK {
		tb.Fatalf("GET /metrics: got status %d, want 200", status)
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), series+" ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			tb.Fatalf("metric %s: %v", series, err)
		}
		return f, true
	}
	return 0, false
}

// WaitListening waits until a Postgres-backed server receives change
// notifications, so that a test of freshness does not race the LISTEN.
func (s *testServer) WaitListening(tb testing.TB) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if v, _ := s.Metric(tb, "tollgate_listener_connected"); v == 1 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatalf("the server's change listener did not connect within 10s")
}

// syncBuffer is a bytes.Buffer safe for the server's concurrent logging.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// fixtureToken is a token the fixture made, with its value.
type fixtureToken struct {
	ID, AccountID, Value string
	Kind                 policy.Kind
}

// fixture is a store seeded with accounts and tokens covering every rule.
type fixture struct {
	DB  *store.DB
	URL string
	// Premium subscribes to premium data; Plain does not.
	Premium, Plain *policy.Account
	tokens         map[string]fixtureToken
}

// Token returns the fixture token called name.
func (f *fixture) Token(tb testing.TB, name string) fixtureToken {
	tb.Helper()
	t, ok := f.tokens[name]
	if !ok {
		tb.Fatalf("no fixture token %q", name)
	}
	return t
}

// V returns the value of the fixture token called name.
func (f *fixture) V(name string) string {
	t, ok := f.tokens[name]
	if !ok {
		panic("no fixture token " + name)
	}
	return t.Value
}

// Values returns every fixture token value: none may ever appear in a
// response body or a log.
func (f *fixture) Values() []string {
	out := make([]string, 0, len(f.tokens))
	for _, t := range f.tokens {
		out = append(out, t.Value)
	}
	return out
}

const (
	rd  = policy.Actions(policy.Read)
	rw  = policy.Actions(policy.Read | policy.Write)
	del = policy.Actions(policy.Delete)
)

// MustSeed opens a fresh store of dialect d and fills it with the fixture's
// accounts and tokens.
func MustSeed(tb testing.TB, d store.Dialect) *fixture {
	tb.Helper()
	db, u := storetest.MustOpen(tb, d)
	ctx := context.Background()
	f := &fixture{DB: db, URL: u, tokens: map[string]fixtureToken{}}

	f.Premium = &policy.Account{Name: "Acme Analytics", Premium: true}
	secret, value, err := db.CreateAccount(ctx, f.Premium)
	if err != nil {
		tb.Fatalf("create account: %v", err)
	}
	f.tokens["secret"] = fixtureToken{ID: secret.ID, AccountID: f.Premium.ID, Value: value, Kind: policy.Secret}
	f.Plain = &policy.Account{Name: "Plain Co"}
	secret, value, err = db.CreateAccount(ctx, f.Plain)
	if err != nil {
		tb.Fatalf("create account: %v", err)
	}
	f.tokens["secret_plain"] = fixtureToken{ID: secret.ID, AccountID: f.Plain.ID, Value: value, Kind: policy.Secret}

	past := time.Now().Add(-time.Hour)
	specs := []struct {
		name    string
		account *policy.Account
		change  func(*policy.Token)
	}{
		{"basic", f.Premium, nil},
		{"datasets", f.Premium, func(t *policy.Token) {
			t.Datasets = map[string]policy.Actions{"prices": rd, "sales.*": rw, "trash.*": del}
		}},
		{"ipv4", f.Premium, func(t *policy.Token) { t.IPs = []string{"203.0.113.0/24"} }},
		{"ipv6", f.Premium, func(t *policy.Token) { t.IPs = []string{"2001:db8:abcd::/48"} }},
		{"domains", f.Premium, func(t *policy.Token) {
			t.Domains = []string{
				"example.com",                // http and https, any port, any path
				"https://secure.example.org", // https only
				"*.wild.example.net",         // subdomains, not the apex
				"localhost:3000",             // one port
				"app.example.io/app",         // a path prefix, whole segments
				"docs.example.io/v1/",        // a path prefix ending in "/"
				"[2001:db8::1]:8443",         // an IPv6 literal and a port
				"192.168.1.10",               // an IPv4 literal
			}
		}},
		{"apis", f.Premium, func(t *policy.Token) { t.APIs = []string{"data", "maps"} }},
		{"import", f.Premium, func(t *policy.Token) { t.APIs = []string{"import"} }},
		{"premium", f.Premium, func(t *policy.Token) { t.Premium = true }},
		{"premium_on_plain", f.Plain, func(t *policy.Token) { t.Premium = true }},
		{"nocore", f.Premium, func(t *policy.Token) { t.Core = false }},
		{"grants", f.Premium, func(t *policy.Token) {
			t.Grants = []policy.Grant{
				{Connection: "warehouse", Type: policy.GrantTable, Source: "public.sales_*"},
				{Connection: "warehouse", Type: policy.GrantQuery, Source: "SELECT id, total\n  FROM public.orders\n WHERE total > 100"},
				{Connection: "lake", Type: policy.GrantAll},
			}
		}},
		{"disabled", f.Premium, func(t *policy.Token) { t.Enabled = false }},
		{"expired", f.Premium, func(t *policy.Token) { t.ExpiresAt = &past }},
	}
	for _, s := range specs {
		t := policy.NewToken(s.account.ID, policy.Publishable)
		t.Nickname = s.name
		if s.change != nil {
			s.change(t)
		}
		value, err := db.CreateToken(ctx, t)
		if err != nil {
			tb.Fatalf("create token %s: %v", s.name, err)
		}
		f.tokens[s.name] = fixtureToken{ID: t.ID, AccountID: t.AccountID, Value: value, Kind: t.Kind}
	}
	return f
}

// defaultPeer is the TCP peer of requests that name none: outside every
// fixture token's allowed ranges.
const defaultPeer = "198.51.100.23"

// envoyRequest describes a request to the protected API; proto renders it
// as the CheckRequest Envoy's ext_authz filter sends for it.
type envoyRequest struct {
	Method string // default GET
	Path   string // with the query string, as in :path
	// Headers are added to the defaults; "" removes a default.
	Headers map[string]string
	// Dup sends further values of a header (only with Raw, as Envoy's
	// headers map joins repeated headers).
	Dup [][2]string
	// Raw sends header_map with raw_value, as Envoy does with
	// encode_raw_headers, instead of the headers map.
	Raw bool
	// Peer is the TCP peer Envoy saw; default defaultPeer. NoPeer sends
	// none.
	Peer   string
	NoPeer bool
	// Ext is the route's context_extensions.
	Ext map[string]string
}

func socketAddress(addr string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol: corev3.SocketAddress_TCP, Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func (r envoyRequest) proto() *authv3.CheckRequest {
	method := cmp.Or(r.Method, "GET")
	peer := cmp.Or(r.Peer, defaultPeer)
	reqID := fmt.Sprintf("%08x-%04x-4%03x-a%03x-%012x", rand.Uint32(), rand.Uint32N(1<<16), rand.Uint32N(1<<12), rand.Uint32N(1<<12), rand.Uint64N(1<<48))
	h := map[string]string{
		":authority":                     "api.tollgate.test",
		"host":                           "api.tollgate.test",
		":method":                        method,
		":path":                          r.Path,
		":scheme":                        "https",
		"accept":                         "application/json",
		"accept-encoding":                "gzip, deflate, br",
		"user-agent":                     "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
		"x-forwarded-for":                peer,
		"x-forwarded-proto":              "https",
		"x-request-id":                   reqID,
		"x-envoy-expected-rq-timeout-ms": "15000",
	}
	for k, v := range r.Headers {
		if v == "" {
			delete(h, k)
		} else {
			h[k] = v
		}
	}
	httpReq := &authv3.AttributeContext_HttpRequest{
		Id:       strconv.FormatUint(rand.Uint64(), 10),
		Method:   method,
		Path:     r.Path,
		Host:     h[":authority"],
		Scheme:   "https",
		Protocol: "HTTP/1.1",
	}
	if r.Raw {
		hm := &corev3.HeaderMap{}
		keys := make([]string, 0, len(h))
		for k := range h {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(h[k])})
		}
		for _, kv := range r.Dup {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[0], RawValue: []byte(kv[1])})
		}
		httpReq.HeaderMap = hm
	} else {
		httpReq.Headers = h
	}
	attrs := &authv3.AttributeContext{
		Destination: &authv3.AttributeContext_Peer{Address: socketAddress("10.0.4.17", 10000)},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.Now(),
			Http: httpReq,
		},
		ContextExtensions: r.Ext,
		MetadataContext:   &corev3.Metadata{},
	}
	if !r.NoPeer {
		attrs.Source = &authv3.AttributeContext_Peer{Address: socketAddress(peer, 50000+rand.Uint32N(10000))}
	}
	return &authv3.CheckRequest{Attributes: attrs}
}

// ext builds context_extensions from key, value pairs.
func ext(kv ...string) map[string]string {
	m := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// hdr builds headers from name, value pairs.
func hdr(kv ...string) map[string]string { return ext(kv...) }

// header returns the value of a request header as proto rendered it.
func (r envoyRequest) header(name string) string {
	if v, ok := r.Headers[name]; ok {
		return v
	}
	return ""
}

// denyBody is the JSON body of a denied response.
type denyBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// responseHeaders indexes a response's header options by name.
func responseHeaders(tb testing.TB, opts []*corev3.HeaderValueOption) map[string]*corev3.HeaderValueOption {
	tb.Helper()
	m := make(map[string]*corev3.HeaderValueOption, len(opts))
	for _, o := range opts {
		k := o.GetHeader().GetKey()
		if _, dup := m[k]; dup {
			tb.Errorf("header %q set twice", k)
		}
		m[k] = o
	}
	return m
}

// describe summarises a response for failure messages.
func describe(resp *authv3.CheckResponse) string {
	if ok := resp.GetOkResponse(); ok != nil {
		return fmt.Sprintf("allow (grpc status %d, metadata %v)", resp.GetStatus().GetCode(), resp.GetDynamicMetadata().AsMap())
	}
	if d := resp.GetDeniedResponse(); d != nil {
		return fmt.Sprintf("deny %d %s", d.GetStatus().GetCode(), d.GetBody())
	}
	return fmt.Sprintf("neither allow nor deny: %v", resp)
}

// expectAllow checks an allow for tok: status OK, the identity headers
// overwriting anything the caller sent, the metadata, no dry-run mark, and
// (when strip is set) that no header or query parameter carrying the token
// reaches the upstream.
func expectAllow(tb testing.TB, r envoyRequest, resp *authv3.CheckResponse, tok fixtureToken, cost int64, strip bool) {
	tb.Helper()
	ok := resp.GetOkResponse()
	if ok == nil {
		tb.Fatalf("got %s, want allow", describe(resp))
	}
	if got := codes.Code(resp.GetStatus().GetCode()); got != codes.OK {
		tb.Errorf("grpc status: got %v, want %v", got, codes.OK)
	}
	hs := responseHeaders(tb, ok.GetHeaders())
	for name, want := range map[string]string{
		extauthz.HeaderAccountID: tok.AccountID,
		extauthz.HeaderTokenID:   tok.ID,
		extauthz.HeaderTokenKind: tok.Kind.String(),
	} {
		o := hs[name]
		if got := o.GetHeader().GetValue(); got != want {
			tb.Errorf("header %s: got %q, want %q", name, got, want)
		}
		if got := o.GetAppendAction(); got != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			tb.Errorf("header %s: got action %v, want %v", name, got, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)
		}
		if o.GetAppend() != nil {
			tb.Errorf("header %s: got deprecated append %v, want unset (Envoy refuses both)", name, o.GetAppend())
		}
	}
	if o, found := hs[extauthz.HeaderDryRun]; found {
		tb.Errorf("header %s: got %q on a real allow, want none", extauthz.HeaderDryRun, o.GetHeader().GetValue())
	}
	md := resp.GetDynamicMetadata().GetFields()
	for k, want := range map[string]string{"account_id": tok.AccountID, "token_id": tok.ID, "token_kind": tok.Kind.String()} {
		if got := md[k].GetStringValue(); got != want {
			tb.Errorf("metadata %s: got %q, want %q", k, got, want)
		}
	}
	if got := md["cost"].GetNumberValue(); got != float64(cost) {
		tb.Errorf("metadata cost: got %v, want %v", got, cost)
	}
	if c, found := md["code"]; found {
		tb.Errorf("metadata code: got %q on an allow, want none", c.GetStringValue())
	}
	removedHeaders, removedParams := ok.GetHeadersToRemove(), ok.GetQueryParametersToRemove()
	if !strip {
		if len(removedHeaders) != 0 || len(removedParams) != 0 {
			tb.Errorf("removed headers %v and query parameters %v, want none with credential stripping off", removedHeaders, removedParams)
		}
		return
	}
	for name, v := range r.Headers {
		if strings.Contains(v, tok.Value) && !slices.Contains(removedHeaders, name) {
			tb.Errorf("headers_to_remove: got %v, want it to hold %q, which carries the token", removedHeaders, name)
		}
	}
	_, query, _ := strings.Cut(r.Path, "?")
	for pair := range strings.SplitSeq(query, "&") {
		k, v, _ := strings.Cut(pair, "=")
		if u, err := url.QueryUnescape(v); err == nil {
			v = u
		}
		if v == tok.Value && !slices.Contains(removedParams, k) {
			tb.Errorf("query_parameters_to_remove: got %v, want it to hold %q, which carries the token", removedParams, k)
		}
	}
}

// expectDeny checks a deny with code: its HTTP and gRPC status, the
// WWW-Authenticate challenge on 401s, the JSON body, the metadata (the
// token's ID when it was recognised, no cost) and that the body repeats none
// of secrets.
func expectDeny(tb testing.TB, resp *authv3.CheckResponse, code policy.Code, tokenID string, secrets []string) {
	tb.Helper()
	d := resp.GetDeniedResponse()
	if d == nil {
		tb.Fatalf("got %s, want deny %s", describe(resp), code)
	}
	wantHTTP, wantGRPC := http.StatusForbidden, codes.PermissionDenied
	switch {
	case strings.HasPrefix(string(code), "token_"):
		wantHTTP, wantGRPC = http.StatusUnauthorized, codes.Unauthenticated
	case code == policy.CodePathInvalid || code == policy.CodeQueryInvalid || code == policy.CodeParamRepeated || code == policy.CodeRequestInvalid:
		// Requests Tollgate cannot read unambiguously.
		wantHTTP = http.StatusBadRequest
	case code == policy.CodeRouteMisconfigured:
		// The operator's mistake, not the caller's.
		wantHTTP = http.StatusInternalServerError
	}
	if got := int(d.GetStatus().GetCode()); got != wantHTTP {
		tb.Errorf("HTTP status: got %d, want %d", got, wantHTTP)
	}
	if got := codes.Code(resp.GetStatus().GetCode()); got != wantGRPC {
		tb.Errorf("grpc status: got %v, want %v", got, wantGRPC)
	}
	hs := responseHeaders(tb, d.GetHeaders())
	if got := hs["content-type"].GetHeader().GetValue(); got != "application/json" {
		tb.Errorf("content-type: got %q, want %q", got, "application/json")
	}
	challenge, found := hs["www-authenticate"]
	switch {
	case wantHTTP == http.StatusUnauthorized && !found:
		tb.Errorf("www-authenticate: got none, want a Bearer challenge on a 401")
	case wantHTTP == http.StatusUnauthorized && !strings.HasPrefix(challenge.GetHeader().GetValue(), "Bearer "):
		tb.Errorf("www-authenticate: got %q, want a Bearer challenge", challenge.GetHeader().GetValue())
	case wantHTTP != http.StatusUnauthorized && found:
		tb.Errorf("www-authenticate: got %q on a %d, want none", challenge.GetHeader().GetValue(), wantHTTP)
	}
	var body denyBody
	dec := json.NewDecoder(strings.NewReader(d.GetBody()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		tb.Errorf("body %q: %v", d.GetBody(), err)
	}
	if body.Error.Code != string(code) {
		tb.Errorf("body code: got %q, want %q (body %s)", body.Error.Code, code, d.GetBody())
	}
	if body.Error.Message == "" {
		tb.Errorf("body message: got empty, want a hint for the developer")
	}
	for _, s := range secrets {
		if len(s) >= 6 && strings.Contains(d.GetBody(), s) {
			tb.Errorf("body %q repeats the token %q", d.GetBody(), s)
		}
	}
	md := resp.GetDynamicMetadata().GetFields()
	if got := md["code"].GetStringValue(); got != string(code) {
		tb.Errorf("metadata code: got %q, want %q", got, code)
	}
	if got := md["token_id"].GetStringValue(); got != tokenID {
		tb.Errorf("metadata token_id: got %q, want %q", got, tokenID)
	}
	if got := md["cost"].GetNumberValue(); got != 0 {
		tb.Errorf("metadata cost: got %v, want 0 (a deny spends nothing)", got)
	}
}

// requestSecrets returns every credential-looking value a request carries.
func requestSecrets(r envoyRequest) []string {
	var out []string
	if v := strings.TrimSpace(r.header("x-api-key")); v != "" {
		out = append(out, v)
	}
	if _, cred, ok := strings.Cut(r.header("authorization"), " "); ok && strings.TrimSpace(cred) != "" {
		out = append(out, strings.TrimSpace(cred))
	}
	_, query, _ := strings.Cut(r.Path, "?")
	for pair := range strings.SplitSeq(query, "&") {
		if k, v, _ := strings.Cut(pair, "="); k == "token" || k == "api_key" {
			out = append(out, v)
			if u, err := url.QueryUnescape(v); err == nil {
				out = append(out, u)
			}
		}
	}
	return out
}

// pollUntil sends req until check accepts the response, and fails the test
// if that takes longer than within. It returns how long it took.
func pollUntil(tb testing.TB, s *testServer, req envoyRequest, within time.Duration, check func(*authv3.CheckResponse) bool) time.Duration {
	tb.Helper()
	start := time.Now()
	var last *authv3.CheckResponse
	for {
		last = s.MustCheck(tb, req.proto())
		if check(last) {
			return time.Since(start)
		}
		if time.Since(start) > within {
			tb.Fatalf("after %v: still %s", time.Since(start).Round(time.Millisecond), describe(last))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// deniedWith reports whether resp is a deny with code.
func deniedWith(code policy.Code) func(*authv3.CheckResponse) bool {
	return func(resp *authv3.CheckResponse) bool {
		return resp.GetDeniedResponse() != nil && resp.GetDynamicMetadata().GetFields()["code"].GetStringValue() == string(code)
	}
}

// allowed reports whether resp is an allow.
func allowed(resp *authv3.CheckResponse) bool { return resp.GetOkResponse() != nil }
