package k8s_test

import (
	"os"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// knobs are the keys Tollgate's config file accepts, with their kind.
var knobs = map[string]string{
	"cache-size":         "count",
	"cache-ttl":          "duration",
	"negative-cache-ttl": "duration",
	"max-staleness":      "duration",
	"resync-interval":    "duration",
	"store-timeout":      "duration",
	"replay-cache-size":  "count",
	"replay-per-token":   "count",
}

// TestKnobs checks the rendered tollgate.yaml of each kustomization: only
// known keys, values of the right kind, and a store-timeout shorter than
// the ext_authz timeout Envoy gives Tollgate.
func TestKnobs(t *testing.T) {
	envoyTimeout := extAuthzTimeout(t, "base/envoy.yaml")
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			var file string
			for _, cm := range all[*corev1.ConfigMap](MustRender(t, dir)) {
				if v, ok := cm.Data["tollgate.yaml"]; ok {
					file = v
				}
			}
			var values map[string]any
			if err := yaml.Unmarshal([]byte(file), &values); err != nil {
				t.Fatal(err)
			}
			if len(values) == 0 {
				t.Fatal("tollgate.yaml sets no knob")
			}
			for k, v := range values {
				s := toString(v)
				switch knobs[k] {
				case "count":
					if n, err := strconv.Atoi(s); err != nil || n <= 0 {
						t.Errorf("%s: got %q, want a positive integer", k, s)
					}
				case "duration":
					d, err := time.ParseDuration(s)
					if err != nil || d <= 0 {
						t.Errorf("%s: got %q, want a positive duration", k, s)
					}
					if k == "store-timeout" && d >= envoyTimeout {
						t.Errorf("store-timeout %v >= Envoy's ext_authz timeout %v: Envoy would give up first", d, envoyTimeout)
					}
				default:
					t.Errorf("unknown knob %q", k)
				}
			}
		})
	}
}

func toString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return ""
}

// extAuthzTimeout finds grpc_service.timeout in an Envoy config.
func extAuthzTimeout(tb testing.TB, path string) time.Duration {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		tb.Fatal(err)
	}
	var found []time.Duration
	var walk func(any)
	walk = func(n any) {
		switch n := n.(type) {
		case map[string]any:
			if gs, ok := n["grpc_service"].(map[string]any); ok {
				if s, ok := gs["timeout"].(string); ok {
					if d, err := time.ParseDuration(s); err == nil {
						found = append(found, d)
					}
				}
			}
			for _, v := range n {
				walk(v)
			}
		case []any:
			for _, v := range n {
				walk(v)
			}
		}
	}
	walk(doc)
	if len(found) != 1 {
		tb.Fatalf("%s: got %d grpc_service timeouts, want 1", path, len(found))
	}
	return found[0]
}
