package envoy_test

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"
)

// The contract with Tollgate: the headers it reads and the
// context_extensions it understands.
var (
	tollgateHeaders = []string{
		"authorization", "x-api-key", "referer", "origin", "sec-fetch-site",
		"x-forwarded-for", "host", "x-tollgate-date", "x-tollgate-content-sha256", "x-iex-date",
		"content-type",
	}
	contextKeys    = []string{"api", "dataset", "tier", "action", "cost"} // every route sets these
	optionalKeys   = []string{"connection", "source"}
	apis           = []string{"data", "maps", "sql", "lds", "import"} // policy's known APIs
	tiers          = []string{"core", "premium"}
	actions        = []string{"read", "write", "delete"}
	metadataKeys   = []string{"account_id", "token_id", "token_kind", "cost", "code"}
	bypassRoutes   = []string{"healthz"} // routes allowed to skip Tollgate
	extAuthzFilter = "envoy.filters.http.ext_authz"
)

// TestExtAuthzFilter checks the filter's settings that decide whether a
// request can get past Tollgate.
func TestExtAuthzFilter(t *testing.T) {
	b := MustLoadBootstrap(t, "envoy.yaml")
	m := ingressHCM(t, b)

	filters := m.GetHttpFilters()
	if got := filters[len(filters)-1].GetName(); got != "envoy.filters.http.router" {
		t.Fatalf("last http filter: got %s, want envoy.filters.http.router", got)
	}
	var cfg extauthzv3.ExtAuthz
	found := false
	for _, f := range filters {
		if f.GetName() == extAuthzFilter {
			mustUnpack(t, f.GetTypedConfig(), &cfg)
			found = true
		}
	}
	if !found {
		t.Fatalf("ingress listener has no %s filter", extAuthzFilter)
	}
	if cfg.GetFailureModeAllow() {
		t.Error("failure_mode_allow: got true, want false (fail closed)")
	}
	if got := cfg.GetTransportApiVersion(); got != corev3.ApiVersion_V3 {
		t.Errorf("transport_api_version: got %v, want V3", got)
	}
	if cfg.GetWithRequestBody() != nil {
		t.Error("filter-level with_request_body is set; buffer bodies per route, only where signatures are checked")
	}
	gs := cfg.GetGrpcService()
	if timeout := gs.GetTimeout().AsDuration(); timeout <= 0 || timeout > time.Second {
		t.Errorf("grpc_service.timeout: got %v, want in (0, 1s]", timeout)
	}
	var allowed []string
	for _, p := range cfg.GetAllowedHeaders().GetPatterns() {
		allowed = append(allowed, strings.ToLower(p.GetExact()))
	}
	slices.Sort(allowed)
	want := slices.Sorted(slices.Values(tollgateHeaders))
	if !slices.Equal(allowed, want) {
		t.Errorf("allowed_headers: got %v, want %v", allowed, want)
	}

	c := cluster(t, b, gs.GetEnvoyGrpc().GetClusterName())
	var opts upstreamhttpv3.HttpProtocolOptions
	mustUnpack(t, c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"], &opts)
	if opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		t.Errorf("cluster %s: gRPC needs HTTP/2 (explicit_http_config.http2_protocol_options)", c.GetName())
	}
	addr := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if addr.GetAddress() != "127.0.0.1" || addr.GetPortValue() != 9191 {
		t.Errorf("cluster %s: got %s:%d, want the sidecar at 127.0.0.1:9191", c.GetName(), addr.GetAddress(), addr.GetPortValue())
	}
}

