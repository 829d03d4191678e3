package k8s_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

// grpcPort is Tollgate's ext_authz port: only Envoy, in the same pod, may
// reach it.
const grpcPort = 9191

// TestPods checks the properties every pod in every kustomization must have.
func TestPods(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			r := MustRender(t, dir)
			d := only[*appsv1.Deployment](t, r)
			checkPodSecurity(t, "Deployment "+d.Name, &d.Spec.Template.Spec, true)
			j := only[*batchv1.Job](t, r)
			checkPodSecurity(t, "Job "+j.Name, &j.Spec.Template.Spec, false)
		})
	}
}

// checkPodSecurity: non-root, read-only root filesystem, no privilege
// escalation, no capabilities, RuntimeDefault seccomp, resources on every
// container; probes on every long-running one.
func checkPodSecurity(t *testing.T, owner string, spec *corev1.PodSpec, probes bool) {
	t.Helper()
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("%s: automountServiceAccountToken: want false", owner)
	}
	for _, c := range allContainers(spec) {
		name := fmt.Sprintf("%s container %s", owner, c.Name)
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("%s: no securityContext", name)
			continue
		}
		if !isTrue(sc.RunAsNonRoot) && !(spec.SecurityContext != nil && isTrue(spec.SecurityContext.RunAsNonRoot)) {
			t.Errorf("%s: runAsNonRoot: want true", name)
		}
		if sc.RunAsUser != nil && *sc.RunAsUser == 0 || spec.SecurityContext != nil && spec.SecurityContext.RunAsUser != nil && *spec.SecurityContext.RunAsUser == 0 {
			t.Errorf("%s: runs as uid 0", name)
		}
		if !isTrue(sc.ReadOnlyRootFilesystem) {
			t.Errorf("%s: readOnlyRootFilesystem: want true", name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: allowPrivilegeEscalation: want false", name)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			t.Errorf("%s: capabilities: want drop [ALL] and add nothing", name)
		}
		seccomp := sc.SeccompProfile
		if seccomp == nil && spec.SecurityContext != nil {
			seccomp = spec.SecurityContext.SeccompProfile
		}
		if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: seccompProfile: want RuntimeDefault", name)
		}
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := c.Resources.Requests[res]; !ok {
				t.Errorf("%s: no %s request", name, res)
			}
		}
		if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
			t.Errorf("%s: no memory limit", name)
		}
		if probes && (c.ReadinessProbe == nil || c.LivenessProbe == nil) {
			t.Errorf("%s: want readiness and liveness probes", name)
		}
	}
}

// TestGateway checks the Deployment's wiring: Envoy's readiness, Tollgate's
// loopback gRPC, the shutdown order, and that every ConfigMap and Secret it
// refers to exists where the kustomization creates it.
func TestGateway(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			r := MustRender(t, dir)
			d := only[*appsv1.Deployment](t, r)
			spec := &d.Spec.Template.Spec

			envoy := container(t, spec, "envoy")
			if p := envoy.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/ready" {
				t.Errorf("envoy: readinessProbe: want httpGet /ready (Envoy admin's, via the ops listener)")
			}
			if envoy.Lifecycle == nil || envoy.Lifecycle.PreStop == nil || envoy.Lifecycle.PreStop.Exec == nil ||
				!strings.Contains(strings.Join(envoy.Lifecycle.PreStop.Exec.Command, " "), "/healthcheck/fail") {
				t.Errorf("envoy: preStop: want a hook that fails Envoy's health check before it stops")
			}

			tg := container(t, spec, "tollgate")
			// A native sidecar: started before Envoy, stopped after it.
			if tg.RestartPolicy == nil || *tg.RestartPolicy != corev1.ContainerRestartPolicyAlways || !slices.ContainsFunc(spec.InitContainers, func(c corev1.Container) bool { return c.Name == "tollgate" }) {
				t.Errorf("tollgate: want an init container with restartPolicy Always (native sidecar), so it stops after Envoy")
			}
			if got := env(tg, "TOLLGATE_GRPC_ADDR"); !strings.HasPrefix(got, "127.0.0.1:") {
				t.Errorf("tollgate: TOLLGATE_GRPC_ADDR: got %q, want loopback", got)
			}
			for _, c := range allContainers(spec) {
				for _, p := range c.Ports {
					if p.ContainerPort == grpcPort {
						t.Errorf("container %s: declares port %d", c.Name, grpcPort)
					}
				}
			}
			if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g < 30 {
				t.Errorf("terminationGracePeriodSeconds: want >= 30 to cover Envoy's drain and Tollgate's stop")
			}

			checkRefs(t, r, dir, spec)
		})
	}
}

