package seal_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
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

func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, seal.KeySize)
	rand.Read(k)
	return k
}

// TestKeyring: a Box seals under its current key only, opens what any of
// its keys sealed, and refuses what none of them did.
func TestKeyring(t *testing.T) {
	a, b, c := newKey(t), newKey(t), newKey(t)
	onlyA, _ := seal.NewBox(a)
	onlyB, _ := seal.NewBox(b)
	ring, err := seal.NewBox(b, c, a)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("tss_rotated")
	underA := onlyA.Seal("tok_a", secret)
	if got, err := ring.Open("tok_a", underA); err != nil || !bytes.Equal(got, secret) {
		t.Errorf("a previous key: Open = %q, %v; want %q", got, err, secret)
	}
	if _, err := ring.Open("tok_b", underA); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("a previous key, another owner: got %v, want ErrOpen", err)
	}
	sealed := ring.Seal("tok_a", secret)
	if got, err := onlyB.Open("tok_a", sealed); err != nil || !bytes.Equal(got, secret) {
		t.Errorf("sealed by the ring, opened by its current key alone: %q, %v", got, err)
	}
	if _, err := onlyA.Open("tok_a", sealed); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("the ring sealed under a previous key: got %v, want ErrOpen", err)
	}
	stranger, _ := seal.NewBox(newKey(t))
	if _, err := ring.Open("tok_a", stranger.Seal("tok_a", secret)); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("a key the ring does not hold: got %v, want ErrOpen", err)
	}
	cur, prev := ring.KeyIDs()
	if cur != seal.KeyID(b) || len(prev) != 2 || prev[0] != seal.KeyID(c) || prev[1] != seal.KeyID(a) || cur == prev[1] {
		t.Errorf("KeyIDs = %s, %v; want b's, then c's and a's", cur, prev)
	}
	if strings.Contains(base64.StdEncoding.EncodeToString(b)+hex.EncodeToString(b), cur) {
		t.Error("the key id is part of the key")
	}
	if _, err := seal.NewBox(b, a[:16]); err == nil {
		t.Error("NewBox took a 16-byte previous key")
	}
}

// TestReseal: a value under a previous key comes back sealed under the
// current one; a current one comes back as it was; one no key opens is
// refused.
func TestReseal(t *testing.T) {
	a, b := newKey(t), newKey(t)
	onlyA, _ := seal.NewBox(a)
	onlyB, _ := seal.NewBox(b)
	ring, _ := seal.NewBox(b, a)
	secret := []byte("pk_kept")
	old := onlyA.Seal("tok_x#value", secret)
	now, changed, err := ring.Reseal("tok_x#value", old)
	if err != nil || !changed {
		t.Fatalf("Reseal of an old value = changed %v, %v; want changed", changed, err)
	}
	if got, err := onlyB.Open("tok_x#value", now); err != nil || !bytes.Equal(got, secret) {
		t.Errorf("the resealed value under the current key alone: %q, %v", got, err)
	}
	again, changed, err := ring.Reseal("tok_x#value", now)
	if err != nil || changed || !bytes.Equal(again, now) {
		t.Errorf("Reseal of a current value = changed %v, same %v, %v; want it unchanged", changed, bytes.Equal(again, now), err)
	}
	if _, _, err := ring.Reseal("tok_y#value", old); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("Reseal for another owner: got %v, want ErrOpen", err)
	}
	if _, _, err := onlyB.Reseal("tok_x#value", old); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("Reseal without the old key: got %v, want ErrOpen", err)
	}
}

func TestParseKeys(t *testing.T) {
	a, b := newKey(t), newKey(t)
	text := "# rotated out on 2026-12-02\n" + base64.StdEncoding.EncodeToString(a) + "\n\n  " + hex.EncodeToString(b) + "  \n"
	keys, err := seal.ParseKeys(text)
	if err != nil || len(keys) != 2 || !bytes.Equal(keys[0], a) || !bytes.Equal(keys[1], b) {
		t.Errorf("ParseKeys = %d keys, %v; want a then b", len(keys), err)
	}
	if keys, err := seal.ParseKeys(base64.StdEncoding.EncodeToString(a) + "," + base64.StdEncoding.EncodeToString(b)); err != nil || len(keys) != 2 {
		t.Errorf("comma-separated: %d keys, %v", len(keys), err)
	}
	if keys, err := seal.ParseKeys("\n# none\n"); err != nil || len(keys) != 0 {
		t.Errorf("no keys: %d keys, %v", len(keys), err)
	}
	_, err = seal.ParseKeys(base64.StdEncoding.EncodeToString(a) + "\nnot-a-key\n")
	if err == nil || !strings.Contains(err.Error(), "key 2") || strings.Contains(err.Error(), "not-a-key") {
		t.Errorf("a bad second key: %v; want an error naming key 2 and not quoting it", err)
	}
}
