// Package seal encrypts secrets at rest — the signing secrets of tokens
// that require signed requests — with AES-256-GCM under a key the operator
// provides (TOLLGATE_ENCRYPTION_KEY, typically from a Kubernetes Secret).
// Each sealed value is bound to its token: it cannot be moved to another.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the key's length: AES-256.
const KeySize = 32

// Box seals and opens secrets under one key. It is safe for concurrent use.
type Box struct{ aead cipher.AEAD }

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

// NewBox returns a Box for a KeySize-byte key.
func NewBox(key []byte) (*Box, error) {
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
	return &Box{aead: aead}, nil
}

// Seal encrypts secret for the owner (a token id) and returns the nonce
// followed by the ciphertext.
func (b *Box) Seal(owner string, secret []byte) []byte {
	nonce := make([]byte, b.aead.NonceSize(), b.aead.NonceSize()+len(secret)+b.aead.Overhead())
	rand.Read(nonce) // never returns an error (crypto/rand's contract)
	return b.aead.Seal(nonce, nonce, secret, []byte(owner))
}

// ErrOpen is returned for a sealed value that was tampered with, sealed
// under another key, or sealed for another owner.
var ErrOpen = errors.New("seal: cannot open: wrong key, wrong token, or damaged")

// Open decrypts what Seal returned for the same owner.
func (b *Box) Open(owner string, sealed []byte) ([]byte, error) {
	n := b.aead.NonceSize()
	if len(sealed) < n+b.aead.Overhead() {
		return nil, ErrOpen
	}
	out, err := b.aead.Open(nil, sealed[:n], sealed[n:], []byte(owner))
	if err != nil {
		return nil, ErrOpen
	}
	return out, nil
}
