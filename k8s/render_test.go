// Package k8s_test renders the Kustomize base and overlays in k8s/ with the
// kustomize Go API (no binary, no cluster) and decodes every object strictly
// against the Kubernetes API types and the Prometheus Operator's CRD types:
// an unknown field, an unknown kind or a wrong type fails.
package k8s_test

import (
	"fmt"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// kustomizations are the directories rendered by the tests, relative to k8s/.
var kustomizations = []string{"base", "overlays/example"}

// NewScheme knows exactly the API groups the manifests may use. An object of
// any other kind fails to decode.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme,
		appsv1.AddToScheme,
		batchv1.AddToScheme,
		autoscalingv2.AddToScheme,
		policyv1.AddToScheme,
		networkingv1.AddToScheme,
		monitoringv1.AddToScheme,
	} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Decoder decodes YAML strictly: unknown and duplicate fields are errors.
type Decoder struct {
	scheme *runtime.Scheme
	yaml   *json.Serializer
}

// NewDecoder returns a strict Decoder over NewScheme.
func NewDecoder() (*Decoder, error) {
	s, err := NewScheme()
	if err != nil {
		return nil, err
	}
	y := json.NewSerializerWithOptions(json.DefaultMetaFactory, s, s, json.SerializerOptions{Yaml: true, Strict: true})
	return &Decoder{scheme: s, yaml: y}, nil
}

// Decode decodes one object. It returns an error for an unregistered kind,
// an unknown field or a value of the wrong type.
func (d *Decoder) Decode(data []byte) (runtime.Object, *schema.GroupVersionKind, error) {
	obj, gvk, err := d.yaml.Decode(data, nil, nil)
	if err != nil {
		return nil, gvk, err
	}
	return obj, gvk, nil
}

// Rendered is one kustomization's output, decoded.
type Rendered struct {
	Dir     string
	Objects []runtime.Object
}

// MustRender renders dir with kustomize and decodes each object strictly.
func MustRender(tb testing.TB, dir string) *Rendered {
	tb.Helper()
	d, err := NewDecoder()
	if err != nil {
		tb.Fatal(err)
	}
	docs, err := render(dir)
	if err != nil {
		tb.Fatalf("%s: %v", dir, err)
	}
	r := &Rendered{Dir: dir}
	for _, doc := range docs {
		obj, gvk, err := d.Decode(doc)
		if err != nil {
			tb.Fatalf("%s: %s: %v", dir, describe(gvk, doc), err)
		}
		r.Objects = append(r.Objects, obj)
	}
	return r
}

// render runs kustomize on dir (relative to k8s/) and returns one YAML
// document per object.
func render(dir string) ([][]byte, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize: %w", err)
	}
	var docs [][]byte
	for _, res := range m.Resources() {
		y, err := res.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", res.CurId(), err)
		}
		docs = append(docs, y)
	}
	return docs, nil
}

func describe(gvk *schema.GroupVersionKind, doc []byte) string {
	if gvk != nil && gvk.Kind != "" {
		return gvk.String()
	}
	first, _, _ := strings.Cut(string(doc), "\n")
	return first
}

// TestRender renders each kustomization and decodes every object strictly.
func TestRender(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			r := MustRender(t, dir)
			if len(r.Objects) == 0 {
				t.Fatal("rendered no objects")
			}
		})
	}
}

// TestDecoderRejects shows that the decoding in TestRender is strict: each
// case changes one object of the rendered base.
func TestDecoderRejects(t *testing.T) {
	d, err := NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	docs, err := render("base")
	if err != nil {
		t.Fatal(err)
	}
	find := func(kind string) string {
		t.Helper()
		for _, doc := range docs {
			if strings.Contains(string(doc), "\nkind: "+kind+"\n") {
				return string(doc)
			}
		}
		t.Fatalf("no %s in the base", kind)
		return ""
	}
	tests := map[string]struct {
		doc, from, to, want string
	}{
		"unknown field": {
			find("Deployment"), "revisionHistoryLimit: 5", "revisionHistoryLimit: 5\n  revisionHistory: 5", `unknown field "spec.revisionHistory"`,
		},
		"unknown field in a container": {
			find("Deployment"), "readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true", "readOnlyRootFileSystem",
		},
		"unknown field in a CRD": {
			find("ServiceMonitor"), "interval: 15s", "interval: 15s\n    scrapeEvery: 15s", "scrapeEvery",
		},
		"wrong type": {
			find("HorizontalPodAutoscaler"), "minReplicas: 2", "minReplicas: two", "minReplicas",
		},
		"unknown kind": {
			find("PodDisruptionBudget"), "kind: PodDisruptionBudget", "kind: PodDisruptionBudgets", "PodDisruptionBudgets",
		},
		"unknown API version": {
			find("HorizontalPodAutoscaler"), "apiVersion: autoscaling/v2", "apiVersion: autoscaling/v3", "autoscaling/v3",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if !strings.Contains(tt.doc, tt.from) {
				t.Fatalf("document does not contain %q", tt.from)
			}
			_, _, err := d.Decode([]byte(strings.Replace(tt.doc, tt.from, tt.to, 1)))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
