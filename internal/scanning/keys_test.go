package scanning_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/scanning"
	"github.com/tollgate/tollgate/internal/scanning/scanningtest"
)

// keyServer publishes a key document that the test can change, and counts
// how often it is read.
type keyServer struct {
	mu    sync.Mutex
	doc   []byte
	reads atomic.Int64
}

func (k *keyServer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	k.reads.Add(1)
	k.mu.Lock()
	defer k.mu.Unlock()
	w.Write(k.doc)
}

func (k *keyServer) publish(doc []byte) {
	k.mu.Lock()
	k.doc = doc
	k.mu.Unlock()
}

// TestKeysRefetchBound: an unknown identifier reads the document again at
// most once per interval, however many reports carry it; a key GitHub
// starts signing with is picked up once the interval has passed.
func TestKeysRefetchBound(t *testing.T) {
	old, next := scanningtest.NewReporter(t), scanningtest.NewReporter(t)
	ks := &keyServer{doc: scanningtest.KeysDocument(t, old)}
	srv := httptest.NewServer(ks)
	defer srv.Close()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	keys, err := scanning.NewKeys(srv.URL, time.Minute, srv.Client(), func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := keys.Key(ctx, old.ID); err != nil {
		t.Fatalf("current key: %v", err)
	}
	for range 100 {
		if _, err := keys.Key(ctx, "made-up"); err == nil {
			t.Fatalf("a made-up identifier found a key")
		}
		if _, err := keys.Key(ctx, old.ID); err != nil {
			t.Fatalf("cached key: %v", err)
		}
	}
	if got := ks.reads.Load(); got != 1 {
		t.Errorf("reads after 100 unknown identifiers within the interval: got %d, want 1 (the first read)", got)
	}
	ks.publish(scanningtest.KeysDocument(t, old, next))
	if _, err := keys.Key(ctx, next.ID); err == nil {
		t.Errorf("a new key was found within the refetch interval; want it refused until the interval passes")
	}
	now = now.Add(time.Minute)
	if _, err := keys.Key(ctx, next.ID); err != nil {
		t.Errorf("the new key after the interval: %v", err)
	}
	if got := ks.reads.Load(); got != 2 {
		t.Errorf("reads: got %d, want 2", got)
	}
}

// TestParseKeysRefusesOtherCurves: a document with a key that is not ECDSA
// P-256 is refused whole.
func TestParseKeysRefusesOtherCurves(t *testing.T) {
	good := scanningtest.KeysDocument(t, scanningtest.NewReporter(t))
	if keys, err := scanning.ParseKeys(good); err != nil || len(keys) != 1 {
		t.Fatalf("good document: got %d keys, %v", len(keys), err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&p384.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := json.Marshal(map[string]any{"public_keys": []map[string]any{
		{"key_identifier": "p384", "key": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), "is_current": true},
	}})
	if _, err := scanning.ParseKeys(doc); err == nil {
		t.Errorf("a P-384 key was accepted")
	}
	for name, bad := range map[string]string{
		"not json": `{`, "no pem": `{"public_keys":[{"key_identifier":"a","key":"nope"}]}`,
		"no id": `{"public_keys":[{"key":"-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----\n"}]}`,
	} {
		if _, err := scanning.ParseKeys([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
