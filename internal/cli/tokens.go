package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tollgate/tollgate/internal/manage"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/store"
)

func (a *app) tokensCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tokens", Short: "Manage API tokens"}
	cmd.AddCommand(
		a.tokensCreateCmd(), a.tokensListCmd(), a.tokensShowCmd(), a.tokensUpdateCmd(),
		a.tokensSetEnabledCmd("enable", true), a.tokensSetEnabledCmd("disable", false),
		a.tokensDeleteCmd(), a.tokensRollCmd(), a.tokensRollSigningSecretCmd(),
	)
	return cmd
}

// createdToken is a token as printed when it is made: the only time its
// value (and signing secret, if any) is shown.
type createdToken struct {
	*policy.Token
	Value         string `json:"token"`
	SigningSecret string `json:"signing_secret,omitempty"`
}

// changedToken is a token as printed after a change; a signing secret made
// by the change is shown this once.
type changedToken struct {
	*policy.Token
	SigningSecret string `json:"signing_secret,omitempty"`
}

// withTokens runs fn on the token service over the configured store, as
// the operator. Signing secrets and kept values are sealed under
// TOLLGATE_ENCRYPTION_KEY (or TOLLGATE_ENCRYPTION_KEY_FILE), which must be
// the server's key, and opened with it or TOLLGATE_PREVIOUS_ENCRYPTION_KEYS
// (or TOLLGATE_PREVIOUS_ENCRYPTION_KEYS_FILE).
func (a *app) withTokens(ctx context.Context, fn func(*manage.Service) error) error {
	box, err := encryptionKeys{}.box(a.env.Getenv)
	if err != nil {
		return err
	}
	err = a.withStore(ctx, func(db *store.DB) error { return fn(manage.New(db, manage.Config{Box: box})) })
	switch {
	case errors.Is(err, manage.ErrNoKey):
		return fmt.Errorf("%w: set TOLLGATE_ENCRYPTION_KEY (32 bytes, base64) to the server's key", err)
	case errors.Is(err, manage.ErrNotSigned):
		return fmt.Errorf("%w: switch them on with tokens update --signed", err)
	}
	return err
}

func printSigningSecret(w io.Writer, secret string) {
	if secret != "" {
		fmt.Fprintf(w, "\nsigning secret: %s\nKeep it safe: it is shown only this once.\n", secret)
	}
}

func (a *app) tokensCreateCmd() *cobra.Command {
	var tf tokenFlags
	var accountID, kind string
	cmd := &cobra.Command{
		Use:   "create --account ID",
		Short: "Create a token (its value is printed once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := policy.ParseKind(kind)
			if err != nil {
				return err
			}
			patch, err := tf.patch(cmd.Flags(), time.Now())
			if err != nil {
				return err
			}
			return a.withTokens(cmd.Context(), func(svc *manage.Service) error {
				made, err := svc.CreateToken(cmd.Context(), policy.OperatorPrincipal(), accountID, k, patch)
				if err != nil {
					return err
				}
				return a.print(createdToken{made.Token, made.Value, made.SigningSecret}, func(w io.Writer) {
					printToken(w, made.Token)
					fmt.Fprintf(w, "\ntoken: %s\nKeep it safe: it is shown only this once.\n", made.Value)
					printSigningSecret(w, made.SigningSecret)
				})
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&accountID, "account", "", "the account the token belongs to (required)")
	f.StringVar(&kind, "kind", "publishable", "publishable or secret")
	f.StringVar(&tf.user, "user", "", "the user who owns the token")
	tf.register(cmd)
	cmd.MarkFlagRequired("account")
	return cmd
}

func (a *app) tokensListCmd() *cobra.Command {
	var accountID, after string
	var limit int
	cmd := &cobra.Command{
		Use:   "list --account ID",
		Short: "List an account's tokens, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withTokens(cmd.Context(), func(svc *manage.Service) error {
				toks, err := svc.ListTokens(cmd.Context(), policy.OperatorPrincipal(), manage.TokenFilter{AccountID: accountID, After: after, Limit: limit})
				if err != nil {
					return err
				}
				return a.print(nonNil(toks), func(w io.Writer) {
					tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tNICKNAME\tKIND\tPREFIX\tENABLED\tCREATED\tLAST USED")
					for _, t := range toks {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s…\t%t\t%s\t%s\n", t.ID, t.Nickname, t.Kind, t.Prefix, t.Enabled,
							t.CreatedAt.Format(time.RFC3339), optTime(t.LastUsedAt))
					}
					tw.Flush()
				})
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&accountID, "account", "", "the account whose tokens to list (required)")
	f.StringVar(&after, "after", "", "start after this token id (for paging)")
	f.IntVar(&limit, "limit", 0, "list at most this many (default: all)")
	cmd.MarkFlagRequired("account")
	return cmd
}

func (a *app) tokensShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show a token's permissions and restrictions",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withTokens(cmd.Context(), func(svc *manage.Service) error {
				t, err := svc.Token(cmd.Context(), policy.OperatorPrincipal(), args[0])
				if err != nil {
					return err
				}
				return a.print(t, func(w io.Writer) { printToken(w, t) })
			})
		},
	}
}

