package bench

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc/credentials"
)

// tlsFiles are a certificate for 127.0.0.1 and its key, written for a
// replica serving TLS, and a pool trusting the CA that signed them.
type tlsFiles struct {
	cert, key string
	roots     *x509.CertPool
}

// newTLSFiles makes a CA and a server certificate (ECDSA P-256, as
// cert-manager issues by default in certificates.yaml) in dir.
func newTLSFiles(dir string) (*tlsFiles, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tollgate-bench CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	if ca, err = x509.ParseCertificate(caDER); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "tollgate"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	f := &tlsFiles{cert: filepath.Join(dir, "tls.crt"), key: filepath.Join(dir, "tls.key"), roots: x509.NewCertPool()}
	f.roots.AddCert(ca)
	if err := os.WriteFile(f.cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(f.key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *tlsFiles) clientConfig() *tls.Config { return &tls.Config{RootCAs: f.roots} }

// startTLSTollgate starts a replica serving every listener over TLS
// (--tls-cert, --tls-key) beside the plaintext one, and dials it.
func (b *bench) startTLSTollgate(cacheSize int) (*Proc, *Target, error) {
	files, err := newTLSFiles(b.cfg.WorkDir)
	if err != nil {
		return nil, nil, fmt.Errorf("tls files: %w", err)
	}
	web := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: files.clientConfig()}}
	args := append(b.tollgateArgs(cacheSize), "--tls-cert", files.cert, "--tls-key", files.key)
	p, err := startServeWeb("tollgate-tls", b.cfg.Tollgate, args, b.tollgateEnv(), filepath.Join(b.cfg.WorkDir, "tollgate-tls.log"), web, "https")
	if err != nil {
		return nil, nil, err
	}
	if err := p.WaitMetric(b.ctx, "tollgate_listener_connected", 10*time.Second, func(v float64) bool { return v == 1 }); err != nil {
		p.Stop(5 * time.Second)
		return nil, nil, err
	}
	t, err := DialCreds("tollgate-tls", p.GRPCAddr, 2, credentials.NewTLS(files.clientConfig()))
	if err != nil {
		p.Stop(5 * time.Second)
		return nil, nil, err
	}
	return p, t, nil
}

// tlsRows measures the same cache-hit mix against the no-op server,
// Tollgate in plaintext and Tollgate over TLS, in turn, at each load: what
// the shared service's TLS costs per Check, beside the sidecar's loopback.
func (b *bench) tlsRows(n int, src Source) error {
	p, t, err := b.startTLSTollgate(max(500_000, n+n/10))
	if err != nil {
		return err
	}
	defer func() {
		t.Close()
		p.Stop(10 * time.Second)
	}()
	for _, rate := range []float64{0, b.cfg.Rates[0]} {
		row := TLSRow{Rate: rate}
		for _, c := range []struct {
			dst   **Result
			t     *Target
			p     *Proc
			check bool
		}{{&row.Noop, b.noopT, b.noop, false}, {&row.Plain, b.tgT, b.tg, true}, {&row.TLS, t, p, true}} {
			r, err := b.measure(c.t, c.p, src, rate, b.cfg.Phase, c.check)
			if err != nil {
				return err
			}
			*c.dst = r
		}
		b.rep.TLS = append(b.rep.TLS, row)
	}
	return nil
}
