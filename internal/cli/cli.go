// Package cli is Tollgate's command line: one binary whose subcommands run
// the server, migrate the database and manage accounts and tokens.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/internal/store"
)

// Env is what the command line gets from the process: its streams, its
// environment and the build's version.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	Version        string
}

// Run parses args and runs the command they name.
func Run(ctx context.Context, args []string, env Env) error {
	root := newRoot(env)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if errors.Is(err, store.ErrSchemaBehind) {
		// Advice in the command line's terms, for every command that opens
		// the store.
		err = fmt.Errorf("%w (run 'tollgate migrate', or serve with --migrate)", err)
	}
	return err
}

// app holds the settings every command shares.
type app struct {
	env         Env
	databaseURL string
	output      string
}

func newRoot(env Env) *cobra.Command {
	a := &app{env: env}
	root := &cobra.Command{
		Use:           "tollgate",
		Short:         "Tollgate is an API-token gatekeeper for data APIs, behind Envoy's ext_authz.",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if a.output != "text" && a.output != "json" {
				return fmt.Errorf("--output must be text or json, not %q", a.output)
			}
			return nil
		},
	}
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&a.databaseURL, "database-url", env.Getenv("TOLLGATE_DATABASE_URL"),
		"policy database: postgres://… or sqlite:PATH (env TOLLGATE_DATABASE_URL; default "+store.DefaultURL+")")
	pf.StringVarP(&a.output, "output", "o", "text", "output format: text or json")
	root.AddCommand(
		&cobra.Command{
			Use:   "version",
			Short: "Print the version",
			Args:  cobra.NoArgs,
			RunE: func(*cobra.Command, []string) error {
				return a.print(map[string]string{"version": env.Version}, func(w io.Writer) {
					fmt.Fprintln(w, env.Version)
				})
			},
		},
		a.migrateCmd(),
		a.serveCmd(),
		a.accountsCmd(),
		a.tokensCmd(),
		a.resealCmd(),
		a.usersCmd(),
		a.usageCmd(),
		a.signCmd(),
	)
	return root
}

// openStore opens the configured database. The embedded store is migrated
// on open, so trying Tollgate takes no set-up; Postgres must be migrated
// with "tollgate migrate" (or "serve --migrate"), which an operator runs
// once per release.
func (a *app) openStore(ctx context.Context) (*store.DB, error) {
	return store.OpenReady(ctx, a.databaseURL, store.Options{}, false)
}

func (a *app) migrateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Bring the database schema up to date (re-running is a no-op)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := store.Open(cmd.Context(), a.databaseURL, store.Options{})
			if err != nil {
				return err
			}
			defer db.Close()
			applied, err := db.Migrate(cmd.Context())
			if err != nil {
				return err
			}
			cur, _, err := db.SchemaVersion(cmd.Context())
			if err != nil {
				return err
			}
			out := struct {
				Applied []int64 `json:"applied"`
				Version int64   `json:"version"`
			}{append([]int64{}, applied...), cur}
			return a.print(out, func(w io.Writer) {
				fmt.Fprintf(w, "schema at version %d (%d migrations applied)\n", cur, len(applied))
			})
		},
	}
}

// print writes v as indented JSON with -o json, or calls text otherwise.
func (a *app) print(v any, text func(w io.Writer)) error {
	if a.output == "json" {
		enc := json.NewEncoder(a.env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	text(a.env.Stdout)
	return nil
}

// withStore runs fn on the configured store and closes it afterwards.
func (a *app) withStore(ctx context.Context, fn func(*store.DB) error) error {
	db, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	return fn(db)
}
