package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/tollgate/tollgate/internal/extauthz"
	"github.com/tollgate/tollgate/internal/heapfloor"
	"github.com/tollgate/tollgate/internal/manage"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/server"
	"github.com/tollgate/tollgate/internal/store"
)

// serveSettings are serve's flags, over a server.Config. They are bound to
// a fresh flag set every time the configuration is resolved, so a reload
// goes through exactly the same path as the start.
type serveSettings struct {
	cfg                                                     server.Config
	demo                                                    bool
	configFile                                              string
	configData                                              []byte         // the config file as it was read
	flags                                                   *pflag.FlagSet // as resolved
	creditPeriod                                            string
	keys                                                    encryptionKeys
	tokenSources, grantFree, logLevel, logFormat, denyLevel string
	responseProfile                                         string
	clientSANs                                              string
	heapFloorMiB                                            int
}

func newServeSettings() *serveSettings { return &serveSettings{cfg: server.DefaultConfig()} }

func (st *serveSettings) bind(f *pflag.FlagSet) {
	cfg := &st.cfg
	f.StringVar(&st.configFile, "config", "", "YAML file of settings (keys are flag names); re-read on SIGHUP and when it changes")
	f.StringVar(&cfg.Listen.GRPC, "grpc-addr", cfg.Listen.GRPC, "ext_authz gRPC listen address")
	f.StringVar(&cfg.Listen.HTTP, "http-addr", cfg.Listen.HTTP, "HTTP listen address for /healthz, /readyz, the Tokens API (/v1) and the console")
	f.StringVar(&cfg.Listen.AuthzHTTP, "authz-http-addr", "", "HTTP listen address for authorization subrequests from Envoy http_service, nginx auth_request, Caddy or Traefik forward auth (off when empty)")
	f.StringVar(&cfg.Listen.AuthzHTTPPrefix, "authz-http-prefix", cfg.Listen.AuthzHTTPPrefix, "path prefix Envoy's http_service puts before the original path on --authz-http-addr")
	f.StringVar(&cfg.Listen.Metrics, "metrics-addr", cfg.Listen.Metrics, "HTTP listen address for /metrics alone, apart from the Tokens API and console")
	f.StringVar(&cfg.Store.ListenURL, "listen-database-url", "", "direct Postgres URL for LISTEN when --database-url goes through a transaction pooler (default: --database-url)")
	f.IntVar(&cfg.Store.MaxConns, "db-max-conns", cfg.Store.MaxConns, "most open connections in the store's pool (plus one for LISTEN)")
	f.BoolVar(&cfg.Store.Migrate, "migrate", false, "migrate the database before serving")
	f.BoolVar(&st.demo, "demo", false, "seed a demo account with a publishable and a secret token, and print how to try them")
	f.IntVar(&cfg.Cache.Size, "cache-size", cfg.Cache.Size, "token policies cached (about 200 bytes each)")
	f.DurationVar(&cfg.Cache.TTL, "cache-ttl", cfg.Cache.TTL, "how long a cached policy is used before it is read again; changes evict at once, this bounds a lost notification")
	f.IntVar(&cfg.Cache.NegativeSize, "negative-cache-size", cfg.Cache.NegativeSize, "unknown tokens remembered")
	f.DurationVar(&cfg.Cache.NegativeTTL, "negative-cache-ttl", cfg.Cache.NegativeTTL, "how long an unknown token is remembered as unknown")
	f.DurationVar(&cfg.Cache.MaxStaleness, "max-staleness", cfg.Cache.MaxStaleness, "while the store is down, cached policies up to this old keep serving")
	f.DurationVar(&cfg.Cache.StoreTimeout, "store-timeout", cfg.Cache.StoreTimeout, "deadline of one store look-up (a cache miss); keep it below Envoy's check timeout")
	f.BoolVar(&cfg.MembershipFilter, "membership-filter", cfg.MembershipFilter, "keep a Bloom filter of every token key (about 1.8 bytes each) so that unknown tokens are refused without a query")
	f.IntVar(&cfg.Cache.FilterMissLookups, "filter-miss-lookups", cfg.Cache.FilterMissLookups, "tokens a second that the membership filter rules out and that are still looked up, in case they were created too recently for this replica to know; the rest are refused without a query")
	f.DurationVar(&cfg.Store.ResyncInterval, "resync-interval", cfg.Store.ResyncInterval, "how often the change log is read to catch up on missed notifications")
	f.StringVar(&st.creditPeriod, "credit-period", string(cfg.Credits.Period), "credits count per calendar month, week, day or hour (UTC)")
	f.StringVar(&cfg.Redis.URL, "redis-url", "", "Redis (redis://[user:password@]host:port[/db]) for fleet-wide rate limits; without it each replica enforces a share")
	f.DurationVar(&cfg.Redis.Timeout, "redis-timeout", cfg.Redis.Timeout, "deadline of one rate-limit call to Redis; past it (or while Redis is down) each replica enforces its share")
	f.Int64Var(&cfg.Credits.MaxBlock, "credit-block", cfg.Credits.MaxBlock, "most credits a replica reserves at once; blocks shrink near a limit (a replica killed outright loses at most one)")
	f.DurationVar(&cfg.Credits.FlushInterval, "usage-flush-interval", cfg.Credits.FlushInterval, "how often usage history and unlimited spending are written")
	f.StringVar(&cfg.ExtAuthz.CreditHeaders.Used, "header-credits-used", cfg.ExtAuthz.CreditHeaders.Used, "response header with the credits used this period")
	f.StringVar(&cfg.ExtAuthz.CreditHeaders.Cost, "header-credits-cost", cfg.ExtAuthz.CreditHeaders.Cost, "response header with the request's cost")
	f.StringVar(&cfg.ExtAuthz.CreditHeaders.Limit, "header-credits-limit", cfg.ExtAuthz.CreditHeaders.Limit, "response header with the credit limit that applies")
	f.StringVar(&cfg.ExtAuthz.CreditHeaders.Remaining, "header-credits-remaining", cfg.ExtAuthz.CreditHeaders.Remaining, "response header with the credits left")
	f.StringVar(&st.responseProfile, "response-profile", cfg.ExtAuthz.ResponseProfile.String(), "how denies and usage headers read: tollgate (JSON errors, x-credits-* headers) or iex (IEX Cloud's statuses, plain-text messages and iexcloud-*-used headers; see docs/responses.md)")
	f.DurationVar(&cfg.Signing.Skew, "signature-skew", cfg.Signing.Skew, "how far a signed request's x-tollgate-date may be from the server's clock, either way")
	f.BoolVar(&cfg.Signing.AllowUnsignedPayload, "allow-unsigned-payload", false, "accept signed requests whose x-tollgate-content-sha256 is UNSIGNED-PAYLOAD")
	f.IntVar(&cfg.Signing.Replay.Size, "replay-cache-size", cfg.Signing.Replay.Size, "signatures remembered per replica and generation (about one skew of traffic) to refuse replays; when full, signed requests are refused (signature_replay_unverifiable)")
	f.IntVar(&cfg.Signing.Replay.PerToken, "replay-per-token", cfg.Signing.Replay.PerToken, "of replay-cache-size, the most one token may take, so that no token's traffic can crowd out another's")
	st.keys.bind(f)
	f.DurationVar(&cfg.API.SessionTTL, "session-ttl", cfg.API.SessionTTL, "how long a console sign-in lasts")
	f.BoolVar(&cfg.API.InsecureCookies, "insecure-cookies", false, "send the console's session cookie without Secure (plain HTTP on a host other than localhost)")
	f.IntVar(&cfg.API.TrustedHops, "api-xff-trusted-hops", 0, "proxies in front of the Tokens API and console that append to X-Forwarded-For; 0 uses the TCP peer (IP restrictions and sign-in limits use this address)")
	f.IntVar(&cfg.API.SignIn.EmailFailures, "signin-email-failures", cfg.API.SignIn.EmailFailures, "failed console sign-ins per email within signin-email-window before it is refused (429), across all replicas")
	f.DurationVar(&cfg.API.SignIn.EmailWindow, "signin-email-window", cfg.API.SignIn.EmailWindow, "window of signin-email-failures")
	f.IntVar(&cfg.API.SignIn.IPFailures, "signin-ip-failures", cfg.API.SignIn.IPFailures, "failed console sign-ins per client address within signin-ip-window before it is refused (429), across all replicas")
	f.DurationVar(&cfg.API.SignIn.IPWindow, "signin-ip-window", cfg.API.SignIn.IPWindow, "window of signin-ip-failures")
	f.IntVar(&cfg.API.SignIn.Workers, "signin-workers", cfg.API.SignIn.Workers, "password hashes run at once per replica (default: one per two cores)")
	f.IntVar(&cfg.API.SignIn.Queue, "signin-queue", cfg.API.SignIn.Queue, "sign-ins that may wait for a hashing worker; more are answered 503 at once")
	f.StringVar(&st.tokenSources, "token-sources", "token,api_key,authorization,x-api-key", "where tokens are looked for, in order: token and api_key query parameters, Authorization: Bearer, X-API-Key")
	f.IntVar(&st.heapFloorMiB, "gc-heap-floor-mib", 32, "let the heap grow to this many MiB before the garbage collector runs, however small the live heap (memory for CPU: garbage up to it stays resident between collections; GOMEMLIMIT still applies); 0 leaves GOGC alone")
	f.IntVar(&cfg.ExtAuthz.StreamWorkers, "grpc-stream-workers", cfg.ExtAuthz.StreamWorkers, "goroutines kept to serve Check streams, so that each Check does not grow a new goroutine's stack; 0 starts a goroutine per stream (default: 16 per CPU)")
	f.IntVar(&cfg.ExtAuthz.TrustedHops, "xff-trusted-hops", 0, "proxies in front of Envoy that append to x-forwarded-for; 0 uses the TCP peer Envoy saw")
	f.StringVar(&cfg.RouteRules, "route-rules", "", "YAML file mapping method and path templates to api/dataset/tier/action/cost, for routes without context_extensions")
	f.BoolVar(&cfg.ExtAuthz.AllowUnmatchedRoutes, "allow-unmatched-routes", false, "let through, on the token alone, requests that neither context_extensions nor a route rule describe; this costs every limit on APIs, datasets, tiers and actions for such requests (default: deny them, route_unmatched)")
	f.StringVar(&st.grantFree, "grant-free-apis", strings.Join(cfg.Eval.GrantFreeAPIs, ","), "APIs that need no grant on a connection's sources")
	f.BoolVar(&cfg.ExtAuthz.StripCredentials, "strip-credentials", true, "remove the token (authorization, x-api-key, ?token, ?api_key) before the request reaches the upstream")
	f.BoolVar(&cfg.Eval.AllowSecretInBrowser, "allow-secret-in-browser", false, "let secret tokens through from browsers (requests with Origin, Referer or Sec-Fetch-Site)")
	f.BoolVar(&cfg.ExtAuthz.DryRun, "dry-run", false, "decide and log as usual, but allow every request (for rolling out in front of live traffic)")
	f.StringVar(&st.denyLevel, "deny-log-level", "info", "level of the log line written for each deny: debug, info, warn or error")
	f.StringVar(&st.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&st.logFormat, "log-format", "json", "json or text")
	f.BoolVar(&cfg.Listen.Reflection, "reflection", cfg.Listen.Reflection, "gRPC server reflection (for grpcurl)")
	f.DurationVar(&cfg.Shutdown.DrainDelay, "drain-delay", cfg.Shutdown.DrainDelay, "on SIGTERM, keep answering this long after reporting NOT_SERVING")
	f.DurationVar(&cfg.Shutdown.Timeout, "shutdown-timeout", cfg.Shutdown.Timeout, "on SIGTERM, wait this long for in-flight checks")
	f.StringVar(&cfg.TLS.CertFile, "tls-cert", "", "PEM certificate chain served on every listener (gRPC, HTTP, authz HTTP, metrics), reloaded when the file changes; unset: plaintext, for a sidecar on loopback")
	f.StringVar(&cfg.TLS.KeyFile, "tls-key", "", "PEM private key of --tls-cert")
	f.StringVar(&cfg.TLS.ClientCAFile, "authz-client-ca", "", "PEM bundle of CAs: the authorization listeners (--grpc-addr, --authz-http-addr) then require a client certificate signed by one of them (mTLS); reloaded when it changes")
	f.StringVar(&st.clientSANs, "authz-client-sans", "", "comma-separated SANs (DNS name, URI such as a SPIFFE ID, email or IP) of which a client certificate must name one exactly; empty: any certificate of --authz-client-ca")
	f.DurationVar(&cfg.TLS.ReloadInterval, "tls-reload-interval", cfg.TLS.ReloadInterval, "how often the TLS files are read for a rotated certificate")
	f.StringVar(&cfg.Tracing.OTLPEndpoint, "otlp-endpoint", "", "host:port of an OTLP/gRPC collector to send a span of every sampled Check to; unset: no tracing, at no cost")
	f.BoolVar(&cfg.Tracing.OTLPInsecure, "otlp-insecure", false, "send spans to --otlp-endpoint without TLS")
	f.Float64Var(&cfg.Tracing.SampleRatio, "trace-sample-ratio", cfg.Tracing.SampleRatio, "share of Checks traced among those whose headers carry no sampling decision; the others follow Envoy's (traceparent, B3)")
	bindLeaks(f, cfg)
	bindAnomaly(f, cfg)
	reloadable(f, "cache-size", "cache-ttl", "negative-cache-size", "negative-cache-ttl", "max-staleness", "store-timeout", "filter-miss-lookups")
}