// checkRefs: each ConfigMap volume and each required Secret key the pod
// uses exists in the rendered output. The base creates no Secret, so there
// the refs must name "tollgate" with the documented keys.
func checkRefs(t *testing.T, r *Rendered, dir string, spec *corev1.PodSpec) {
	t.Helper()
	configMaps := map[string]*corev1.ConfigMap{}
	secrets := map[string]*corev1.Secret{}
	for _, o := range r.Objects {
		switch o := o.(type) {
		case *corev1.ConfigMap:
			configMaps[o.Name] = o
		case *corev1.Secret:
			secrets[o.Name] = o
		}
	}
	for _, v := range spec.Volumes {
		if v.ConfigMap == nil {
			continue
		}
		if _, ok := configMaps[v.ConfigMap.Name]; !ok {
			t.Errorf("volume %s: ConfigMap %s is not rendered", v.Name, v.ConfigMap.Name)
		}
	}
	wantKeys := map[string]bool{"database-url": true, "encryption-key": true}
	for _, c := range allContainers(spec) {
		for _, e := range c.Env {
			ref := e.ValueFrom
			if ref == nil || ref.SecretKeyRef == nil {
				continue
			}
			sk := ref.SecretKeyRef
			delete(wantKeys, sk.Key)
			if len(secrets) == 0 { // the base
				if sk.Name != "tollgate" {
					t.Errorf("%s: env %s: secret %q, want tollgate (docs/deploy.md tells operators to create it)", c.Name, e.Name, sk.Name)
				}
				continue
			}
			s, ok := secrets[sk.Name]
			if !ok {
				t.Errorf("%s: env %s: Secret %s is not rendered", c.Name, e.Name, sk.Name)
				continue
			}
			_, inData := s.Data[sk.Key]
			_, inString := s.StringData[sk.Key]
			if !inData && !inString && !isTrue(sk.Optional) {
				t.Errorf("%s: env %s: Secret %s has no key %s", c.Name, e.Name, sk.Name, sk.Key)
			}
		}
	}
	for k := range wantKeys {
		t.Errorf("%s: no container reads secret key %s", dir, k)
	}
}

// TestNetworkPolicy checks that the policy covers the gateway pods, opens
// no port it does not name, and never opens Tollgate's gRPC port.
func TestNetworkPolicy(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			r := MustRender(t, dir)
			d := only[*appsv1.Deployment](t, r)
			np := only[*networkingv1.NetworkPolicy](t, r)
			sel, err := metaSelector(np.Spec.PodSelector.MatchLabels)
			if err != nil {
				t.Fatal(err)
			}
			if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Errorf("podSelector %v does not select the Deployment's pods %v", np.Spec.PodSelector.MatchLabels, d.Spec.Template.Labels)
			}
			if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
				t.Error("policyTypes: want Ingress")
			}
			for i, rule := range np.Spec.Ingress {
				if len(rule.Ports) == 0 {
					t.Errorf("ingress rule %d: no ports, so it opens every port (including %d)", i, grpcPort)
				}
				for _, p := range rule.Ports {
					if p.Port == nil || p.EndPort != nil {
						t.Errorf("ingress rule %d: a port range or missing port may include %d", i, grpcPort)
						continue
					}
					if p.Port.IntValue() == grpcPort || p.Port.String() == "grpc" {
						t.Errorf("ingress rule %d: opens Tollgate's gRPC port %s", i, p.Port.String())
					}
				}
			}
			for _, s := range all[*corev1.Service](r) {
				for _, p := range s.Spec.Ports {
					if p.Port == grpcPort || p.TargetPort.IntValue() == grpcPort {
						t.Errorf("Service %s exposes port %d", s.Name, grpcPort)
					}
				}
			}
		})
	}
}

// TestScaling checks that the HPA and the PDB point at the Deployment.
func TestScaling(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			r := MustRender(t, dir)
			d := only[*appsv1.Deployment](t, r)
			hpa := only[*autoscalingv2.HorizontalPodAutoscaler](t, r)
			if ref := hpa.Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.Name != d.Name {
				t.Errorf("HPA targets %s/%s, want Deployment/%s", ref.Kind, ref.Name, d.Name)
			}
			if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2 {
				t.Error("HPA minReplicas: want >= 2, so a disruption never takes the only pod")
			}
			if d.Spec.Replicas != nil {
				t.Error("Deployment sets replicas; the HPA owns the count and each apply would reset it")
			}
			pdb := only[*policyv1.PodDisruptionBudget](t, r)
			sel, err := metaSelector(pdb.Spec.Selector.MatchLabels)
			if err != nil {
				t.Fatal(err)
			}
			if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Errorf("PDB selector %v does not select the Deployment's pods", pdb.Spec.Selector.MatchLabels)
			}
		})
	}
}

func allContainers(spec *corev1.PodSpec) []corev1.Container {
	return append(slices.Clone(spec.InitContainers), spec.Containers...)
}

func container(tb testing.TB, spec *corev1.PodSpec, name string) corev1.Container {
	tb.Helper()
	for _, c := range allContainers(spec) {
		if c.Name == name {
			return c
		}
	}
	tb.Fatalf("no container %s", name)
	return corev1.Container{}
}

func env(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func isTrue(b *bool) bool { return b != nil && *b }

func metaSelector(m map[string]string) (labels.Selector, error) {
	if len(m) == 0 {
		return nil, fmt.Errorf("empty selector selects everything")
	}
	return labels.SelectorFromSet(m), nil
}

// all returns the rendered objects of type T.
func all[T runtime.Object](r *Rendered) []T {
	var out []T
	for _, o := range r.Objects {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// only returns the one rendered object of type T.
func only[T runtime.Object](tb testing.TB, r *Rendered) T {
	tb.Helper()
	objs := all[T](r)
	if len(objs) != 1 {
		var zero T
		tb.Fatalf("%s: got %d objects of type %T, want 1", r.Dir, len(objs), zero)
	}
	return objs[0]
}
