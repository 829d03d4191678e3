package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/internal/manage"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/store"
)

func (a *app) usersCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "users", Short: "Manage the teammates who sign in to the console"}
	cmd.AddCommand(a.usersCreateCmd(), a.usersListCmd())
	return cmd
}

func (a *app) usersCreateCmd() *cobra.Command {
	var accountID, email, role string
	var fromStdin bool
	cmd := &cobra.Command{
		Use:   "create --account ID --email E",
		Short: "Add a user; without --password-stdin a password is made and printed once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			password := ""
			if fromStdin {
				line, err := bufio.NewReader(os.Stdin).ReadString('\n')
				if err != nil && err != io.EOF {
					return fmt.Errorf("read the password: %w", err)
				}
				password = strings.TrimRight(line, "\r\n")
			}
			return a.withStore(cmd.Context(), func(db *store.DB) error {
				u, generated, err := manage.New(db, manage.Config{}).CreateUser(cmd.Context(), policy.OperatorPrincipal(),
					manage.NewUser{AccountID: accountID, Email: email, Role: policy.Role(role), Password: password, MakePassword: !fromStdin})
				if err != nil {
					return err
				}
				out := struct {
					*policy.User
					Password string `json:"password,omitempty"`
				}{u, generated}
				return a.print(out, func(w io.Writer) {
					fmt.Fprintf(w, "user %s (%s, %s) created\n", u.ID, u.Email, u.Role)
					if generated != "" {
						fmt.Fprintf(w, "password: %s\nIt is shown only this once.\n", generated)
					}
				})
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&accountID, "account", "", "the account (required)")
	f.StringVar(&email, "email", "", "the user's email (required)")
	f.StringVar(&role, "role", "member", "admin or member")
	f.BoolVar(&fromStdin, "password-stdin", false, "read the password from the first line of standard input")
	cmd.MarkFlagRequired("account")
	cmd.MarkFlagRequired("email")
	return cmd
}

func (a *app) usersListCmd() *cobra.Command {
	var accountID string
	cmd := &cobra.Command{
		Use:   "list --account ID",
		Short: "List an account's users",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withStore(cmd.Context(), func(db *store.DB) error {
				users, err := manage.New(db, manage.Config{}).ListUsers(cmd.Context(), policy.OperatorPrincipal(), accountID)
				if err != nil {
					return err
				}
				return a.print(nonNil(users), func(w io.Writer) {
					tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tEMAIL\tROLE\tCREATED")
					for _, u := range users {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.ID, u.Email, u.Role, u.CreatedAt.Format(time.RFC3339))
					}
					tw.Flush()
				})
			})
		},
	}
	cmd.Flags().StringVar(&accountID, "account", "", "the account (required)")
	cmd.MarkFlagRequired("account")
	return cmd
}