// reloadable marks the settings server.Reconfigure applies to a running
// server (the cache's); any other that changes takes a restart.
func reloadable(f *pflag.FlagSet, names ...string) {
	for _, n := range names {
		f.Lookup(n).Usage += " [reloadable]"
		if err := f.SetAnnotation(n, annotReloadable, []string{"true"}); err != nil {
			panic(err) // a name above that bind does not define
		}
	}
}

const annotReloadable = "tollgate_reloadable"

// needRestart names, in order, the settings that differ between two
// resolutions and that only a restart applies.
func needRestart(was, now *pflag.FlagSet) []string {
	var names []string
	now.VisitAll(func(f *pflag.Flag) {
		if _, live := f.Annotations[annotReloadable]; live || f.Name == "config" {
			return
		}
		if old := was.Lookup(f.Name); old != nil && old.Value.String() != f.Value.String() {
			names = append(names, f.Name)
		}
	})
	return names
}

// finish turns the settings kept as text into the config.
func (st *serveSettings) finish(databaseURL string, getenv func(string) string) error {
	var err error
	if st.cfg.Signing.EncryptionKey, st.cfg.Signing.PreviousEncryptionKeys, err = st.keys.resolve(getenv); err != nil {
		return err
	}
	if st.cfg.ExtAuthz.TokenSources, err = extauthz.ParseTokenSources(st.tokenSources); err != nil {
		return fmt.Errorf("token-sources: %w", err)
	}
	if st.cfg.ExtAuthz.ResponseProfile, err = extauthz.ParseResponseProfile(st.responseProfile); err != nil {
		return err
	}
	if st.cfg.ExtAuthz.DenyLogLevel, err = parseLevel(st.denyLevel); err != nil {
		return fmt.Errorf("deny-log-level: %w", err)
	}
	st.cfg.Eval.GrantFreeAPIs = splitList(st.grantFree)
	st.cfg.TLS.ClientSANs = splitList(st.clientSANs)
	if st.cfg.Credits.Period, err = policy.ParsePeriod(st.creditPeriod); err != nil {
		return err
	}
	st.cfg.Store.URL = databaseURL
	if st.heapFloorMiB < 0 {
		return fmt.Errorf("gc-heap-floor-mib: %d is negative; 0 leaves the garbage collector's pacing alone", st.heapFloorMiB)
	}
	return st.cfg.Validate()
}

