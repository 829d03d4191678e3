package cli

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store"
)

func (a *app) accountsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "accounts", Short: "Manage accounts (customer workspaces)"}
	cmd.AddCommand(a.accountsCreateCmd(), a.accountsListCmd(), a.accountsShowCmd(), a.accountsUpdateCmd())
	return cmd
}

func (a *app) accountsCreateCmd() *cobra.Command {
	var acc policy.Account
	var quota int64
	cmd := &cobra.Command{
		Use:   "create --name NAME",
		Short: "Create an account and its secret token (the token is printed once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("credit-quota") {
				acc.CreditQuota = &quota
			}
			return a.withStore(cmd.Context(), func(db *store.DB) error {
				secret, value, err := db.CreateAccount(cmd.Context(), &acc)
				if err != nil {
					return err
				}
				out := struct {
					*policy.Account
					SecretTokenID string `json:"secret_token_id"`
					SecretToken   string `json:"secret_token"`
				}{&acc, secret.ID, value}
				return a.print(out, func(w io.Writer) {
					fmt.Fprintf(w, "account %s created\nsecret token %s: %s\n", acc.ID, secret.ID, value)
					fmt.Fprintln(w, "Keep the secret token safe: it is shown only this once.")
				})
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&acc.Name, "name", "", "account name (required)")
	f.BoolVar(&acc.Premium, "premium", false, "the account subscribes to premium data")
	f.Int64Var(&quota, "credit-quota", 0, "credits the account may spend per period (default: no quota)")
	cmd.MarkFlagRequired("name")
	return cmd
}

func (a *app) accountsListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List accounts, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withStore(cmd.Context(), func(db *store.DB) error {
				accs, err := db.ListAccounts(cmd.Context())
				if err != nil {
					return err
				}
				return a.print(nonNil(accs), func(w io.Writer) {
					tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tNAME\tPREMIUM\tQUOTA\tCREATED")
					for _, acc := range accs {
						fmt.Fprintf(tw, "%s\t%s\t%t\t%s\t%s\n", acc.ID, acc.Name, acc.Premium, optInt(acc.CreditQuota), acc.CreatedAt.Format(time.RFC3339))
					}
					tw.Flush()
				})
			})
		},
	}
}

func (a *app) accountsShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show an account",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withStore(cmd.Context(), func(db *store.DB) error {
				acc, err := db.Account(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				return a.print(acc, func(w io.Writer) { printAccount(w, acc) })
			})
		},
	}
}

func (a *app) accountsUpdateCmd() *cobra.Command {
	var name string
	var premium, clearQuota bool
	var quota int64
	cmd := &cobra.Command{
		Use:   "update ID",
		Short: "Change an account's name, premium subscription or credit quota",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withStore(cmd.Context(), func(db *store.DB) error {
				f := cmd.Flags()
				acc, err := db.UpdateAccount(cmd.Context(), args[0], func(acc *policy.Account) error {
					if f.Changed("name") {
						acc.Name = name
					}
					if f.Changed("premium") {
						acc.Premium = premium
					}
					if f.Changed("credit-quota") {
						acc.CreditQuota = &quota
					}
					if clearQuota {
						acc.CreditQuota = nil
					}
					return nil
				})
				if err != nil {
					return err
				}
				return a.print(acc, func(w io.Writer) { printAccount(w, acc) })
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "new name")
	f.BoolVar(&premium, "premium", false, "subscribe to premium data (--premium=false to stop)")
	f.Int64Var(&quota, "credit-quota", 0, "credits the account may spend per period")
	f.BoolVar(&clearQuota, "clear-credit-quota", false, "remove the credit quota")
	cmd.MarkFlagsMutuallyExclusive("credit-quota", "clear-credit-quota")
	return cmd
}

func printAccount(w io.Writer, acc *policy.Account) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "id\t%s\nname\t%s\npremium\t%t\ncredit quota\t%s\ncreated\t%s\n",
		acc.ID, acc.Name, acc.Premium, optInt(acc.CreditQuota), acc.CreatedAt.Format(time.RFC3339))
	tw.Flush()
}

func optInt(v *int64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprint(*v)
}

// nonNil makes an empty list print as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
