package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store"
)

func (a *app) serveCmd() *cobra.Command {
	var migrate, demo bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the ext_authz server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			db, err := a.openStore(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			if migrate {
				if _, err := db.Migrate(ctx); err != nil {
					return err
				}
			}
			if demo {
				if err := seedDemo(ctx, db, a.env.Stdout); err != nil {
					return err
				}
			}
			fmt.Fprintf(a.env.Stderr, "tollgate: store open (%s); waiting for a signal\n", db.Dialect())
			<-ctx.Done()
			return nil
		},
	}
	cmd.Flags().BoolVar(&migrate, "migrate", false, "migrate the database before serving")
	cmd.Flags().BoolVar(&demo, "demo", false, "seed a demo account with a publishable and a secret token, and print them")
	return cmd
}

// seedDemo creates a demo account and tokens and prints what to try.
func seedDemo(ctx context.Context, db *store.DB, w io.Writer) error {
	acc := &policy.Account{Name: "Demo", Premium: true}
	secret, secretValue, err := db.CreateAccount(ctx, acc)
	if err != nil {
		return fmt.Errorf("seed demo account: %w", err)
	}
	pub := policy.NewToken(acc.ID, policy.Publishable)
	pub.Nickname = "demo-web"
	pub.Datasets = map[string]policy.Actions{"stocks.*": policy.Actions(policy.Read)}
	pubValue, err := db.CreateToken(ctx, pub)
	if err != nil {
		return fmt.Errorf("seed demo token: %w", err)
	}
	fmt.Fprintf(w, "demo account %s\n  publishable token %s: %s\n  secret token      %s: %s\n",
		acc.ID, pub.ID, pubValue, secret.ID, secretValue)
	return nil
}