func (a *app) tokensUpdateCmd() *cobra.Command {
	var tf tokenFlags
	cmd := &cobra.Command{
		Use:   "update ID",
		Short: "Change a token's permissions or restrictions (a repeated flag replaces that list)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			patch, err := tf.patch(cmd.Flags(), time.Now())
			if err != nil {
				return err
			}
			return a.changeToken(cmd, func(ctx context.Context, svc *manage.Service) (manage.Issued, error) {
				return svc.UpdateToken(ctx, policy.OperatorPrincipal(), args[0], patch)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&tf.user, "user", "", "the user who owns the token (\"\" for none)")
	tf.register(cmd)
	return cmd
}

func (a *app) tokensSetEnabledCmd(name string, enabled bool) *cobra.Command {
	return &cobra.Command{
		Use:   name + " ID",
		Short: strings.ToUpper(name[:1]) + name[1:] + " a token (takes effect on every replica within a second)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.changeToken(cmd, func(ctx context.Context, svc *manage.Service) (manage.Issued, error) {
				return svc.SetEnabled(ctx, policy.OperatorPrincipal(), args[0], enabled)
			})
		},
	}
}

// changeToken runs a change through the token service and prints the
// token, with a signing secret the change made (shown this once).
func (a *app) changeToken(cmd *cobra.Command, change func(context.Context, *manage.Service) (manage.Issued, error)) error {
	return a.withTokens(cmd.Context(), func(svc *manage.Service) error {
		changed, err := change(cmd.Context(), svc)
		if err != nil {
			return err
		}
		return a.print(changedToken{changed.Token, changed.SigningSecret}, func(w io.Writer) {
			printToken(w, changed.Token)
			printSigningSecret(w, changed.SigningSecret)
		})
	})
}

func (a *app) tokensRollCmd() *cobra.Command {
	var grace time.Duration
	cmd := &cobra.Command{
		Use:   "roll ID",
		Short: "Give a token a new value (printed once); the old one works for --grace",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withTokens(cmd.Context(), func(svc *manage.Service) error {
				rolled, err := svc.RollToken(cmd.Context(), policy.OperatorPrincipal(), args[0], grace)
				if err != nil {
					return err
				}
				return a.print(createdToken{Token: rolled.Token, Value: rolled.Value}, func(w io.Writer) {
					printToken(w, rolled.Token)
					fmt.Fprintf(w, "\ntoken: %s\nKeep it safe: it is shown only this once.\n", rolled.Value)
				})
			})
		},
	}
	cmd.Flags().DurationVar(&grace, "grace", 0, "how long the old value keeps working (e.g. 24h; at most 720h)")
	return cmd
}

func (a *app) tokensRollSigningSecretCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "roll-signing-secret ID",
		Short: "Replace a token's signing secret (the new one is printed once; the old one stops working)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.changeToken(cmd, func(ctx context.Context, svc *manage.Service) (manage.Issued, error) {
				return svc.RollSigningSecret(ctx, policy.OperatorPrincipal(), args[0])
			})
		},
	}
}

func (a *app) tokensDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a token for good",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withTokens(cmd.Context(), func(svc *manage.Service) error {
				if err := svc.DeleteToken(cmd.Context(), policy.OperatorPrincipal(), args[0]); err != nil {
					return err
				}
				return a.print(map[string]any{"id": args[0], "deleted": true}, func(w io.Writer) {
					fmt.Fprintf(w, "token %s deleted\n", args[0])
				})
			})
		},
	}
}

