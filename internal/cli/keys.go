package cli

import (
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/tollgate/tollgate/internal/seal"
)

// encryptionKeys is where a command finds the encryption keys: serve, the
// token commands and reseal all read them here, so that they agree on
// which key seals and which keys open. The zero value reads the
// environment alone.
type encryptionKeys struct {
	file, previousFile string
}

// bind adds the keys' flags to f.
func (k *encryptionKeys) bind(f *pflag.FlagSet) {
	f.StringVar(&k.file, "encryption-key-file", "",
		"file holding the key that seals signing secrets and kept token values (default: TOLLGATE_ENCRYPTION_KEY_FILE, else TOLLGATE_ENCRYPTION_KEY)")
	f.StringVar(&k.previousFile, "previous-encryption-keys-file", "",
		"file holding keys that open, but never seal, what an earlier key sealed, one a line, while a key is rotated (default: TOLLGATE_PREVIOUS_ENCRYPTION_KEYS_FILE, else TOLLGATE_PREVIOUS_ENCRYPTION_KEYS, comma-separated)")
}

// resolve returns the current key (nil: none) and the previous ones. A
// file, from its flag or else its TOLLGATE_…_FILE variable, wins over the
// keys given in the environment.
func (k encryptionKeys) resolve(getenv func(string) string) ([]byte, [][]byte, error) {
	if k.file == "" {
		k.file = getenv("TOLLGATE_ENCRYPTION_KEY_FILE")
	}
	if k.previousFile == "" {
		k.previousFile = getenv("TOLLGATE_PREVIOUS_ENCRYPTION_KEYS_FILE")
	}
	raw, from := getenv("TOLLGATE_ENCRYPTION_KEY"), "TOLLGATE_ENCRYPTION_KEY"
	if k.file != "" {
		b, err := os.ReadFile(k.file)
		if err != nil {
			return nil, nil, fmt.Errorf("encryption-key-file: %w", err)
		}
		raw, from = string(b), "encryption-key-file "+k.file
	}
	var cur []byte
	if raw != "" {
		var err error
		if cur, err = seal.ParseKey(raw); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", from, err)
		}
	}
	raw, from = getenv("TOLLGATE_PREVIOUS_ENCRYPTION_KEYS"), "TOLLGATE_PREVIOUS_ENCRYPTION_KEYS"
	if k.previousFile != "" {
		b, err := os.ReadFile(k.previousFile)
		if err != nil {
			return nil, nil, fmt.Errorf("previous-encryption-keys-file: %w", err)
		}
		raw, from = string(b), "previous-encryption-keys-file "+k.previousFile
	}
	prev, err := seal.ParseKeys(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", from, err)
	}
	if cur == nil && len(prev) > 0 {
		return nil, nil, fmt.Errorf("%s is set but no current key is (TOLLGATE_ENCRYPTION_KEY or --encryption-key-file): previous keys only open, a current key must seal", from)
	}
	return cur, prev, nil
}

// box returns the keyring the keys make, nil when there is no key.
func (k encryptionKeys) box(getenv func(string) string) (*seal.Box, error) {
	cur, prev, err := k.resolve(getenv)
	if err != nil || cur == nil {
		return nil, err
	}
	return seal.NewBox(cur, prev...)
}
