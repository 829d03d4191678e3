package seal_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/tollgate/tollgate/internal/seal"
)

func TestSealOpen(t *testing.T) {
	key := make([]byte, seal.KeySize)
	rand.Read(key)
	box, err := seal.NewBox(key)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("tss_example")
	sealed := box.Seal("tok_a", secret)
	if bytes.Contains(sealed, secret) {
		t.Error("sealed value contains the secret")
	}
	if got, err := box.Open("tok_a", sealed); err != nil || !bytes.Equal(got, secret) {
		t.Errorf("Open = %q, %v; want %q", got, err, secret)
	}
	if bytes.Equal(box.Seal("tok_a", secret), sealed) {
		t.Error("two seals of one secret are equal: the nonce repeats")
	}
	other := make([]byte, seal.KeySize)
	rand.Read(other)
	otherBox, _ := seal.NewBox(other)
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	for name, open := range map[string]func() ([]byte, error){
		"other token": func() ([]byte, error) { return box.Open("tok_b", sealed) },
		"other key":   func() ([]byte, error) { return otherBox.Open("tok_a", sealed) },
		"tampered":    func() ([]byte, error) { return box.Open("tok_a", tampered) },
		"short":       func() ([]byte, error) { return box.Open("tok_a", sealed[:5]) },
	} {
		if _, err := open(); !errors.Is(err, seal.ErrOpen) {
			t.Errorf("%s: got %v, want ErrOpen", name, err)
		}
	}
}

func TestParseKey(t *testing.T) {
	key := make([]byte, seal.KeySize)
	rand.Read(key)
	for name, s := range map[string]string{
		"base64":     base64.StdEncoding.EncodeToString(key),
		"raw base64": base64.RawURLEncoding.EncodeToString(key),
		"hex":        hex.EncodeToString(key),
		"spaces":     " " + base64.StdEncoding.EncodeToString(key) + "\n",
	} {
		if got, err := seal.ParseKey(s); err != nil || !bytes.Equal(got, key) {
			t.Errorf("%s: ParseKey = %x, %v", name, got, err)
		}
	}
	for _, bad := range []string{"", "short", base64.StdEncoding.EncodeToString(key[:16])} {
		if _, err := seal.ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) succeeded", bad)
		}
	}
}
