package scanning

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// maxKeysDocument bounds the key document read from a file or URL; GitHub's
// holds a handful of PEM keys, a few kilobytes.
const maxKeysDocument = 1 << 20

// Keys are the reporter's public keys, read from a file or a URL in
// GitHub's shape ({"public_keys":[{"key_identifier","key","is_current"}]})
// and cached by identifier. A report signed with an identifier not in the
// cache makes Keys read the document again, at most once per refetch
// interval, so a flood of made-up identifiers costs one fetch per interval.
type Keys struct {
	source  string
	refetch time.Duration
	client  *http.Client
	now     func() time.Time

	mu      sync.Mutex
	keys    map[string]*ecdsa.PublicKey
	fetched time.Time // zero until the first fetch succeeded
	tried   time.Time // the last fetch, whether or not it succeeded
}

// errUnknownKey is a signature by a key identifier the reporter does not
// publish (or not yet, within the refetch interval).
var errUnknownKey = errors.New("scanning: unknown public key identifier")

// NewKeys returns Keys read from source: a path, or an http(s) URL fetched
// with client (nil for a client with a 10 s timeout). refetch bounds how
// often the document is read again for an unknown identifier.
func NewKeys(source string, refetch time.Duration, client *http.Client, now func() time.Time) (*Keys, error) {
	if source == "" {
		return nil, errors.New("scanning: a key file or URL is needed")
	}
	if refetch <= 0 {
		return nil, errors.New("scanning: the key refetch interval must be > 0")
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	if now == nil {
		now = time.Now
	}
	return &Keys{source: source, refetch: refetch, client: client, now: now, keys: map[string]*ecdsa.PublicKey{}}, nil
}

// Key returns the public key with the identifier. It returns errUnknownKey
// when the reporter publishes no such key, and another error when the
// document cannot be read (the report should then be retried later).
func (k *Keys) Key(ctx context.Context, id string) (*ecdsa.PublicKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if key, ok := k.keys[id]; ok {
		return key, nil
	}
	now := k.now()
	if !k.tried.IsZero() && now.Sub(k.tried) < k.refetch {
		if k.fetched.IsZero() {
			return nil, fmt.Errorf("scanning: public keys from %s not read yet; next try in %s", k.source, k.refetch-now.Sub(k.tried))
		}
		return nil, errUnknownKey
	}
	// Holding the lock across the fetch is deliberate: concurrent reports
	// with unknown identifiers wait for one fetch instead of making many.
	k.tried = now
	keys, err := k.fetch(ctx)
	if err != nil {
		return nil, err
	}
	k.keys, k.fetched = keys, now
	if key, ok := keys[id]; ok {
		return key, nil
	}
	return nil, errUnknownKey
}

func (k *Keys) fetch(ctx context.Context) (map[string]*ecdsa.PublicKey, error) {
	var doc []byte
	if strings.HasPrefix(k.source, "https://") || strings.HasPrefix(k.source, "http://") {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.source, nil)
		if err != nil {
			return nil, fmt.Errorf("scanning: public keys: %w", err)
		}
		req.Header.Set("Accept", "application/json")
		resp, err := k.client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("scanning: fetch public keys: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("scanning: fetch public keys from %s: %s", k.source, resp.Status)
		}
		if doc, err = io.ReadAll(io.LimitReader(resp.Body, maxKeysDocument+1)); err != nil {
			return nil, fmt.Errorf("scanning: read public keys: %w", err)
		}
	} else {
		f, err := os.Open(k.source)
		if err != nil {
			return nil, fmt.Errorf("scanning: public keys: %w", err)
		}
		defer f.Close()
		if doc, err = io.ReadAll(io.LimitReader(f, maxKeysDocument+1)); err != nil {
			return nil, fmt.Errorf("scanning: read public keys: %w", err)
		}
	}
	if len(doc) > maxKeysDocument {
		return nil, fmt.Errorf("scanning: public keys from %s: larger than %d bytes", k.source, maxKeysDocument)
	}
	return ParseKeys(doc)
}

// ParseKeys reads GitHub's public-key document. Every key must be an ECDSA
// P-256 key in PEM (PKIX); one that is not fails the whole document, so
// that a mangled document is noticed rather than half used.
func ParseKeys(doc []byte) (map[string]*ecdsa.PublicKey, error) {
	var d struct {
		PublicKeys []struct {
			ID        string `json:"key_identifier"`
			Key       string `json:"key"`
			IsCurrent bool   `json:"is_current"`
		} `json:"public_keys"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("scanning: public keys: %w", err)
	}
	keys := make(map[string]*ecdsa.PublicKey, len(d.PublicKeys))
	for _, pk := range d.PublicKeys {
		// Keys no longer current still verify: GitHub rotates by
		// publishing the new key before signing with it, and reports in
		// flight may carry the old one.
		block, _ := pem.Decode([]byte(pk.Key))
		if pk.ID == "" || block == nil {
			return nil, fmt.Errorf("scanning: public key %q: no identifier or no PEM block", pk.ID)
		}
		parsed, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("scanning: public key %q: %w", pk.ID, err)
		}
		ec, ok := parsed.(*ecdsa.PublicKey)
		if !ok || ec.Curve != elliptic.P256() {
			return nil, fmt.Errorf("scanning: public key %q: not an ECDSA P-256 key", pk.ID)
		}
		keys[pk.ID] = ec
	}
	return keys, nil
}