// TestRoutes checks each ingress route: it either bypasses Tollgate (only
// health), or tells Tollgate what it is through valid context_extensions, or
// leaves the mapping to the route-rules file. Together the routes must cover
// the cases the deployment promises.
func TestRoutes(t *testing.T) {
	b := MustLoadBootstrap(t, "envoy.yaml")
	m := ingressHCM(t, b)

	seen := map[string]bool{}
	for _, vh := range m.GetRouteConfig().GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			name := r.GetName()
			if name == "" {
				t.Errorf("virtual host %s: a route has no name (the access log records it)", vh.GetName())
			}
			if cl := r.GetRoute().GetCluster(); cl != "" {
				cluster(t, b, cl)
			}
			var per extauthzv3.ExtAuthzPerRoute
			if a, ok := r.GetTypedPerFilterConfig()[extAuthzFilter]; ok {
				mustUnpack(t, a, &per)
			}
			if per.GetDisabled() {
				if !slices.Contains(bypassRoutes, name) {
					t.Errorf("route %s: bypasses Tollgate; only %v may", name, bypassRoutes)
				}
				continue
			}
			cs := per.GetCheckSettings()
			if body := cs.GetWithRequestBody(); body != nil {
				if !body.GetPackAsBytes() || body.GetAllowPartialMessage() {
					t.Errorf("route %s: signature checks need the whole body as bytes (pack_as_bytes: true, allow_partial_message: false)", name)
				}
				seen["body"] = true
			}
			ext := cs.GetContextExtensions()
			if len(ext) == 0 {
				seen["route-rules"] = true
				continue
			}
			checkContextExtensions(t, name, ext)
			seen["tier="+ext["tier"]] = true
			seen["action="+ext["action"]] = true
			seen["api="+ext["api"]] = true
		}
	}
	for _, want := range []string{"tier=core", "tier=premium", "action=read", "action=write", "api=sql", "body", "route-rules"} {
		if !seen[want] {
			t.Errorf("no route covers %s", want)
		}
	}
}

func checkContextExtensions(tb testing.TB, route string, ext map[string]string) {
	tb.Helper()
	for _, k := range contextKeys {
		if _, ok := ext[k]; !ok {
			tb.Errorf("route %s: context_extensions: no %s", route, k)
		}
	}
	for k := range ext {
		if !slices.Contains(contextKeys, k) && !slices.Contains(optionalKeys, k) {
			tb.Errorf("route %s: context_extensions: Tollgate does not read %q", route, k)
		}
	}
	if !slices.Contains(apis, ext["api"]) {
		tb.Errorf("route %s: api: got %q, want one of %v", route, ext["api"], apis)
	}
	if !slices.Contains(tiers, ext["tier"]) {
		tb.Errorf("route %s: tier: got %q, want one of %v", route, ext["tier"], tiers)
	}
	if !slices.Contains(actions, ext["action"]) {
		tb.Errorf("route %s: action: got %q, want one of %v", route, ext["action"], actions)
	}
	if n, err := strconv.Atoi(ext["cost"]); err != nil || n < 0 {
		tb.Errorf("route %s: cost: got %q, want a non-negative integer", route, ext["cost"])
	}
	if ext["dataset"] == "" {
		tb.Errorf("route %s: dataset must not be empty", route)
	}
}

// TestAccessLog checks that the access log records Tollgate's decision and
// never the query string, which may carry a token.
func TestAccessLog(t *testing.T) {
	m := ingressHCM(t, MustLoadBootstrap(t, "envoy.yaml"))
	if len(m.GetAccessLog()) == 0 {
		t.Fatal("ingress listener has no access log")
	}
	var al streamv3.StdoutAccessLog
	mustUnpack(t, m.GetAccessLog()[0].GetTypedConfig(), &al)
	fields := al.GetLogFormat().GetJsonFormat().GetFields()
	if len(fields) == 0 {
		t.Fatal("access log: want a json_format")
	}
	var all strings.Builder
	for _, v := range fields {
		all.WriteString(v.GetStringValue())
	}
	for _, k := range metadataKeys {
		if op := "%DYNAMIC_METADATA(envoy.filters.http.ext_authz:" + k + ")%"; !strings.Contains(all.String(), op) {
			t.Errorf("access log: missing %s", op)
		}
	}
	for _, leak := range []string{"%REQ(:PATH)%", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", "AUTHORIZATION", "X-API-KEY"} {
		if strings.Contains(strings.ToUpper(all.String()), leak) {
			t.Errorf("access log: %s may log a token", leak)
		}
	}
}