func (a *app) serveCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the ext_authz gRPC server and its health and metrics endpoints",
		Long: `Run the Envoy ext_authz v3 gRPC server (Authorization/Check), the HTTP
endpoints /healthz, /readyz, the Tokens API and the console (--http-addr), and
/metrics on a port of its own (--metrics-addr).

Settings come from, in rising order of precedence: defaults, the --config
file (YAML, keys are flag names), the environment (TOLLGATE_<FLAG>, upper
case with underscores: --cache-ttl is TOLLGATE_CACHE_TTL), and flags.
Settings marked [reloadable] take effect without a restart on SIGHUP or when
the config file changes; others are reported as needing a restart.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.serve(cmd)
		},
	}
	newServeSettings().bind(cmd.Flags())
	return cmd
}

// resolve builds the settings from defaults, the config file, the
// environment and the command line's flags, in that order.
func (a *app) resolve(cmdline *pflag.FlagSet) (*serveSettings, error) {
	st := newServeSettings()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	st.bind(fs)
	given := map[string]string{}
	cmdline.Visit(func(f *pflag.Flag) {
		// Flags of the root command (--database-url, -o) are read there.
		if fs.Lookup(f.Name) != nil {
			given[f.Name] = f.Value.String()
		}
	})
	path := given["config"]
	if path == "" {
		path = a.env.Getenv("TOLLGATE_CONFIG")
	}
	if path != "" {
		var err error
		if st.configData, err = applyConfigFile(fs, path); err != nil {
			return nil, err
		}
	}
	if err := envDefaults(fs, a.env.Getenv); err != nil {
		return nil, err
	}
	for name, v := range given {
		if err := fs.Set(name, v); err != nil {
			return nil, fmt.Errorf("--%s: %w", name, err)
		}
	}
	st.configFile, st.flags = path, fs
	if err := st.finish(a.databaseURL, a.env.Getenv); err != nil {
		return nil, err
	}
	return st, nil
}

func (a *app) serve(cmd *cobra.Command) error {
	ctx := cmd.Context()
	st, err := a.resolve(cmd.Flags())
	if err != nil {
		return err
	}
	log, err := newLogger(a.env.Stderr, st.logLevel, st.logFormat)
	if err != nil {
		return err
	}
	if st.demo {
		if err := a.seedDemo(ctx, st.cfg.Listen.GRPC, st.cfg.Listen.HTTP); err != nil {
			return err
		}
	}
	s, err := server.New(ctx, st.cfg, log)
	if err != nil {
		return err
	}
	defer heapfloor.Keep(int64(st.heapFloorMiB) << 20)()
	go a.reloadLoop(ctx, cmd.Flags(), st, s, log)
	return s.Run(ctx)
}

// reloadLoop re-resolves the settings on SIGHUP and whenever the config
// file's content changes (polled: Kubernetes swaps a mounted ConfigMap by
// renaming a symlink, which file watches miss), and applies them.
func (a *app) reloadLoop(ctx context.Context, cmdline *pflag.FlagSet, start *serveSettings, s *server.Server, log *slog.Logger) {
	path, last := start.configFile, start.configData
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		why := "SIGHUP"
		select {
		case <-ctx.Done():
			return
		case <-hup:
		case <-tick.C:
			if path == "" {
				continue
			}
			cur, err := os.ReadFile(path)
			if err != nil || bytes.Equal(cur, last) {
				continue
			}
			last, why = cur, "config file changed"
		}
		st, err := a.resolve(cmdline)
		if err != nil {
			log.Error("reload refused; the settings in effect stay", "why", why, "err", err)
			continue
		}
		last = st.configData
		if err := s.Reconfigure(st.cfg); err != nil {
			log.Error("reload refused; the settings in effect stay", "why", why, "err", err)
			continue
		}
		// Compared with the start, where the server read them, not with
		// the last reload, which applied none of them.
		restart := needRestart(start.flags, st.flags)
		c := s.Cache().Config()
		log.Info("reloaded", "why", why, "cache_size", c.Size, "cache_ttl", c.TTL, "negative_cache_size", c.NegativeSize,
			"negative_cache_ttl", c.NegativeTTL, "max_staleness", c.MaxStaleness, "store_timeout", c.StoreTimeout,
			"need_restart", restart)
	}
}

// applyConfigFile sets flags from a YAML file whose keys are flag names.
// It returns the file's content as read.
func applyConfigFile(fs *pflag.FlagSet, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	var kv map[string]any
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	if err := dec.Decode(&kv); err != nil {
		return nil, fmt.Errorf("config file %s: want a map of setting names to values: %w", path, err)
	}
	for k, v := range kv {
		if k == "config" || fs.Lookup(k) == nil {
			return nil, fmt.Errorf("config file %s: unknown setting %q", path, k)
		}
		if err := fs.Set(k, fmt.Sprint(v)); err != nil {
			return nil, fmt.Errorf("config file %s: %s: %w", path, k, err)
		}
	}
	return b, nil
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
func (a *app) seedDemo(ctx context.Context, grpcAddr, httpAddr string) error {
	db, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	return seedDemo(ctx, db, a.env.Stdout, grpcAddr, httpAddr)
}

func seedDemo(ctx context.Context, db *store.DB, w io.Writer, grpcAddr, httpAddr string) error {
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
	password := policy.NewID("pw")[3:]
	user, _, err := manage.New(db, manage.Config{}).CreateUser(ctx, policy.OperatorPrincipal(), manage.NewUser{
		AccountID: acc.ID, Email: "demo-" + strings.ToLower(acc.ID[4:12]) + "@tollgate.test", Role: policy.RoleAdmin, Password: password})
	if err != nil {
		return fmt.Errorf("seed demo user: %w", err)
	}
	// ":9191" listens everywhere; localhost reaches it.
	local := func(addr string) string {
		if strings.HasPrefix(addr, ":") {
			return "localhost" + addr
		}
		return addr
	}
	host := local(grpcAddr)
	fmt.Fprintf(w, `Demo account %s
  publishable token %s (core read, dataset "prices", domains localhost and *.example.com):
    %s
  secret token %s (full access; server side only):
    %s

Console (sign in at http://%s/console/):
  %s / %s

Try a Check as Envoy would send it:
  grpcurl -plaintext -d '{"attributes":{"request":{"http":{"method":"GET","path":"/v1/prices/AAPL?token=%s","headers":{"referer":"https://app.example.com/"}}},"contextExtensions":{"api":"data","dataset":"prices","tier":"core"}}}' %s envoy.service.auth.v3.Authorization/Check

`, acc.ID, pub.ID, pubValue, secret.ID, secretValue, local(httpAddr), user.Email, password, pubValue, host)
	return nil
}
