package envoy_test

import (
	"os"
	"slices"
	"strconv"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/tollgate/tollgate/internal/extauthz"
	"github.com/tollgate/tollgate/internal/policy"
)

// TestRouteRulesLoad reads the shipped route-rules files with Tollgate's
// own loader: what the repository ships, the server accepts.
func TestRouteRulesLoad(t *testing.T) {
	for _, path := range []string{"route-rules.yaml", "../k8s/base/route-rules.yaml"} {
		if _, err := extauthz.LoadRoutes(path); err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
}

// TestContextExtensionsAreValid checks every route's context_extensions in
// envoy.yaml against what Tollgate accepts, so no route answers with a
// configuration error at run time.
func TestContextExtensionsAreValid(t *testing.T) {
	b, err := os.ReadFile("envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	apis := []string{policy.APIData, policy.APIMaps, policy.APISQL, policy.APILDS, policy.APIImport}
	found := 0
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if ext, ok := x["context_extensions"].(map[string]any); ok {
				found++
				check(t, ext, apis)
			}
			for _, c := range x {
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(doc)
	if found == 0 {
		t.Fatal("envoy.yaml sets no context_extensions")
	}
}

func check(t *testing.T, ext map[string]any, apis []string) {
	t.Helper()
	str := func(k string) string { s, _ := ext[k].(string); return s }
	if api := str("api"); api != "" && !slices.Contains(apis, api) {
		t.Errorf("context_extensions %v: api %q is not one Tollgate knows", ext, api)
	}
	if _, ok := policy.ParseTier(str("tier")); !ok {
		t.Errorf("context_extensions %v: bad tier", ext)
	}
	if a := str("action"); a != "" {
		if _, ok := policy.ParseAction(a); !ok {
			t.Errorf("context_extensions %v: bad action", ext)
		}
	}
	if c := str("cost"); c != "" {
		if n, err := strconv.ParseInt(c, 10, 64); err != nil || n < 0 {
			t.Errorf("context_extensions %v: bad cost", ext)
		}
	}
}
