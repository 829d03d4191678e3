package envoy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	securityv1beta1 "istio.io/api/security/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// istioDoc is the envelope of an Istio resource. Its spec is decoded with
// protojson into istio.io/api's protos, which reject unknown fields.
type istioDoc struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       json.RawMessage   `json:"spec"`
}

// LoadIstio decodes one Istio YAML document strictly and returns its spec:
// a *meshv1alpha1.MeshConfig for an IstioOperator (its spec.meshConfig, the
// only part Tollgate needs), or a *securityv1beta1.AuthorizationPolicy.
func LoadIstio(data []byte) (kind string, spec proto.Message, err error) {
	var doc istioDoc
	if err := yaml.UnmarshalStrict(data, &doc); err != nil {
		return "", nil, fmt.Errorf("envelope: %w", err)
	}
	js := []byte(doc.Spec)
	switch doc.APIVersion + " " + doc.Kind {
	case "install.istio.io/v1alpha1 IstioOperator":
		var op struct {
			MeshConfig json.RawMessage `json:"meshConfig"`
		}
		if err := yaml.UnmarshalStrict(js, &op); err != nil {
			return "", nil, fmt.Errorf("IstioOperator spec (this test knows only meshConfig): %w", err)
		}
		spec, js = &meshv1alpha1.MeshConfig{}, op.MeshConfig
	case "security.istio.io/v1 AuthorizationPolicy", "security.istio.io/v1beta1 AuthorizationPolicy":
		spec = &securityv1beta1.AuthorizationPolicy{}
	default:
		return "", nil, fmt.Errorf("unknown kind %s %s", doc.APIVersion, doc.Kind)
	}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(js, spec); err != nil {
		return "", nil, fmt.Errorf("%s spec: %w", doc.Kind, err)
	}
	return doc.Kind, spec, nil
}

// TestIstio decodes every file in envoy/istio/ and checks that the
// AuthorizationPolicy delegates to the provider the mesh config declares,
// and that the provider fails closed.
func TestIstio(t *testing.T) {
	paths, err := filepath.Glob("istio/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	providers := map[string]*meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationGrpcProvider{}
	var policies []*securityv1beta1.AuthorizationPolicy
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		_, spec, err := LoadIstio(data)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		switch s := spec.(type) {
		case *meshv1alpha1.MeshConfig:
			for _, p := range s.GetExtensionProviders() {
				if g := p.GetEnvoyExtAuthzGrpc(); g != nil {
					providers[p.GetName()] = g
				}
			}
		case *securityv1beta1.AuthorizationPolicy:
			policies = append(policies, s)
		}
	}
	if len(providers) == 0 || len(policies) == 0 {
		t.Fatalf("got %d envoyExtAuthzGrpc providers and %d policies, want at least one of each", len(providers), len(policies))
	}
	for name, p := range providers {
		if p.GetFailOpen() {
			t.Errorf("provider %s: failOpen: got true, want false", name)
		}
		if p.GetPort() != 9191 {
			t.Errorf("provider %s: port: got %d, want 9191", name, p.GetPort())
		}
		if d := p.GetTimeout().AsDuration(); d <= 0 || d.Seconds() > 1 {
			t.Errorf("provider %s: timeout: got %v, want in (0, 1s] (Istio's default is 600s)", name, d)
		}
	}
	for _, ap := range policies {
		if ap.GetAction() != securityv1beta1.AuthorizationPolicy_CUSTOM {
			t.Errorf("policy: action: got %v, want CUSTOM", ap.GetAction())
		}
		if _, ok := providers[ap.GetProvider().GetName()]; !ok {
			t.Errorf("policy: provider %q is not declared in the mesh config", ap.GetProvider().GetName())
		}
	}
}

// TestLoadIstioRejects shows that the Istio decoding is strict.
func TestLoadIstioRejects(t *testing.T) {
	tests := map[string]struct {
		file, from, to, want string
	}{
		"unknown provider field": {"mesh-config.yaml", "failOpen: false", "failClosed: true", "failClosed"},
		"wrong type":             {"mesh-config.yaml", "port: 9191", "port: grpc", "port"},
		"unknown policy field":   {"authorization-policy.yaml", "action: CUSTOM", "action: CUSTOM\n  providers: []", "providers"},
		"unknown action":         {"authorization-policy.yaml", "action: CUSTOM", "action: DELEGATE", "DELEGATE"},
		"unknown metadata field": {"authorization-policy.yaml", "namespace: data", "namespace: data\n  owner: me", "owner"},
		"unknown kind":           {"authorization-policy.yaml", "kind: AuthorizationPolicy", "kind: AuthzPolicy", "AuthzPolicy"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("istio", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(data), tt.from) {
				t.Fatalf("%s does not contain %q", tt.file, tt.from)
			}
			_, _, err = LoadIstio([]byte(strings.Replace(string(data), tt.from, tt.to, 1)))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
