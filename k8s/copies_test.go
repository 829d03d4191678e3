package k8s_test

import (
	"bytes"
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// copies are files kustomize needs inside k8s/base but whose source of
// truth is envoy/ (where go test ./envoy/ validates them).
var copies = map[string]string{
	"base/envoy.yaml":       "../envoy/envoy.yaml",
	"base/route-rules.yaml": "../envoy/route-rules.yaml",
	// The shared-service shape's Envoy.
	"overlays/shared-service/envoy.yaml": "../envoy/shared-service.yaml",
}

// TestCopiesMatch fails when a copy drifts from its source. To fix:
//
//	cp envoy/envoy.yaml envoy/route-rules.yaml k8s/base/
func TestCopiesMatch(t *testing.T) {
	for cp, src := range copies {
		a, err := os.ReadFile(cp)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("k8s/%s differs from %s; run: cp %s k8s/%s", cp, src[3:], src[3:], cp)
		}
	}
}

// TestConfigMapsCarryFiles checks that the rendered ConfigMaps hold the
// files byte for byte, so the pod runs the Envoy config the tests validated.
func TestConfigMapsCarryFiles(t *testing.T) {
	want := map[string]string{
		"envoy.yaml":       "../envoy/envoy.yaml",
		"route-rules.yaml": "../envoy/route-rules.yaml",
		"tollgate.yaml":    "", // the knobs: from the kustomization's own dir
	}
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			found := map[string]bool{}
			for _, cm := range all[*corev1.ConfigMap](MustRender(t, dir)) {
				for key, val := range cm.Data {
					src, ok := want[key]
					if !ok {
						continue
					}
					found[key] = true
					if src == "" {
						continue
					}
					b, err := os.ReadFile(src)
					if err != nil {
						t.Fatal(err)
					}
					if val != string(b) {
						t.Errorf("ConfigMap %s key %s differs from %s", cm.Name, key, src)
					}
				}
			}
			for key := range want {
				if !found[key] {
					t.Errorf("no ConfigMap carries %s", key)
				}
			}
		})
	}
}
