package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// opaEntry is a token as bench/opa's policy reads it from data: what
// Tollgate's cache holds for the cache-hit check (identity and allowed
// domains) and the count the credit header starts from.
type opaEntry struct {
	AccountID string   `json:"account_id"`
	TokenID   string   `json:"token_id"`
	Domains   []string `json:"domains"`
	Used      int64    `json:"used"`
}

// startOPA writes every seeded token into a data document for bench/opa
// (keyed by the hex SHA-256 of its value, as crypto.sha256 returns it)
// and starts that server, to run beside the no-op and Tollgate in the
// comparisons.
func (b *bench) startOPA() error {
	tokens := make(map[string]opaEntry, len(b.toks))
	for _, t := range b.toks {
		tokens[t.Hash.String()] = opaEntry{AccountID: t.AccountID, TokenID: t.ID, Domains: []string{"app.example.com", "*.example.org"}}
	}
	data, err := json.Marshal(map[string]any{"tokens": tokens})
	if err != nil {
		return err
	}
	path := filepath.Join(b.cfg.WorkDir, "opa-data.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return err
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	if b.opa, err = StartProc("opa", b.cfg.OPA, []string{"--grpc-addr", addr, "--data", path}, nil, filepath.Join(b.cfg.WorkDir, "opa.log")); err != nil {
		return err
	}
	b.opa.GRPCAddr = addr
	if err := b.opa.waitReady(60 * time.Second); err != nil {
		return err
	}
	if b.opaT, err = Dial("OPA", addr, 2); err != nil {
		return err
	}
	b.logf("OPA (bench/opa) serving %d tokens on %s", len(tokens), addr)
	return nil
}

// stopOPA stops the OPA server, if it runs.
func (b *bench) stopOPA() {
	if b.opaT != nil {
		b.opaT.Close()
		b.opaT = nil
	}
	if b.opa != nil {
		if err := b.opa.Stop(10 * time.Second); err != nil {
			b.logf("stop OPA: %v", err)
		}
		b.opa = nil
	}
}

// opaCheck measures src against the OPA server once, unchecked: its
// policy does not tell a malformed token from an unknown one (the deny
// share in the report shows it denies the mix's 10%).
func (b *bench) opaCheck(src Source, rate float64) (*Result, error) {
	r, err := b.measure(b.opaT, b.opa, src, rate, b.cfg.Phase, false)
	if err != nil {
		return nil, fmt.Errorf("OPA: %w", err)
	}
	return r, nil
}
