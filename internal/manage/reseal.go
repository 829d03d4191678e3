package manage

import (
	"context"
	"errors"
	"fmt"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/seal"
)

// ResealStore is where Reseal finds sealed values and replaces them;
// store.DB meets it.
type ResealStore interface {
	// SealedAfter returns the sealed values of up to limit tokens whose
	// ids follow after, in id order, and the id to continue after ("" at
	// the end).
	SealedAfter(ctx context.Context, after string, limit int) ([]policy.Sealed, string, error)
	// SealedOf returns the sealed values of one token, none if it is gone.
	SealedOf(ctx context.Context, id string) ([]policy.Sealed, error)
	// Reseal writes the replacements in one transaction, each only where
	// the column still holds the bytes it was read with, and says which
	// it wrote.
	Reseal(ctx context.Context, rs []policy.Resealed) ([]bool, error)
}

// ResealReport counts what Reseal did. Unopenable values are named by
// token and kind, never by their bytes.
type ResealReport struct {
	// KeyID is the current key's seal.KeyID: everything counted as
	// Resealed or Current is now sealed under it.
	KeyID      string       `json:"key_id"`
	Resealed   int          `json:"resealed"`
	Current    int          `json:"already_current"`
	Unopenable []Unopenable `json:"unopenable"`
}

// Unopenable is a sealed value that no key of the keyring opens.
type Unopenable struct {
	TokenID string `json:"token_id"`
	What    string `json:"what"` // "signing secret" or "value"
}

// resealAttempts bounds how often one value is read again after a replica
// changed it between Reseal's read and its write.
const resealAttempts = 5

// Reseal seals every token's signing secret and kept value again under
// box's current key, batch tokens at a time, each batch in a transaction
// of its own. What the current key already opens is left as it is, so a
// second run changes nothing; what no key opens is reported and left as it
// is. A value a replica changed meanwhile (a roll) is read again rather
// than overwritten. It is safe to run while replicas serve, provided each
// of them opens with the current key.
func Reseal(ctx context.Context, db ResealStore, box *seal.Box, batch int) (ResealReport, error) {
	rep := ResealReport{Unopenable: []Unopenable{}} // a list in JSON even when empty
	rep.KeyID, _ = box.KeyIDs()
	after := ""
	for {
		sealed, next, err := db.SealedAfter(ctx, after, batch)
		if err != nil {
			return rep, err
		}
		if err := resealBatch(ctx, db, box, sealed, &rep, resealAttempts); err != nil {
			return rep, err
		}
		if next == "" {
			return rep, nil
		}
		after = next
	}
}

// resealBatch reseals what one batch read, and reads again (up to
// attempts times) what changed before it was written.
func resealBatch(ctx context.Context, db ResealStore, box *seal.Box, sealed []policy.Sealed, rep *ResealReport, attempts int) error {
	var rs []policy.Resealed
	for _, s := range sealed {
		now, changed, err := box.Reseal(sealOwner(s), s.Bytes)
		switch {
		case errors.Is(err, seal.ErrOpen):
			rep.Unopenable = append(rep.Unopenable, Unopenable{TokenID: s.TokenID, What: s.Kind.String()})
		case err != nil:
			return fmt.Errorf("reseal %s of %s: %w", s.Kind, s.TokenID, err)
		case changed:
			rs = append(rs, policy.Resealed{Sealed: s, New: now})
		default:
			rep.Current++
		}
	}
	if len(rs) == 0 {
		return nil
	}
	written, err := db.Reseal(ctx, rs)
	if err != nil {
		return err
	}
	for i, r := range rs {
		if written[i] {
			rep.Resealed++
			continue
		}
		if attempts <= 1 {
			return fmt.Errorf("the %s of token %s kept changing while it was re-sealed: run reseal again", r.Kind, r.TokenID)
		}
		again, err := db.SealedOf(ctx, r.TokenID)
		if err != nil {
			return err
		}
		var same []policy.Sealed
		for _, s := range again {
			if s.Kind == r.Kind {
				same = append(same, s)
			}
		}
		if err := resealBatch(ctx, db, box, same, rep, attempts-1); err != nil {
			return err
		}
	}
	return nil
}

// sealOwner is what a sealed value is bound to: the token for its signing
// secret (as policy.Compile opens it), valueOwner for its kept value.
func sealOwner(s policy.Sealed) string {
	if s.Kind == policy.SealedValue {
		return valueOwner(s.TokenID)
	}
	return s.TokenID
}
