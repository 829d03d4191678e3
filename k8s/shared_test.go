package k8s_test

import (
	"bytes"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

type fileSource struct {
	Filename string `json:"filename"`
}

// envoyCluster is what the test reads of an Envoy cluster.
type envoyCluster struct {
	Name            string `json:"name"`
	TransportSocket struct {
		TypedConfig struct {
			SNI              string `json:"sni"`
			CommonTLSContext struct {
				TLSCertificates []struct {
					CertificateChain fileSource `json:"certificate_chain"`
					PrivateKey       fileSource `json:"private_key"`
				} `json:"tls_certificates"`
				ValidationContext struct {
					TrustedCA fileSource `json:"trusted_ca"`
				} `json:"validation_context"`
			} `json:"common_tls_context"`
		} `json:"typed_config"`
	} `json:"transport_socket"`
	LoadAssignment struct {
		Endpoints []struct {
			LbEndpoints []struct {
				Endpoint struct {
					Address struct {
						SocketAddress struct {
							Address   string `json:"address"`
							PortValue int    `json:"port_value"`
						} `json:"socket_address"`
					} `json:"address"`
				} `json:"endpoint"`
			} `json:"lb_endpoints"`
		} `json:"endpoints"`
	} `json:"load_assignment"`
}

// certManagerObject is the part of cert-manager's Issuer and Certificate
// (cert-manager.io/v1) that certificates.yaml uses, decoded strictly: a
// misspelt or misplaced field fails. cert-manager's own Go types would
// bring its whole module for two kinds.
type certManagerObject struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Spec struct {
		// Issuer
		SelfSigned *struct{} `json:"selfSigned,omitempty"`
		CA         *struct {
			SecretName string `json:"secretName"`
		} `json:"ca,omitempty"`
		// Certificate
		IsCA        bool     `json:"isCA,omitempty"`
		CommonName  string   `json:"commonName,omitempty"`
		SecretName  string   `json:"secretName,omitempty"`
		Duration    string   `json:"duration,omitempty"`
		RenewBefore string   `json:"renewBefore,omitempty"`
		DNSNames    []string `json:"dnsNames,omitempty"`
		URIs        []string `json:"uris,omitempty"`
		Usages      []string `json:"usages,omitempty"`
		PrivateKey  *struct {
			Algorithm      string `json:"algorithm"`
			Size           int    `json:"size"`
			RotationPolicy string `json:"rotationPolicy,omitempty"`
		} `json:"privateKey,omitempty"`
		IssuerRef *struct {
			Name  string `json:"name"`
			Kind  string `json:"kind"`
			Group string `json:"group"`
		} `json:"issuerRef,omitempty"`
	} `json:"spec"`
}

func mustCertManager(tb testing.TB, path string) map[string]certManagerObject {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]certManagerObject{}
	for doc := range bytes.SplitSeq(b, []byte("\n---\n")) {
		var o certManagerObject
		if err := yaml.UnmarshalStrict(doc, &o); err != nil {
			tb.Fatalf("%s: %v", path, err)
		}
		if o.APIVersion != "cert-manager.io/v1" || (o.Kind != "Issuer" && o.Kind != "Certificate") {
			tb.Fatalf("%s: %s %s, want a cert-manager.io/v1 Issuer or Certificate", path, o.APIVersion, o.Kind)
		}
		out[o.Kind+"/"+o.Metadata.Name] = o
	}
	for key, o := range out {
		if ref := o.Spec.IssuerRef; o.Kind == "Certificate" {
			if ref == nil || out["Issuer/"+ref.Name].Kind == "" {
				tb.Errorf("%s: its issuer is not in the file", key)
			}
			if o.Spec.SecretName == "" {
				tb.Errorf("%s: no secretName", key)
			}
		}
		if ca := o.Spec.CA; ca != nil && !slices.ContainsFunc(certificates(out), func(c certManagerObject) bool {
			return c.Spec.SecretName == ca.SecretName && c.Spec.IsCA
		}) {
			tb.Errorf("%s: no CA Certificate writes its Secret %s", key, ca.SecretName)
		}
	}
	return out
}

func certificates(m map[string]certManagerObject) []certManagerObject {
	var out []certManagerObject
	for _, o := range m {
		if o.Kind == "Certificate" {
			out = append(out, o)
		}
	}
	return out
}

func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// secretMount returns the Secret mounted at a path's directory in pod.
func secretMount(tb testing.TB, pod corev1.PodSpec, c corev1.Container, file string) string {
	tb.Helper()
	for _, m := range c.VolumeMounts {
		if strings.HasPrefix(file, m.MountPath+"/") {
			for _, v := range pod.Volumes {
				if v.Name == m.Name && v.Secret != nil {
					return v.Secret.SecretName
				}
			}
		}
	}
	tb.Fatalf("container %s: %s is on no Secret volume", c.Name, file)
	return ""
}

