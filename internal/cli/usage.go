package cli

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/internal/store"
)

func (a *app) usageCmd() *cobra.Command {
	var tokenID string
	var days int
	cmd := &cobra.Command{
		Use:   "usage --token ID",
		Short: "Show a token's usage per day: requests allowed, credits spent, denials by code",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if days < 1 {
				return fmt.Errorf("--days must be at least 1")
			}
			return a.withStore(cmd.Context(), func(db *store.DB) error {
				if _, err := db.Token(cmd.Context(), tokenID); err != nil {
					return err
				}
				now := time.Now().UTC()
				from := now.AddDate(0, 0, -(days - 1)).Format(time.DateOnly)
				rows, err := db.Usage(cmd.Context(), tokenID, from, now.Format(time.DateOnly))
				if err != nil {
					return err
				}
				return a.print(nonNil(rows), func(w io.Writer) {
					tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "DAY\tREQUESTS\tCREDITS\tDENIALS")
					for _, r := range rows {
						var ds []string
						for _, code := range slices.Sorted(maps.Keys(r.Denials)) {
							ds = append(ds, fmt.Sprintf("%s=%d", code, r.Denials[code]))
						}
						fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", r.Day, r.Requests, r.Credits, list(ds))
					}
					tw.Flush()
				})
			})
		},
	}
	cmd.Flags().StringVar(&tokenID, "token", "", "the token's id (required)")
	cmd.Flags().IntVar(&days, "days", 30, "how many days back, today included")
	cmd.MarkFlagRequired("token")
	return cmd
}
