package cli

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/manage"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store"
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
			password, generated := "", false
			if fromStdin {
				line, err := bufio.NewReader(os.Stdin).ReadString('\n')
				if err != nil && err != io.EOF {
					return fmt.Errorf("read the password: %w", err)
				}
				password = strings.TrimRight(line, "\r\n")
			} else {
				b := make([]byte, 15)
				rand.Read(b) // never returns an error (crypto/rand's contract)
				password, generated = base64.RawURLEncoding.EncodeToString(b), true
			}
			hash, err := manage.HashPassword(password)
			if err != nil {
				return err
			}
			return a.withStore(cmd.Context(), func(db *store.DB) error {
				u := &policy.User{AccountID: accountID, Email: email, Role: policy.Role(role), PasswordHash: hash}
				if err := db.CreateUser(cmd.Context(), u); err != nil {
					return err
				}
				out := struct {
					*policy.User
					Password string `json:"password,omitempty"`
				}{u, map[bool]string{true: password}[generated]}
				return a.print(out, func(w io.Writer) {
					fmt.Fprintf(w, "user %s (%s, %s) created\n", u.ID, u.Email, u.Role)
					if generated {
						fmt.Fprintf(w, "password: %s\nIt is shown only this once.\n", password)
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
				users, err := db.ListUsers(cmd.Context(), accountID)
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
