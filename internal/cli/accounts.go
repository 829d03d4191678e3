package cli

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/store"
)

func (a *app) accountsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "accounts", Short: "Manage accounts (customer workspaces)"}
	cmd.AddCommand(a.accountsCreateCmd(), a.accountsListCmd(), a.accountsShowCmd(), a.accountsUpdateCmd())
	return cmd
}

func (a *app) accountsCreateCmd() *cobra.Command {
	var acc policy.Account
	var quota, rps, burst int64
	cmd := &cobra.Command{
		Use:   "create --name NAME",
		Short: "Create an account and its secret token (the token is printed once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("credit-quota") {
				acc.CreditQuota = &quota
			}
			rl, err := accountRateLimit(cmd.Flags(), rps, burst)
			if err != nil {
				return err
			}
			acc.RateLimit = rl
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
	f.Int64Var(&rps, "rate-limit", 0, "requests per second for all the account's tokens together (default: no limit)")
	f.Int64Var(&burst, "rate-burst", 0, "requests allowed at once under the account's rate limit (default: the rate limit)")
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
	var premium, clearQuota, clearRate bool
	var quota, rps, burst int64
	cmd := &cobra.Command{
		Use:   "update ID",
		Short: "Change an account's name, premium subscription, credit quota or rate limit",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f := cmd.Flags()
			rl, err := accountRateLimit(f, rps, burst)
			if err != nil {
				return err
			}
			return a.withStore(cmd.Context(), func(db *store.DB) error {
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
					if rl != nil || clearRate {
						acc.RateLimit = rl
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
	f.Int64Var(&rps, "rate-limit", 0, "requests per second for all the account's tokens together")
	f.Int64Var(&burst, "rate-burst", 0, "requests allowed at once under the account's rate limit (default: the rate limit)")
	f.BoolVar(&clearRate, "clear-rate-limit", false, "remove the account's rate limit")
	cmd.MarkFlagsMutuallyExclusive("credit-quota", "clear-credit-quota")
	cmd.MarkFlagsMutuallyExclusive("rate-limit", "clear-rate-limit")
	return cmd
}

func printAccount(w io.Writer, acc *policy.Account) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	rate := "-"
	if rl := acc.RateLimit; rl != nil {
		rate = fmt.Sprintf("%d/s, burst %d", rl.RPS, rl.Burst)
	}
	fmt.Fprintf(tw, "id\t%s\nname\t%s\npremium\t%t\ncredit quota\t%s\nrate limit\t%s\ncreated\t%s\n",
		acc.ID, acc.Name, acc.Premium, optInt(acc.CreditQuota), rate, acc.CreatedAt.Format(time.RFC3339))
	tw.Flush()
}

// accountRateLimit reads --rate-limit and --rate-burst; nil when neither
// was given.
func accountRateLimit(f *pflag.FlagSet, rps, burst int64) (*policy.RateLimit, error) {
	switch {
	case f.Changed("rate-burst") && !f.Changed("rate-limit"):
		return nil, fmt.Errorf("--rate-burst needs --rate-limit")
	case !f.Changed("rate-limit"):
		return nil, nil
	}
	return &policy.RateLimit{RPS: rps, Burst: burst}, nil
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