// tokenFlags are the permission and restriction flags shared by create and
// update. Only flags given on the command line change anything; a repeated
// list flag replaces the whole list.
type tokenFlags struct {
	user                                  string
	nickname                              string
	core, noCore, premium, noPremium      bool
	signed, noSigned                      bool
	datasets, apis, grants, domains, ips  []string
	clearDatasets, clearAPIs, clearGrants bool
	clearDomains, clearIPs                bool
	creditLimit, rateLimit, rateBurst     int64
	clearCreditLimit, clearRateLimit      bool
	expiresAt                             string
	expiresIn                             time.Duration
	clearExpiry                           bool
}

func (tf *tokenFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&tf.nickname, "nickname", "", "a name to recognise the token by (default tk_<id>)")
	f.BoolVar(&tf.core, "core", false, "allow reading core data (on by default for new publishable tokens)")
	f.BoolVar(&tf.noCore, "no-core", false, "do not allow reading core data")
	f.BoolVar(&tf.premium, "premium", false, "allow premium data (effective only if the account subscribes)")
	f.BoolVar(&tf.noPremium, "no-premium", false, "do not allow premium data")
	f.StringArrayVar(&tf.datasets, "dataset", nil, "NAME=read,write,delete (repeatable; NAME may use * wildcards, e.g. sales.*)")
	f.BoolVar(&tf.clearDatasets, "clear-datasets", false, "remove every dataset permission")
	f.StringArrayVar(&tf.apis, "api", nil, "an API the token may call: data, maps, sql, lds or import (repeatable; import only alone)")
	f.BoolVar(&tf.clearAPIs, "clear-apis", false, "allow every API except import again")
	f.StringArrayVar(&tf.grants, "grant", nil, "CONNECTION:table:NAME, CONNECTION:query:SQL or CONNECTION:all (repeatable)")
	f.BoolVar(&tf.clearGrants, "clear-grants", false, "remove every grant")
	f.StringArrayVar(&tf.domains, "domain", nil, "allowed Referer/Origin: host, host/path, scheme://host, *.host or an IP (repeatable; none = any)")
	f.BoolVar(&tf.clearDomains, "clear-domains", false, "allow any domain again")
	f.StringArrayVar(&tf.ips, "ip", nil, "allowed caller range, CIDR (repeatable; none = any)")
	f.BoolVar(&tf.clearIPs, "clear-ips", false, "allow any IP again")
	f.BoolVar(&tf.signed, "signed", false, "require signed requests")
	f.BoolVar(&tf.noSigned, "no-signed", false, "stop requiring signed requests")
	f.Int64Var(&tf.creditLimit, "credit-limit", 0, "credits the token may spend per period")
	f.BoolVar(&tf.clearCreditLimit, "clear-credit-limit", false, "remove the credit limit")
	f.Int64Var(&tf.rateLimit, "rate-limit", 0, "requests per second")
	f.Int64Var(&tf.rateBurst, "rate-burst", 0, "requests allowed at once (default: the rate limit)")
	f.BoolVar(&tf.clearRateLimit, "clear-rate-limit", false, "remove the rate limit")
	f.StringVar(&tf.expiresAt, "expires-at", "", "expiry time, RFC 3339 (e.g. 2027-01-31T00:00:00Z)")
	f.DurationVar(&tf.expiresIn, "expires-in", 0, "expire after this long (e.g. 720h)")
	f.BoolVar(&tf.clearExpiry, "clear-expiry", false, "never expire")
	for _, pair := range [][2]string{
		{"core", "no-core"}, {"premium", "no-premium"}, {"signed", "no-signed"},
		{"dataset", "clear-datasets"}, {"api", "clear-apis"}, {"grant", "clear-grants"},
		{"domain", "clear-domains"}, {"ip", "clear-ips"}, {"credit-limit", "clear-credit-limit"},
		{"rate-limit", "clear-rate-limit"}, {"expires-at", "expires-in"}, {"expires-at", "clear-expiry"},
		{"expires-in", "clear-expiry"},
	} {
		cmd.MarkFlagsMutuallyExclusive(pair[0], pair[1])
	}
}

