package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tollgate/tollgate/extauthz"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/server"
	"github.com/tollgate/tollgate/store"
)

func (a *app) serveCmd() *cobra.Command {
	cfg := server.DefaultConfig()
	var demo bool
	var tokenSources, grantFree, logLevel, logFormat, denyLevel string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the ext_authz gRPC server and its health and metrics endpoints",
		Long: `Run the Envoy ext_authz v3 gRPC server (Authorization/Check) and the HTTP
endpoints /healthz, /readyz and /metrics.

Every flag can also be set through the environment as TOLLGATE_<FLAG>, upper
case with underscores (--cache-ttl is TOLLGATE_CACHE_TTL). Flags win.`,
		Args: cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			return envDefaults(cmd.Flags(), a.env.Getenv)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			log, err := newLogger(a.env.Stderr, logLevel, logFormat)
			if err != nil {
				return err
			}
			if cfg.ExtAuthz.TokenSources, err = extauthz.ParseTokenSources(tokenSources); err != nil {
				return fmt.Errorf("--token-sources: %w", err)
			}
			if cfg.ExtAuthz.DenyLogLevel, err = parseLevel(denyLevel); err != nil {
				return fmt.Errorf("--deny-log-level: %w", err)
			}
			cfg.ExtAuthz.GrantFreeAPIs = splitList(grantFree)
			cfg.DatabaseURL = a.databaseURL
			if demo {
				if err := a.seedDemo(ctx, cfg.GRPCAddr); err != nil {
					return err
				}
			}
			s, err := server.New(ctx, cfg, log)
			if err != nil {
				return err
			}
			return s.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.GRPCAddr, "grpc-addr", cfg.GRPCAddr, "ext_authz gRPC listen address")
	f.StringVar(&cfg.HTTPAddr, "http-addr", cfg.HTTPAddr, "HTTP listen address for /healthz, /readyz and /metrics")
	f.StringVar(&cfg.ListenDatabaseURL, "listen-database-url", "", "direct Postgres URL for LISTEN when --database-url goes through a transaction pooler (default: --database-url)")
	f.IntVar(&cfg.DBMaxConns, "db-max-conns", cfg.DBMaxConns, "most open connections in the store's pool (plus one for LISTEN)")
	f.BoolVar(&cfg.Migrate, "migrate", false, "migrate the database before serving")
	f.BoolVar(&demo, "demo", false, "seed a demo account with a publishable and a secret token, and print how to try them")
	f.IntVar(&cfg.Cache.Size, "cache-size", cfg.Cache.Size, "token policies cached (about 400 bytes each)")
	f.DurationVar(&cfg.Cache.TTL, "cache-ttl", cfg.Cache.TTL, "how long a cached policy is used before it is read again (changes evict at once; this bounds a lost notification)")
	f.IntVar(&cfg.Cache.NegativeSize, "negative-cache-size", cfg.Cache.NegativeSize, "unknown tokens remembered")
	f.DurationVar(&cfg.Cache.NegativeTTL, "negative-cache-ttl", cfg.Cache.NegativeTTL, "how long an unknown token is remembered as unknown")
	f.DurationVar(&cfg.Cache.MaxStaleness, "max-staleness", cfg.Cache.MaxStaleness, "while the store is down, cached policies up to this old keep serving")
	f.DurationVar(&cfg.Cache.StoreTimeout, "store-timeout", cfg.Cache.StoreTimeout, "deadline of one store look-up (a cache miss)")
	f.DurationVar(&cfg.ResyncInterval, "resync-interval", cfg.ResyncInterval, "how often the change log is read to catch up on missed notifications")
	f.StringVar(&tokenSources, "token-sources", "token,api_key,authorization,x-api-key", "where tokens are looked for, in order: token and api_key query parameters, Authorization: Bearer, X-API-Key")
	f.IntVar(&cfg.ExtAuthz.TrustedHops, "xff-trusted-hops", 0, "proxies in front of Envoy that append to x-forwarded-for; 0 uses the TCP peer Envoy saw")
	f.StringVar(&cfg.RouteRules, "route-rules", "", "YAML file mapping method and path templates to api/dataset/tier/action/cost, for routes without context_extensions")
	f.StringVar(&grantFree, "grant-free-apis", strings.Join(cfg.ExtAuthz.GrantFreeAPIs, ","), "APIs that need no grant on a connection's sources")
	f.BoolVar(&cfg.ExtAuthz.StripCredentials, "strip-credentials", true, "remove the token (authorization, x-api-key, ?token, ?api_key) before the request reaches the upstream")
	f.BoolVar(&cfg.AllowSecretInBrowser, "allow-secret-in-browser", false, "let secret tokens through from browsers (requests with Origin or Sec-Fetch-Site)")
	f.BoolVar(&cfg.ExtAuthz.DryRun, "dry-run", false, "decide and log as usual, but allow every request (for rolling out in front of live traffic)")
	f.StringVar(&denyLevel, "deny-log-level", "info", "level of the log line written for each deny: debug, info, warn or error")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&logFormat, "log-format", "json", "json or text")
	f.BoolVar(&cfg.Reflection, "reflection", cfg.Reflection, "gRPC server reflection (for grpcurl)")
	f.DurationVar(&cfg.DrainDelay, "drain-delay", cfg.DrainDelay, "on SIGTERM, keep answering this long after reporting NOT_SERVING")
	f.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "on SIGTERM, wait this long for in-flight checks")
	return cmd
}

