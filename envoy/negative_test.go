package envoy_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestLoadBootstrapRejects breaks envoy.yaml in memory, one way per case,
// and checks that LoadBootstrap refuses it. Each case targets a layer: the
// strict decoder, the Any resolver, the bootstrap's own validation rules and
// the recursive validation of messages packed in an Any.
func TestLoadBootstrapRejects(t *testing.T) {
	tests := map[string]struct {
		mutate func(tb testing.TB, doc map[string]any)
		want   string // a substring of the error
	}{
		"unknown field": {
			mutate: func(tb testing.TB, doc map[string]any) {
				listener(tb, doc, "ingress")["listen_backlog"] = 128 // the real field is tcp_backlog_size
			},
			want: "unknown field",
		},
		"unknown field inside typed_config": {
			mutate: func(tb testing.TB, doc map[string]any) {
				httpFilter(tb, doc, "envoy.filters.http.ext_authz")["timeout"] = "0.25s" // belongs in grpc_service
			},
			want: "unknown field",
		},
		"wrong type": {
			mutate: func(tb testing.TB, doc map[string]any) {
				socketAddress(tb, listener(tb, doc, "ingress"))["port_value"] = "eighty"
			},
			want: "portValue",
		},
		"wrong type inside typed_config": {
			mutate: func(tb testing.TB, doc map[string]any) {
				httpFilter(tb, doc, "envoy.filters.http.ext_authz")["failure_mode_allow"] = "no"
			},
			want: "failureModeAllow",
		},
		"unknown enum value": {
			mutate: func(tb testing.TB, doc map[string]any) {
				httpFilter(tb, doc, "envoy.filters.http.ext_authz")["transport_api_version"] = "V4"
			},
			want: "V4",
		},
		"unresolvable typed_config": {
			mutate: func(tb testing.TB, doc map[string]any) {
				httpFilter(tb, doc, "envoy.filters.http.ext_authz")["@type"] = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzz"
			},
			want: "ExtAuthzz",
		},
		"invalid value": {
			mutate: func(tb testing.TB, doc map[string]any) {
				socketAddress(tb, listener(tb, doc, "ingress"))["port_value"] = 70000
			},
			want: "PortValue",
		},
		"invalid value inside typed_config": {
			mutate: func(tb testing.TB, doc map[string]any) {
				body := perRouteExtAuthz(tb, doc, "orders-signed")["check_settings"].(map[string]any)["with_request_body"].(map[string]any)
				body["max_request_bytes"] = 0
			},
			want: "MaxRequestBytes",
		},
		"invalid value in a nested typed_config": {
			mutate: func(tb testing.TB, doc map[string]any) {
				// An empty virtual host domain list: the route config sits in
				// the HCM, itself in an Any.
				hcm(tb, doc, "ingress")["route_config"].(map[string]any)["virtual_hosts"].([]any)[0].(map[string]any)["domains"] = []any{}
			},
			want: "Domains",
		},
		"deprecated field": {
			mutate: func(tb testing.TB, doc map[string]any) {
				// Moved to the HttpProtocolOptions extension.
				byName(tb, doc["static_resources"].(map[string]any)["clusters"], "tollgate")["max_requests_per_connection"] = 1000
			},
			want: "deprecated",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			doc := mustReadDoc(t, "envoy.yaml")
			tt.mutate(t, doc)
			data, err := json.Marshal(doc) // JSON is YAML
			if err != nil {
				t.Fatal(err)
			}
			_, err = LoadBootstrap(data)
			if err == nil {
				t.Fatalf("got nil error, want one containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestValidateAllSkipsAny shows why ValidateTree exists: the bootstrap's own
// ValidateAll accepts an invalid message packed in a typed_config.
func TestValidateAllSkipsAny(t *testing.T) {
	doc := mustReadDoc(t, "envoy.yaml")
	perRouteExtAuthz(t, doc, "orders-signed")["check_settings"].(map[string]any)["with_request_body"].(map[string]any)["max_request_bytes"] = 0
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	b, err := decodeBootstrap(js)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatalf("Bootstrap.ValidateAll: got %v, want nil (PGV does not look inside Any)", err)
	}
	if err := ValidateTree(b); err == nil {
		t.Fatal("ValidateTree: got nil, want an error for max_request_bytes: 0")
	}
}

// TestLoadBootstrapAcceptsUnchanged guards the negative tests: the document
// they start from is valid once re-encoded, so each failure is the mutation's.
func TestLoadBootstrapAcceptsUnchanged(t *testing.T) {
	data, err := json.Marshal(mustReadDoc(t, "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadBootstrap(data); err != nil {
		t.Fatalf("got %v, want nil", err)
	}
}

func mustReadDoc(tb testing.TB, path string) map[string]any {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		tb.Fatal(err)
	}
	return doc
}

// The helpers below find a node in the generic document by name, so the
// cases above do not depend on list positions.

func listener(tb testing.TB, doc map[string]any, name string) map[string]any {
	tb.Helper()
	return byName(tb, doc["static_resources"].(map[string]any)["listeners"], name)
}

func socketAddress(tb testing.TB, l map[string]any) map[string]any {
	tb.Helper()
	return l["address"].(map[string]any)["socket_address"].(map[string]any)
}

func hcm(tb testing.TB, doc map[string]any, listenerName string) map[string]any {
	tb.Helper()
	chains := listener(tb, doc, listenerName)["filter_chains"].([]any)
	f := byName(tb, chains[0].(map[string]any)["filters"], "envoy.filters.network.http_connection_manager")
	return f["typed_config"].(map[string]any)
}

func httpFilter(tb testing.TB, doc map[string]any, name string) map[string]any {
	tb.Helper()
	return byName(tb, hcm(tb, doc, "ingress")["http_filters"], name)["typed_config"].(map[string]any)
}

func perRouteExtAuthz(tb testing.TB, doc map[string]any, routeName string) map[string]any {
	tb.Helper()
	vhosts := hcm(tb, doc, "ingress")["route_config"].(map[string]any)["virtual_hosts"].([]any)
	r := byName(tb, vhosts[0].(map[string]any)["routes"], routeName)
	return r["typed_per_filter_config"].(map[string]any)["envoy.filters.http.ext_authz"].(map[string]any)
}

func byName(tb testing.TB, list any, name string) map[string]any {
	tb.Helper()
	for _, item := range list.([]any) {
		m := item.(map[string]any)
		if m["name"] == name {
			return m
		}
	}
	tb.Fatalf("no entry named %q", name)
	return nil
}
