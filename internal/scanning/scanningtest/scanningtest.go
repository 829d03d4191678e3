// Package scanningtest is a test "GitHub": it makes ECDSA P-256 keys,
// publishes them in GitHub's key document, and signs and sends reports of
// leaked tokens as GitHub's secret-scanning partner programme does.
package scanningtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/scanning"
)

// Reporter is a signing key and its identifier.
type Reporter struct {
	Key *ecdsa.PrivateKey
	ID  string
}

// NewReporter returns a Reporter with a fresh key; its identifier is the
// hex SHA-256 of the public key, as GitHub's are.
func NewReporter(tb testing.TB) *Reporter {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("generate key: %v", err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		tb.Fatalf("marshal key: %v", err)
	}
	sum := sha256.Sum256(der)
	return &Reporter{Key: key, ID: hex.EncodeToString(sum[:])}
}

// KeysDocument returns GitHub's public-key document listing the reporters.
func KeysDocument(tb testing.TB, reps ...*Reporter) []byte {
	tb.Helper()
	type entry struct {
		ID        string `json:"key_identifier"`
		Key       string `json:"key"`
		IsCurrent bool   `json:"is_current"`
	}
	var doc struct {
		PublicKeys []entry `json:"public_keys"`
	}
	for i, r := range reps {
		der, err := x509.MarshalPKIXPublicKey(&r.Key.PublicKey)
		if err != nil {
			tb.Fatalf("marshal key: %v", err)
		}
		pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		doc.PublicKeys = append(doc.PublicKeys, entry{ID: r.ID, Key: string(pemKey), IsCurrent: i == len(reps)-1})
	}
	b, err := json.Marshal(doc)
	if err != nil {
		tb.Fatalf("marshal key document: %v", err)
	}
	return b
}

// WriteKeys writes the key document of reps to a file in tb's temporary
// directory and returns its path.
func WriteKeys(tb testing.TB, reps ...*Reporter) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "secret_scanning_keys.json")
	if err := os.WriteFile(path, KeysDocument(tb, reps...), 0o600); err != nil {
		tb.Fatalf("write keys: %v", err)
	}
	return path
}

// Report is one match, as GitHub sends it.
type Report struct {
	Token  string `json:"token"`
	Type   string `json:"type"`
	URL    string `json:"url"`
	Source string `json:"source"`
}

// Sign returns the base64 ASN.1 signature of body.
func (r *Reporter) Sign(tb testing.TB, body []byte) string {
	tb.Helper()
	digest := sha256.Sum256(body)
	sig, err := ecdsa.SignASN1(rand.Reader, r.Key, digest[:])
	if err != nil {
		tb.Fatalf("sign: %v", err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

// Body marshals reports as GitHub does.
func Body(tb testing.TB, reports ...Report) []byte {
	tb.Helper()
	b, err := json.Marshal(reports)
	if err != nil {
		tb.Fatalf("marshal reports: %v", err)
	}
	return b
}

// Post sends body to url with the given key identifier and signature and
// returns the status and the answer's body.
func Post(tb testing.TB, url, keyID, sig string, body []byte) (int, []byte) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		tb.Fatalf("new request: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(scanning.HeaderKeyID, keyID)
	req.Header.Set(scanning.HeaderSignature, sig)
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatalf("post report: %v", err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("read answer: %v", err)
	}
	return resp.StatusCode, out
}

// Send signs reports and posts them to url.
func (r *Reporter) Send(tb testing.TB, url string, reports ...Report) (int, []byte) {
	tb.Helper()
	body := Body(tb, reports...)
	return Post(tb, url, r.ID, r.Sign(tb, body), body)
}