// TestAdminIsLoopback: Envoy's admin can stop Envoy; it must not listen on
// the pod's address.
func TestAdminIsLoopback(t *testing.T) {
	b := MustLoadBootstrap(t, "envoy.yaml")
	if got := b.GetAdmin().GetAddress().GetSocketAddress().GetAddress(); got != "127.0.0.1" {
		t.Fatalf("admin address: got %s, want 127.0.0.1", got)
	}
	ops := listenerByName(t, b, "ops")
	var m hcmv3.HttpConnectionManager
	mustUnpack(t, ops.GetFilterChains()[0].GetFilters()[0].GetTypedConfig(), &m)
	for _, r := range m.GetRouteConfig().GetVirtualHosts()[0].GetRoutes() {
		if r.GetRoute().GetCluster() == "envoy-admin" {
			if p := r.GetMatch().GetPath(); p != "/ready" && p != "/stats/prometheus" {
				t.Errorf("ops route %s exposes admin path %q; only /ready and /stats/prometheus may", r.GetName(), p)
			}
		}
	}
}

// routeRule is the format of --route-rules, as documented in route-rules.yaml.
type routeRule struct {
	Method  string `json:"method"`
	Path    string `json:"path"`
	API     string `json:"api"`
	Dataset string `json:"dataset"`
	Tier    string `json:"tier"`
	Action  string `json:"action"`
	Cost    int    `json:"cost"`
}

// TestRouteRules decodes route-rules.yaml strictly and checks its values.
func TestRouteRules(t *testing.T) {
	data, err := os.ReadFile("route-rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules []routeRule
	if err := yaml.UnmarshalStrict(data, &rules); err != nil {
		t.Fatal(err)
	}
	if len(rules) == 0 {
		t.Fatal("route-rules.yaml has no rules")
	}
	methods := []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}
	for i, r := range rules {
		if !slices.Contains(methods, r.Method) {
			t.Errorf("rule %d: method: got %q, want one of %v", i, r.Method, methods)
		}
		if !strings.HasPrefix(r.Path, "/") {
			t.Errorf("rule %d: path: got %q, want an absolute path", i, r.Path)
		}
		ext := map[string]string{"api": r.API, "dataset": r.Dataset, "tier": r.Tier, "action": r.Action, "cost": strconv.Itoa(r.Cost)}
		checkContextExtensions(t, r.Method+" "+r.Path, ext)
		if strings.HasPrefix(r.Dataset, "{") && !strings.Contains(r.Path, r.Dataset) {
			t.Errorf("rule %d: dataset %s is not captured by path %s", i, r.Dataset, r.Path)
		}
	}
}

// TestRouteRulesRejectUnknownField shows the strict decoding above bites.
func TestRouteRulesRejectUnknownField(t *testing.T) {
	var rules []routeRule
	err := yaml.UnmarshalStrict([]byte("- {method: GET, path: /x, api: a, dataset: d, tier: core, action: read, cost: 1, price: 2}"), &rules)
	if err == nil || !strings.Contains(err.Error(), "price") {
		t.Fatalf("got %v, want an unknown field error for price", err)
	}
}

func ingressHCM(tb testing.TB, b *bootstrapv3.Bootstrap) *hcmv3.HttpConnectionManager {
	tb.Helper()
	l := listenerByName(tb, b, "ingress")
	if got := l.GetAddress().GetSocketAddress().GetPortValue(); got != 8080 {
		tb.Errorf("ingress port: got %d, want 8080", got)
	}
	var m hcmv3.HttpConnectionManager
	mustUnpack(tb, l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig(), &m)
	return &m
}

func listenerByName(tb testing.TB, b *bootstrapv3.Bootstrap, name string) *listenerv3.Listener {
	tb.Helper()
	for _, l := range b.GetStaticResources().GetListeners() {
		if l.GetName() == name {
			return l
		}
	}
	tb.Fatalf("no listener %q", name)
	return nil
}

func cluster(tb testing.TB, b *bootstrapv3.Bootstrap, name string) *clusterv3.Cluster {
	tb.Helper()
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == name {
			return c
		}
	}
	tb.Fatalf("no cluster %q", name)
	return nil
}

func mustUnpack(tb testing.TB, a *anypb.Any, m proto.Message) {
	tb.Helper()
	if a == nil {
		tb.Fatalf("missing typed config for %T", m)
	}
	if err := a.UnmarshalTo(m); err != nil {
		tb.Fatal(err)
	}
}