// patch turns the flags that were given into a TokenPatch.
func (tf *tokenFlags) patch(f *pflag.FlagSet, now time.Time) (*policy.TokenPatch, error) {
	var p policy.TokenPatch
	given := f.Changed
	if given("user") {
		p.UserID = &tf.user
	}
	if given("nickname") {
		p.Nickname = &tf.nickname
	}
	if b, ok := boolPair(given, "core", "no-core", tf.core, tf.noCore); ok {
		p.Core = &b
	}
	if b, ok := boolPair(given, "premium", "no-premium", tf.premium, tf.noPremium); ok {
		p.Premium = &b
	}
	if b, ok := boolPair(given, "signed", "no-signed", tf.signed, tf.noSigned); ok {
		p.Signed = &b
	}
	if given("dataset") || tf.clearDatasets {
		ds := map[string]policy.Actions{}
		for _, d := range tf.datasets {
			name, acts, found := strings.Cut(d, "=")
			if !found {
				acts = "read"
			}
			set, err := policy.ParseActions(acts)
			if err != nil {
				return nil, fmt.Errorf("--dataset %s: %w", d, err)
			}
			ds[name] |= set
		}
		p.Datasets = &ds
	}
	listFlag(&p.APIs, tf.apis, given("api") || tf.clearAPIs)
	listFlag(&p.Domains, tf.domains, given("domain") || tf.clearDomains)
	listFlag(&p.IPs, tf.ips, given("ip") || tf.clearIPs)
	if given("grant") || tf.clearGrants {
		gs := make([]policy.Grant, 0, len(tf.grants))
		for _, s := range tf.grants {
			g, err := policy.ParseGrant(s)
			if err != nil {
				return nil, fmt.Errorf("--grant: %w", err)
			}
			gs = append(gs, g)
		}
		p.Grants = &gs
	}
	if given("credit-limit") || tf.clearCreditLimit {
		var v *int64
		if !tf.clearCreditLimit {
			v = &tf.creditLimit
		}
		p.CreditLimit = &v
	}
	if given("rate-limit") || tf.clearRateLimit || given("rate-burst") {
		if given("rate-burst") && !given("rate-limit") {
			return nil, fmt.Errorf("--rate-burst needs --rate-limit")
		}
		var v *policy.RateLimit
		if !tf.clearRateLimit {
			v = &policy.RateLimit{RPS: tf.rateLimit, Burst: tf.rateBurst}
		}
		p.RateLimit = &v
	}
	switch {
	case given("expires-at"):
		t, err := time.Parse(time.RFC3339, tf.expiresAt)
		if err != nil {
			return nil, fmt.Errorf("--expires-at: want RFC 3339 such as 2027-01-31T00:00:00Z: %w", err)
		}
		tp := &t
		p.ExpiresAt = &tp
	case given("expires-in"):
		if tf.expiresIn <= 0 {
			return nil, fmt.Errorf("--expires-in must be positive")
		}
		t := now.Add(tf.expiresIn)
		tp := &t
		p.ExpiresAt = &tp
	case tf.clearExpiry:
		var tp *time.Time
		p.ExpiresAt = &tp
	}
	return &p, nil
}

// boolPair reads a --x/--no-x pair: ok is false when neither was given.
func boolPair(given func(string) bool, on, off string, onV, offV bool) (v, ok bool) {
	switch {
	case given(on):
		return onV, true
	case given(off):
		return !offV, true
	}
	return false, false
}

func listFlag(dst **[]string, vals []string, set bool) {
	if set {
		v := slices.Clone(vals)
		if v == nil {
			v = []string{}
		}
		*dst = &v
	}
}

func printToken(w io.Writer, t *policy.Token) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("id", t.ID)
	row("account", t.AccountID)
	if t.UserID != "" {
		row("user", t.UserID)
	}
	row("kind", t.Kind.String())
	row("nickname", t.Nickname)
	row("prefix", t.Prefix+"…")
	row("enabled", fmt.Sprint(t.Enabled))
	row("expires", optTime(t.ExpiresAt))
	row("core", fmt.Sprint(t.Core))
	row("premium", fmt.Sprint(t.Premium))
	var ds []string
	for _, name := range slices.Sorted(maps.Keys(t.Datasets)) {
		ds = append(ds, name+"="+strings.Join(t.Datasets[name].Names(), ","))
	}
	row("datasets", list(ds))
	row("allowed apis", list(t.APIs))
	var gs []string
	for _, g := range t.Grants {
		gs = append(gs, g.String())
	}
	row("grants", list(gs))
	row("allowed domains", list(t.Domains))
	row("allowed ips", list(t.IPs))
	row("signed requests", fmt.Sprint(t.Signed))
	row("credit limit", optInt(t.CreditLimit))
	rl := "-"
	if t.RateLimit != nil {
		rl = fmt.Sprintf("%d/s, burst %d", t.RateLimit.RPS, t.RateLimit.Burst)
	}
	row("rate limit", rl)
	row("created", t.CreatedAt.Format(time.RFC3339))
	row("last used", optTime(t.LastUsedAt))
	tw.Flush()
}

func list(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, " ")
}

func optTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}
