package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/internal/manage"
	"github.com/tollgate/tollgate/internal/store"
)

func (a *app) resealCmd() *cobra.Command {
	var keys encryptionKeys
	var keyID string
	var batch int
	cmd := &cobra.Command{
		Use:   "reseal --key-id ID",
		Short: "Seal every signing secret and kept token value again under the current encryption key",
		Long: `Seal every token's signing secret and kept value again under the current
encryption key (TOLLGATE_ENCRYPTION_KEY or --encryption-key-file), opening
them with it or a previous key (TOLLGATE_PREVIOUS_ENCRYPTION_KEYS or
--previous-encryption-keys-file): the step of a key rotation after every
replica seals with the new key and still opens with the old one, and before
the old key is dropped (docs/sre.md, "Rotating the encryption key").

--key-id must name the current key as the replicas report it
(tollgate_encryption_keys_info's "current" label, or the "encryption keys"
line they log at start): reseal refuses to seal under any other key, so a
mistyped key cannot lock the replicas out.

Tokens are read and written --batch-size at a time, each batch in a
transaction of its own; a value a replica changes meanwhile (a roll) is read
again, never overwritten. Running it again changes nothing; with no previous
key it only checks that the current key opens everything. It exits non-zero
when a value opens with no key given, and names those tokens.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if batch < 1 {
				return fmt.Errorf("--batch-size must be at least 1, not %d", batch)
			}
			box, err := keys.box(a.env.Getenv)
			if err != nil {
				return err
			}
			if box == nil {
				return errors.New("no encryption key: set TOLLGATE_ENCRYPTION_KEY or --encryption-key-file to the key the replicas seal with, and the old key as a previous one")
			}
			if cur, _ := box.KeyIDs(); cur != keyID {
				return fmt.Errorf("the current key given to reseal has id %s, not --key-id %s: every value would be sealed under a key the replicas may not hold; give reseal the replicas' current key", cur, keyID)
			}
			var rep manage.ResealReport
			err = a.withStore(cmd.Context(), func(db *store.DB) error {
				rep, err = manage.Reseal(cmd.Context(), db, box, batch)
				return err
			})
			if err != nil {
				return fmt.Errorf("reseal stopped (what it wrote stays written; run it again): %w", err)
			}
			if err := a.print(rep, func(w io.Writer) {
				fmt.Fprintf(w, "re-sealed under key %s: %d re-sealed, %d already current, %d unopenable\n",
					rep.KeyID, rep.Resealed, rep.Current, len(rep.Unopenable))
				for _, u := range rep.Unopenable {
					fmt.Fprintf(w, "unopenable: %s %s\n", u.TokenID, u.What)
				}
			}); err != nil {
				return err
			}
			if n := len(rep.Unopenable); n > 0 {
				return fmt.Errorf("%d sealed values open with none of the keys given and were left as they are: give reseal the key they were sealed with as a previous key, or roll those tokens (tokens roll, tokens roll-signing-secret)", n)
			}
			return nil
		},
	}
	f := cmd.Flags()
	keys.bind(f)
	f.StringVar(&keyID, "key-id", "", "id of the current key, as the replicas report it (required)")
	f.IntVar(&batch, "batch-size", 500, "tokens read and re-sealed per transaction")
	cmd.MarkFlagRequired("key-id")
	return cmd
}