// TestSharedService renders the shared-service overlay and checks that
// its parts fit: the gateway runs Envoy alone with the shared-service
// config and the client certificate cert-manager writes; Tollgate serves
// TLS from the server certificate's Secret, requires the client
// certificate's CA and URI, and is reached at the name and port Envoy
// dials and verifies.
func TestSharedService(t *testing.T) {
	const dir = "overlays/shared-service"
	r := MustRender(t, dir)
	cm := mustCertManager(t, dir+"/certificates.yaml")
	server, client := cm["Certificate/tollgate-authz"], cm["Certificate/tollgate-envoy-client"]
	if !slices.Contains(server.Spec.Usages, "server auth") || !slices.Contains(client.Spec.Usages, "client auth") {
		t.Fatal("the server certificate must have server auth, the client certificate client auth")
	}

	var gateway, authz *appsv1.Deployment
	for _, d := range all[*appsv1.Deployment](r) {
		switch d.Labels["app.kubernetes.io/component"] {
		case "gateway":
			gateway = d
		case "authz":
			authz = d
		}
	}
	if gateway == nil || authz == nil {
		t.Fatal("want a gateway and an authz Deployment")
	}
	if n := len(gateway.Spec.Template.Spec.InitContainers); n != 0 {
		t.Fatalf("the gateway still runs %d init containers; the Tollgate sidecar must go", n)
	}

	// Envoy: the shared-service config, its client certificate.
	var envoyYAML string
	for _, c := range all[*corev1.ConfigMap](r) {
		if strings.HasPrefix(c.Name, "tollgate-envoy") {
			envoyYAML = c.Data["envoy.yaml"]
		}
	}
	want, err := os.ReadFile("../envoy/shared-service.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if envoyYAML != string(want) {
		t.Fatal("the Envoy ConfigMap does not hold envoy/shared-service.yaml")
	}
	// envoy/ validates the file against Envoy's protos; here only the
	// tollgate cluster's names and paths are read.
	var boot struct {
		StaticResources struct {
			Clusters []envoyCluster `json:"clusters"`
		} `json:"static_resources"`
	}
	if err := yaml.Unmarshal([]byte(envoyYAML), &boot); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(boot.StaticResources.Clusters, func(c envoyCluster) bool { return c.Name == "tollgate" })
	if i < 0 {
		t.Fatal("no tollgate cluster in the Envoy config")
	}
	cluster := boot.StaticResources.Clusters[i]
	up := cluster.TransportSocket.TypedConfig
	tc := up.CommonTLSContext.TLSCertificates[0]
	envoyC := gateway.Spec.Template.Spec.Containers[slices.IndexFunc(gateway.Spec.Template.Spec.Containers, func(c corev1.Container) bool { return c.Name == "envoy" })]
	for _, f := range []string{tc.CertificateChain.Filename, tc.PrivateKey.Filename, up.CommonTLSContext.ValidationContext.TrustedCA.Filename} {
		if got := secretMount(t, gateway.Spec.Template.Spec, envoyC, f); got != client.Spec.SecretName {
			t.Errorf("Envoy reads %s from Secret %s, want the client certificate's %s", f, got, client.Spec.SecretName)
		}
	}
	if !slices.Contains(server.Spec.DNSNames, up.SNI) {
		t.Errorf("Envoy expects %q; the server certificate names %v", up.SNI, server.Spec.DNSNames)
	}

	// Tollgate: its files, whom it admits, where it listens.
	tg := authz.Spec.Template.Spec.Containers[0]
	for _, env := range []string{"TOLLGATE_TLS_CERT", "TOLLGATE_TLS_KEY", "TOLLGATE_AUTHZ_CLIENT_CA"} {
		if got := secretMount(t, authz.Spec.Template.Spec, tg, envValue(tg, env)); got != server.Spec.SecretName {
			t.Errorf("%s is in Secret %s, want the server certificate's %s", env, got, server.Spec.SecretName)
		}
	}
	if sans := strings.Split(envValue(tg, "TOLLGATE_AUTHZ_CLIENT_SANS"), ","); !slices.Contains(sans, client.Spec.URIs[0]) {
		t.Errorf("Tollgate admits %v; the client certificate names %v", sans, client.Spec.URIs)
	}
	for _, p := range []*corev1.Probe{tg.StartupProbe, tg.LivenessProbe, tg.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Scheme != corev1.URISchemeHTTPS {
			t.Errorf("a probe of a TLS listener is not HTTPS: %+v", p)
		}
	}
	_, grpcPort, _ := net.SplitHostPort(envValue(tg, "TOLLGATE_GRPC_ADDR"))
	addr := cluster.LoadAssignment.Endpoints[0].LbEndpoints[0].Endpoint.Address.SocketAddress
	var svc *corev1.Service
	for _, s := range all[*corev1.Service](r) {
		if addr.Address == s.Name+"."+s.Namespace+".svc.cluster.local" {
			svc = s
		}
	}
	if svc == nil {
		t.Fatalf("no Service answers to %s, where Envoy sends checks", addr.Address)
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Error("the Service is not headless: each Envoy would send all its checks to one replica")
	}
	for k, v := range svc.Spec.Selector {
		if authz.Spec.Template.Labels[k] != v {
			t.Fatalf("the Service %s does not select the authz pods", svc.Name)
		}
	}
	scraped := false
	for _, sm := range all[*monitoringv1.ServiceMonitor](r) {
		if sm.Name != "tollgate-authz" {
			continue
		}
		scraped = true
		ep := sm.Spec.Endpoints[0]
		if ep.Scheme == nil || *ep.Scheme != "https" || ep.TLSConfig == nil || ep.TLSConfig.CA.Secret == nil ||
			ep.TLSConfig.CA.Secret.Name != server.Spec.SecretName || ep.TLSConfig.ServerName == nil ||
			!slices.Contains(server.Spec.DNSNames, *ep.TLSConfig.ServerName) {
			t.Errorf("the authz ServiceMonitor does not scrape over TLS with the server certificate's CA and name: %+v", ep)
		}
	}
	if !scraped {
		t.Error("no ServiceMonitor scrapes the authz replicas")
	}
	if len(svc.Spec.Ports) != 1 || strconv.Itoa(int(svc.Spec.Ports[0].Port)) != grpcPort || int(addr.PortValue) != int(svc.Spec.Ports[0].Port) {
		t.Errorf("Envoy dials port %d, the Service serves %v, Tollgate listens on %s", addr.PortValue, svc.Spec.Ports, grpcPort)
	}
}
