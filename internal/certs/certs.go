// Package certs provides TLS server configurations whose certificate and
// client CA bundle are read from files and reloaded when the files change,
// so that a certificate rotated in place (cert-manager, a renewed Secret)
// is served without a restart. A bad new certificate never replaces a good
// one: the old stays, and the failure is logged and counted.
package certs

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultInterval is how often the files are read for changes.
const DefaultInterval = 5 * time.Second

// Files names the PEM files a Reloader reads.
type Files struct {
	// Cert and Key are the server's certificate chain and private key.
	Cert, Key string
	// ClientCA, when set, is a bundle of the CAs whose client
	// certificates are accepted on listeners that require one.
	ClientCA string
}

// pair is one loaded generation of the files.
type pair struct {
	cert     *tls.Certificate
	clientCA *x509.CertPool // nil without Files.ClientCA
	notAfter time.Time
	sum      [sha256.Size]byte // of the files' bytes, to tell a change
}

// Reloader serves the certificate most recently read without error from
// its files. It is safe for concurrent use.
type Reloader struct {
	files    Files
	interval time.Duration
	log      *slog.Logger
	current  atomic.Pointer[pair]
	errors   atomic.Uint64
	mu       sync.Mutex // serialises Reload
	lastBad  [sha256.Size]byte
}

// New reads the files once and fails if they do not make a usable
// certificate (and CA bundle): a listener configured for TLS never starts
// without one. interval <= 0 means DefaultInterval.
func New(files Files, interval time.Duration, log *slog.Logger) (*Reloader, error) {
	if files.Cert == "" || files.Key == "" {
		return nil, errors.New("certs: both a certificate and a key file are needed")
	}
	if interval <= 0 {
		interval = DefaultInterval
	}
	r := &Reloader{files: files, interval: interval, log: log}
	p, err := r.read()
	if err != nil {
		return nil, err
	}
	r.current.Store(p)
	return r, nil
}

// read loads the files into a pair; it changes nothing.
func (r *Reloader) read() (*pair, error) {
	certPEM, err := os.ReadFile(r.files.Cert)
	if err != nil {
		return nil, fmt.Errorf("certs: read certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(r.files.Key)
	if err != nil {
		return nil, fmt.Errorf("certs: read key: %w", err)
	}
	var caPEM []byte
	if r.files.ClientCA != "" {
		if caPEM, err = os.ReadFile(r.files.ClientCA); err != nil {
			return nil, fmt.Errorf("certs: read client CA bundle: %w", err)
		}
	}
	h := sha256.New()
	for _, b := range [][]byte{certPEM, keyPEM, caPEM} {
		// Length-prefixed, so that bytes moving from one file to the
		// next still count as a change.
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	p := &pair{}
	h.Sum(p.sum[:0])
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return p, fmt.Errorf("certs: %s and %s: %w", r.files.Cert, r.files.Key, err)
	}
	p.cert, p.notAfter = &cert, cert.Leaf.NotAfter
	if time.Now().After(p.notAfter) {
		return p, fmt.Errorf("certs: %s expired at %s", r.files.Cert, p.notAfter.Format(time.RFC3339))
	}
	if caPEM != nil {
		p.clientCA = x509.NewCertPool()
		if !p.clientCA.AppendCertsFromPEM(caPEM) {
			return p, fmt.Errorf("certs: %s holds no PEM certificate", r.files.ClientCA)
		}
	}
	return p, nil
}

// Reload reads the files and, if they changed and make a usable pair,
// serves the new certificate. A failure keeps the one in force, is
// logged, counted and returned; the same bad files are reported once.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, err := r.read()
	if p != nil && p.sum == r.current.Load().sum {
		return nil
	}
	if err != nil {
		// An unreadable file has no content to tell apart; its error does.
		bad := sha256.Sum256([]byte(err.Error()))
		if p != nil {
			bad = p.sum
		}
		if bad != r.lastBad {
			r.lastBad = bad
			r.errors.Add(1)
			r.log.Error("tls: new certificate refused; the one in force keeps serving",
				"cert", r.files.Cert, "not_after", r.NotAfter(), "err", err)
		}
		return err
	}
	r.current.Store(p)
	r.log.Info("tls: certificate reloaded", "cert", r.files.Cert, "subject", p.cert.Leaf.Subject.String(),
		"not_after", p.notAfter)
	return nil
}

// Run reloads every interval until ctx ends. The files are polled rather
// than watched: Kubernetes updates a mounted Secret by swapping a symlink
// to a new directory, which watches on the files themselves miss, and
// reading three small files every few seconds costs nothing.
func (r *Reloader) Run(ctx context.Context) {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = r.Reload() // logged and counted by Reload
		}
	}
}

// NotAfter is when the certificate in force expires.
func (r *Reloader) NotAfter() time.Time { return r.current.Load().notAfter }

// Errors is how many new certificates were refused since the start.
func (r *Reloader) Errors() uint64 { return r.errors.Load() }

// Options shape one listener's TLS.
type Options struct {
	// NextProtos are the ALPN protocols the listener speaks.
	NextProtos []string
	// RequireClientCert asks for a client certificate signed by the
	// bundle in Files.ClientCA and refuses the handshake without one.
	RequireClientCert bool
	// ClientSANs, when set, admit only client certificates naming one of
	// them exactly, as a DNS name, URI (a SPIFFE ID), email or IP address.
	ClientSANs []string
}

// ServerConfig returns a tls.Config for a listener. Every handshake uses
// the certificate and CA bundle in force at that moment.
func (r *Reloader) ServerConfig(opt Options) (*tls.Config, error) {
	if opt.RequireClientCert && r.files.ClientCA == "" {
		return nil, errors.New("certs: a client certificate is required but no client CA bundle is set")
	}
	if len(opt.ClientSANs) > 0 && !opt.RequireClientCert {
		return nil, errors.New("certs: client SANs are checked only when a client certificate is required")
	}
	allowed := make(map[string]bool, len(opt.ClientSANs))
	for _, s := range opt.ClientSANs {
		allowed[s] = true
	}
	protos := append([]string(nil), opt.NextProtos...)
	base := &tls.Config{MinVersion: tls.VersionTLS12}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		p := r.current.Load()
		c := &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{*p.cert},
			NextProtos:   protos,
		}
		if opt.RequireClientCert {
			c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, p.clientCA
			if len(allowed) > 0 {
				c.VerifyConnection = func(cs tls.ConnectionState) error { return checkSANs(cs, allowed) }
			}
		}
		return c, nil
	}
	return base, nil
}

// ErrSANNotAllowed refuses a client certificate that names none of the
// allowed SANs.
var ErrSANNotAllowed = errors.New("certs: client certificate names no allowed SAN")

// checkSANs admits a verified client certificate that names an allowed
// SAN. It runs after the chain was verified against the CA bundle.
func checkSANs(cs tls.ConnectionState, allowed map[string]bool) error {
	if len(cs.PeerCertificates) == 0 {
		return ErrSANNotAllowed
	}
	leaf := cs.PeerCertificates[0]
	for _, n := range leaf.DNSNames {
		if allowed[n] {
			return nil
		}
	}
	for _, u := range leaf.URIs {
		if allowed[u.String()] {
			return nil
		}
	}
	for _, e := range leaf.EmailAddresses {
		if allowed[e] {
			return nil
		}
	}
	for _, ip := range leaf.IPAddresses {
		if allowed[ip.String()] {
			return nil
		}
	}
	return fmt.Errorf("%w (subject %q)", ErrSANNotAllowed, leaf.Subject.String())
}
