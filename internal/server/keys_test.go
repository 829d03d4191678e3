package server_test

import (
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/seal"
	"github.com/tollgate/tollgate/internal/server"
)

// TestPreviousKeysNeedACurrentKey: previous keys only open; a server given
// them without a key to seal with is refused at start, not run half-keyed.
func TestPreviousKeysNeedACurrentKey(t *testing.T) {
	cfg := server.DefaultConfig()
	cfg.Signing.PreviousEncryptionKeys = [][]byte{make([]byte, seal.KeySize)}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "previous encryption keys need a current encryption key") {
		t.Errorf("previous keys alone: got %v, want them refused", err)
	}
	cfg.Signing.EncryptionKey = make([]byte, seal.KeySize)
	if err := cfg.Validate(); err != nil {
		t.Errorf("a current key and a previous one: %v", err)
	}
}