// envDefaults sets every flag not given on the command line from its
// TOLLGATE_<FLAG> environment variable, if set.
func envDefaults(f *pflag.FlagSet, getenv func(string) string) error {
	var err error
	f.VisitAll(func(fl *pflag.Flag) {
		if err != nil || fl.Changed {
			return
		}
		name := "TOLLGATE_" + strings.ToUpper(strings.ReplaceAll(fl.Name, "-", "_"))
		if v := getenv(name); v != "" {
			if serr := f.Set(fl.Name, v); serr != nil {
				err = fmt.Errorf("%s=%q: %w", name, v, serr)
			}
		}
	})
	return err
}

func splitList(s string) []string {
	var out []string
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	return l, err
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	l, err := parseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be json or text, not %q", format)
}

// seedDemo creates a demo account and tokens and prints how to try them.
func (a *app) seedDemo(ctx context.Context, grpcAddr string) error {
	db, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	return seedDemo(ctx, db, a.env.Stdout, grpcAddr)
}

func seedDemo(ctx context.Context, db *store.DB, w io.Writer, grpcAddr string) error {
	acc := &policy.Account{Name: "Demo", Premium: true}
	secret, secretValue, err := db.CreateAccount(ctx, acc)
	if err != nil {
		return fmt.Errorf("seed demo account: %w", err)
	}
	pub := policy.NewToken(acc.ID, policy.Publishable)
	pub.Nickname = "demo-web"
	pub.Datasets = map[string]policy.Actions{"prices": policy.Actions(policy.Read)}
	pub.Domains = []string{"localhost", "*.example.com"}
	pubValue, err := db.CreateToken(ctx, pub)
	if err != nil {
		return fmt.Errorf("seed demo token: %w", err)
	}
	host := grpcAddr
	if strings.HasPrefix(host, ":") {
		host = "localhost" + host
	}
	fmt.Fprintf(w, `Demo account %s
  publishable token %s (core read, dataset "prices", domains localhost and *.example.com):
    %s
  secret token %s (full access; server side only):
    %s

Try a Check as Envoy would send it:
  grpcurl -plaintext -d '{"attributes":{"request":{"http":{"method":"GET","path":"/v1/prices/AAPL?token=%s","headers":{"referer":"https://app.example.com/"}}},"contextExtensions":{"api":"data","dataset":"prices","tier":"core"}}}' %s envoy.service.auth.v3.Authorization/Check

`, acc.ID, pub.ID, pubValue, secret.ID, secretValue, pubValue, host)
	return nil
}
