package scanning_test

import (
	"testing"

	"github.com/tollgate/tollgate/internal/scanning"
	"github.com/tollgate/tollgate/internal/scanning/scanningtest"
)

// FuzzParseKeys: a key document from the network is either refused or
// yields only P-256 keys with identifiers; it never panics.
func FuzzParseKeys(f *testing.F) {
	f.Add(scanningtest.KeysDocument(f, scanningtest.NewReporter(f)))
	f.Add([]byte(`{"public_keys":[{"key_identifier":"a","key":"-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----\n"}]}`))
	f.Add([]byte(`{"public_keys":null}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		keys, err := scanning.ParseKeys(doc)
		if err != nil {
			return
		}
		for id, k := range keys {
			if id == "" || k == nil || k.Curve.Params().Name != "P-256" {
				t.Fatalf("key %q: %v", id, k)
			}
		}
	})
}
