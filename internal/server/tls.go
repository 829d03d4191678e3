package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/internal/certs"
)

// TLSConfig is the listeners' TLS. Without CertFile every listener is
// plaintext, which suits the sidecar, reached over loopback.
type TLSConfig struct {
	// CertFile and KeyFile hold the server's certificate chain and key,
	// served on every listener and reloaded when they change.
	CertFile, KeyFile string
	// ClientCAFile, when set, makes the authorization listeners (gRPC
	// Check and HTTP authorization) require a client certificate signed by
	// one of its CAs: mTLS, so that only the operator's proxies can ask.
	ClientCAFile string
	// ClientSANs, when set, admit only client certificates naming one of
	// them (DNS name, URI such as a SPIFFE ID, email or IP), exactly.
	ClientSANs []string
	// ReloadInterval is how often the files are read for a rotation.
	ReloadInterval time.Duration
}

// Validate reports an unusable TLS configuration.
func (c *TLSConfig) Validate() error {
	switch {
	case (c.CertFile == "") != (c.KeyFile == ""):
		return errors.New("a TLS certificate and its key must be given together")
	case c.ClientCAFile != "" && c.CertFile == "":
		return errors.New("client certificates need the server's own TLS certificate and key: a client certificate is asked for only over TLS")
	case len(c.ClientSANs) > 0 && c.ClientCAFile == "":
		return errors.New("allowed client SANs need a client CA bundle")
	case c.ReloadInterval <= 0:
		return errors.New("the TLS files' reload interval must be > 0")
	}
	return nil
}

// listenerTLS are the listeners' TLS configurations, all nil without TLS.
type listenerTLS struct {
	grpc, authz, api, metrics *tls.Config
}

// listenerTLS returns each listener's TLS. Only the authorization
// listeners ask for a client certificate: the Tokens API and the console
// serve people's browsers, and metrics a scraper.
func (s *Server) listenerTLS() (listenerTLS, error) {
	var out listenerTLS
	if s.certs == nil {
		return out, nil
	}
	httpProtos := []string{"h2", "http/1.1"}
	mtls, sans := s.cfg.TLS.ClientCAFile != "", s.cfg.TLS.ClientSANs
	for _, l := range []struct {
		name string
		dst  **tls.Config
		opt  certs.Options
	}{
		{"grpc-addr", &out.grpc, certs.Options{NextProtos: []string{"h2"}, RequireClientCert: mtls, ClientSANs: sans}},
		{"authz-http-addr", &out.authz, certs.Options{NextProtos: httpProtos, RequireClientCert: mtls, ClientSANs: sans}},
		{"http-addr", &out.api, certs.Options{NextProtos: httpProtos}},
		{"metrics-addr", &out.metrics, certs.Options{NextProtos: httpProtos}},
	} {
		c, err := s.certs.ServerConfig(l.opt)
		if err != nil {
			return listenerTLS{}, fmt.Errorf("invalid config: tls on %s: %w", l.name, err)
		}
		*l.dst = c
	}
	return out, nil
}
