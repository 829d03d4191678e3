package envoy_test

import (
	"os"
	"slices"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
)

func mustLoad(tb testing.TB, path string) *bootstrapv3.Bootstrap {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := LoadBootstrap(data)
	if err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	return b
}

// takeCluster removes the cluster called name from b and returns it.
func takeCluster(tb testing.TB, b *bootstrapv3.Bootstrap, name string) *clusterv3.Cluster {
	tb.Helper()
	cs := b.GetStaticResources().GetClusters()
	i := slices.IndexFunc(cs, func(c *clusterv3.Cluster) bool { return c.GetName() == name })
	if i < 0 {
		tb.Fatalf("no cluster %q", name)
	}
	c := cs[i]
	b.StaticResources.Clusters = slices.Delete(cs, i, i+1)
	return c
}

// TestSharedService holds envoy/shared-service.yaml to envoy.yaml, apart
// from the tollgate cluster, and checks that cluster speaks mTLS: a client
// certificate, Tollgate's certificate verified against a CA and its name,
// HTTP/2 by ALPN, files re-read when cert-manager rotates them.
func TestSharedService(t *testing.T) {
	sidecar, shared := mustLoad(t, "envoy.yaml"), mustLoad(t, "shared-service.yaml")
	if c := takeCluster(t, sidecar, "tollgate"); c.GetTransportSocket() != nil {
		t.Error("the sidecar's tollgate cluster has a transport socket; it speaks plaintext on loopback")
	}
	c := takeCluster(t, shared, "tollgate")
	if !proto.Equal(sidecar, shared) {
		t.Fatal("shared-service.yaml differs from envoy.yaml outside the tollgate cluster; make the same change in both")
	}

	ts := c.GetTransportSocket()
	if ts.GetName() != "envoy.transport_sockets.tls" {
		t.Fatalf("tollgate cluster transport socket %q, want envoy.transport_sockets.tls", ts.GetName())
	}
	var up tlsv3.UpstreamTlsContext
	if err := ts.GetTypedConfig().UnmarshalTo(&up); err != nil {
		t.Fatalf("transport socket: %v", err)
	}
	ctx := up.GetCommonTlsContext()
	if !slices.Contains(ctx.GetAlpnProtocols(), "h2") {
		t.Error("no h2 in alpn_protocols: gRPC needs HTTP/2, which Tollgate's TLS listener offers by ALPN")
	}
	certs := ctx.GetTlsCertificates()
	if len(certs) != 1 || certs[0].GetCertificateChain().GetFilename() == "" || certs[0].GetPrivateKey().GetFilename() == "" {
		t.Fatalf("want one client certificate and key from files (mTLS), got %v", certs)
	}
	if certs[0].GetWatchedDirectory().GetPath() == "" {
		t.Error("the client certificate is not re-read when rotated (watched_directory)")
	}
	vc := ctx.GetValidationContext()
	if vc.GetTrustedCa().GetFilename() == "" {
		t.Fatal("Tollgate's certificate is not verified (no trusted_ca)")
	}
	sans := vc.GetMatchTypedSubjectAltNames()
	if len(sans) != 1 || sans[0].GetMatcher().GetExact() != up.GetSni() || up.GetSni() == "" {
		t.Fatalf("want Tollgate's name checked against the SNI %q, got %v", up.GetSni(), sans)
	}
	if len(c.GetHealthChecks()) == 0 || c.GetHealthChecks()[0].GetGrpcHealthCheck() == nil {
		t.Error("no gRPC health check: a draining replica would stay in rotation")
	}
}
