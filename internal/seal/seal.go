// Package seal encrypts secrets at rest — the signing secrets of tokens
// that require signed requests, and the kept values of publishable tokens —
// with AES-256-GCM under a key the operator provides
// (TOLLGATE_ENCRYPTION_KEY, typically from a Kubernetes Secret). Each
// sealed value is bound to its owner (a token): it cannot be moved to
// another.
//
// A Box is a keyring: it seals under its current key and opens with the
// current key or any previous one, so that the key can be rotated without
// making what was sealed before unreadable. GCM's authentication tells a
// wrong key from the right one, so sealed values carry no key id and those
// sealed before keyrings existed open as they are.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
)

// KeySize is the key's length: AES-256.
const KeySize = 32

// Box seals secrets under its current key and opens them with the current
// key or a previous one. It is safe for concurrent use.
type Box struct {
	current  cipher.AEAD
	previous []cipher.AEAD
	ids      []string // KeyID of the current key, then of each previous one
}

// ParseKey decodes a key given as base64 (standard or URL alphabet, padded
// or not) or as hex, and checks its length.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, dec := range []func(string) ([]byte, error){
		base64.StdEncoding.DecodeString, base64.RawStdEncoding.DecodeString,
		base64.URLEncoding.DecodeString, base64.RawURLEncoding.DecodeString, hex.DecodeString,
	} {
		if k, err := dec(s); err == nil && len(k) == KeySize {
			return k, nil
		}
	}
	return nil, fmt.Errorf("seal: the encryption key must be %d bytes, in base64 or hex (try: openssl rand -base64 32)", KeySize)
}

// ParseKeys decodes a list of keys, each as ParseKey reads it, separated
// by line breaks, spaces or commas (neither base64 nor hex uses them). A
// line starting with # is a comment. An error names the key by its
// position, never by its text.
func ParseKeys(s string) ([][]byte, error) {
	var keys [][]byte
	for line := range strings.Lines(s) {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, f := range strings.FieldsFunc(line, func(r rune) bool { return r == ',' || unicode.IsSpace(r) }) {
			k, err := ParseKey(f)
			if err != nil {
				return nil, fmt.Errorf("key %d: %w", len(keys)+1, err)
			}
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// NewBox returns a Box that seals under key and opens with key, then with
// each of previous in order. Every key is KeySize bytes.
func NewBox(key []byte, previous ...[]byte) (*Box, error) {
	cur, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	b := &Box{current: cur, ids: []string{KeyID(key)}}
	for i, k := range previous {
		a, err := newAEAD(k)
		if err != nil {
			return nil, fmt.Errorf("previous key %d: %w", i+1, err)
		}
		b.previous = append(b.previous, a)
		b.ids = append(b.ids, KeyID(k))
	}
	return b, nil
}

// KeyID names a key without revealing it: the first 6 bytes of a SHA-256
// of it, in hex. Replicas log and export the ids of their keys, so an
// operator can see which replicas hold which key before re-sealing.
func KeyID(key []byte) string {
	h := sha256.Sum256(append([]byte("tollgate seal key id\x00"), key...))
	return hex.EncodeToString(h[:6])
}

// KeyIDs returns the KeyID of the current key, then those of the previous
// keys in the order they are tried.
func (b *Box) KeyIDs() (current string, previous []string) {
	return b.ids[0], slices.Clone(b.ids[1:])
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("seal: key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return aead, nil
}

// Seal encrypts secret for the owner (a token id) under the current key
// and returns the nonce followed by the ciphertext.
func (b *Box) Seal(owner string, secret []byte) []byte {
	nonce := make([]byte, b.current.NonceSize(), b.current.NonceSize()+len(secret)+b.current.Overhead())
	rand.Read(nonce) // never returns an error (crypto/rand's contract)
	return b.current.Seal(nonce, nonce, secret, []byte(owner))
}

// ErrOpen is returned for a sealed value that was tampered with, sealed
// under a key the Box does not hold, or sealed for another owner.
var ErrOpen = errors.New("seal: cannot open with the current or any previous encryption key: wrong key, wrong token, or damaged")

// Open decrypts what Seal returned for the same owner, under the current
// key or any previous one.
func (b *Box) Open(owner string, sealed []byte) ([]byte, error) {
	out, _, err := b.open(owner, sealed)
	return out, err
}

// Reseal returns sealed as it would be sealed now: unchanged (and false)
// when the current key opens it, else opened with a previous key and
// sealed again under the current one (and true). The secret never leaves
// the Box. A value no key opens is ErrOpen.
func (b *Box) Reseal(owner string, sealed []byte) ([]byte, bool, error) {
	secret, current, err := b.open(owner, sealed)
	if err != nil {
		return nil, false, err
	}
	if current {
		return sealed, false, nil
	}
	return b.Seal(owner, secret), true, nil
}

// open tries the current key, then each previous one, and says whether
// the current key opened it.
func (b *Box) open(owner string, sealed []byte) ([]byte, bool, error) {
	if out, ok := openWith(b.current, owner, sealed); ok {
		return out, true, nil
	}
	for _, a := range b.previous {
		if out, ok := openWith(a, owner, sealed); ok {
			return out, false, nil
		}
	}
	return nil, false, ErrOpen
}

func openWith(a cipher.AEAD, owner string, sealed []byte) ([]byte, bool) {
	n := a.NonceSize()
	if len(sealed) < n+a.Overhead() {
		return nil, false
	}
	out, err := a.Open(nil, sealed[:n], sealed[n:], []byte(owner))
	return out, err == nil
}
