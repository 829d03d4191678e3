// Package server assembles a running Tollgate: the policy store, the cache
// and its change watcher, the ext_authz gRPC server, the HTTP endpoints
// (health, the Tokens API and the console) and, on a listener of its own,
// the metrics. The command line builds a Config and calls Run;
// end-to-end tests start the same Server on port 0.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/tollgate/tollgate/admin"
	"github.com/tollgate/tollgate/credits"
	"github.com/tollgate/tollgate/extauthz"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/redislimit"
	"github.com/tollgate/tollgate/seal"
	"github.com/tollgate/tollgate/store"
)

// Config is everything a server needs. Defaults come from DefaultConfig;
// the command line overrides them from the environment and flags.
type Config struct {
	GRPCAddr string
	HTTPAddr string
	// AuthzHTTPAddr, when set, serves HTTP authorization subrequests
	// (Envoy http_service under AuthzHTTPPrefix, nginx auth_request,
	// Caddy and Traefik forward auth) with the same decisions as Check.
	AuthzHTTPAddr   string
	AuthzHTTPPrefix string
	// MetricsAddr serves /metrics, apart from the Tokens API and the
	// console, so that scraping and what a NetworkPolicy opens for it
	// reach nothing else.
	MetricsAddr string
	// DatabaseURL is the policy store; "" means the embedded default.
	DatabaseURL string
	// ListenDatabaseURL is where the LISTEN connection goes, when the pool
	// goes through a transaction-pooling proxy; "" means DatabaseURL.
	ListenDatabaseURL string
	DBMaxConns        int
	// Migrate runs migrations at start. The embedded store always migrates.
	Migrate bool

	Cache policy.CacheConfig
	// MembershipFilter keeps a Bloom filter of every live token key, so
	// that an unknown token is refused without a store query.
	MembershipFilter bool
	// Credits tunes credit accounting and rate limits.
	Credits credits.Config
	// RedisURL, when set, makes rate limits (GCRA in Redis) and replay
	// protection fleet-wide; RedisTimeout bounds each call, past which a
	// Check falls back to this replica's share of the limit and its own
	// replay memory.
	RedisURL     string
	RedisTimeout time.Duration
	// ResyncInterval is how often the change log is read to catch up on
	// missed notifications.
	ResyncInterval time.Duration

	ExtAuthz extauthz.Config
	// EncryptionKey opens tokens' sealed signing secrets; without it,
	// tokens that require signed requests cannot be checked.
	EncryptionKey []byte
	// SignatureSkew is how far a signed request's time may be from ours.
	SignatureSkew time.Duration
	// AllowUnsignedPayload accepts signatures that leave the body out.
	AllowUnsignedPayload bool
	// ReplayCacheSize bounds the signatures remembered against replays,
	// per generation; ReplayPerToken bounds one token's share of them.
	ReplayCacheSize, ReplayPerToken int
	// SessionTTL is how long a console sign-in lasts.
	SessionTTL time.Duration
	// InsecureCookies serves the console's session cookie without Secure,
	// for plain HTTP on hosts other than localhost.
	InsecureCookies bool
	// APITrustedHops is how many proxies in front of the HTTP API append
	// to X-Forwarded-For; 0 takes the caller from the TCP peer.
	APITrustedHops int
	// SignIn bounds console sign-in (attempt limits, the hashing pool).
	SignIn admin.SignInConfig
	// RouteRules is the path of a route-rules file; "" for none.
	RouteRules           string
	AllowSecretInBrowser bool
	// Reflection turns on gRPC server reflection, so grpcurl works.
	Reflection bool
	// DrainDelay is how long the server keeps answering after it reports
	// NOT_SERVING, so that Envoy notices before connections close.
	DrainDelay      time.Duration
	ShutdownTimeout time.Duration
}

// DefaultConfig returns the defaults documented in the README.
func DefaultConfig() Config {
	return Config{
		GRPCAddr:        ":9191",
		HTTPAddr:        ":8181",
		MetricsAddr:     ":9090",
		AuthzHTTPPrefix: extauthz.DefaultHTTPPrefix,
		DBMaxConns:      10,
		Cache: policy.CacheConfig{
			Size:         500_000,
			TTL:          5 * time.Minute,
			NegativeSize: 100_000,
			NegativeTTL:  10 * time.Second,
			MaxStaleness: 15 * time.Minute,
			StoreTimeout: 2 * time.Second,
			// Enough for tokens used within moments of their creation,
			// before this replica heard of them; a flood of made-up ones
			// costs the store no more than that.
			FilterMissLookups: 20,
		},
		ResyncInterval:  30 * time.Second,
		Credits:         credits.DefaultConfig(),
		RedisTimeout:    credits.DefaultConfig().LimiterTimeout,
		SignatureSkew:   5 * time.Minute,
		SessionTTL:      12 * time.Hour,
		ReplayCacheSize: 1_000_000,
		ReplayPerToken:  250_000,
		SignIn:          admin.DefaultSignInConfig(),

		MembershipFilter: true,
		ExtAuthz: extauthz.Config{
			TokenSources:     extauthz.DefaultTokenSources(),
			StripCredentials: true,
			GrantFreeAPIs:    []string{policy.APILDS},
			DenyLogLevel:     slog.LevelInfo,
			CreditHeaders:    extauthz.DefaultCreditHeaders(),
		},
		Reflection:      true,
		DrainDelay:      0,
		ShutdownTimeout: 15 * time.Second,
	}
}

// Validate reports the first unusable setting, in words a person can act on.
func (c *Config) Validate() error {
	if err := c.Cache.Validate(); err != nil {
		return fmt.Errorf("invalid config: %w", err)
	}
	switch {
	case c.GRPCAddr == "":
		return errors.New("invalid config: grpc-addr must be set")
	case c.HTTPAddr == "":
		return errors.New("invalid config: http-addr must be set")
	case c.MetricsAddr == "":
		return errors.New("invalid config: metrics-addr must be set (metrics have a port of their own)")
	case c.ResyncInterval <= 0:
		return errors.New("invalid config: resync-interval must be > 0")
	case c.ExtAuthz.TrustedHops < 0:
		return errors.New("invalid config: xff-trusted-hops must be >= 0")
	case c.DBMaxConns < 1:
		return errors.New("invalid config: db-max-conns must be >= 1")
	case c.ShutdownTimeout <= 0:
		return errors.New("invalid config: shutdown-timeout must be > 0")
	case c.SignatureSkew <= 0:
		return errors.New("invalid config: signature-skew must be > 0")
	case c.RedisTimeout <= 0:
		return errors.New("invalid config: redis-timeout must be > 0")
	case c.APITrustedHops < 0:
		return errors.New("invalid config: api-xff-trusted-hops must be >= 0")
	}
	if c.AuthzHTTPAddr != "" {
		if err := extauthz.ValidateHTTPPrefix(c.AuthzHTTPPrefix); err != nil {
			return fmt.Errorf("invalid config: %w", err)
		}
	}
	if err := c.replay().Validate(); err != nil {
		return fmt.Errorf("invalid config: %w", err)
	}
	if err := c.SignIn.Validate(); err != nil {
		return fmt.Errorf("invalid config: %w", err)
	}
	return nil
}

func (c *Config) replay() policy.ReplayConfig {
	return policy.ReplayConfig{Size: c.ReplayCacheSize, PerToken: c.ReplayPerToken}
}

// Server is a running Tollgate.
type Server struct {
	cfg      Config
	log      *slog.Logger
	db       *store.DB
	cache    *policy.Cache
	watcher  *store.Watcher
	meter    *credits.Meter
	redis    *redislimit.Client // nil without --redis-url
	metrics  *metrics
	grpc     *grpc.Server
	health   *health.Server
	http     *http.Server
	metricsH *http.Server
	authzH   *http.Server // nil without --authz-http-addr
	grpcLis  net.Listener
	httpLis  net.Listener
	metricsL net.Listener
	authzL   net.Listener
	draining atomic.Bool
	mu       sync.Mutex // serialises Reconfigure
}

// New opens the store and binds the listeners; Run serves.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log}
	if err := s.openStore(ctx); err != nil {
		return nil, err
	}
	if err := s.build(); err != nil {
		s.db.Close()
		return nil, err
	}
	var err error
	if s.grpcLis, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("listen on grpc-addr %s: %w", cfg.GRPCAddr, err)
	}
	if s.httpLis, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		s.grpcLis.Close()
		s.db.Close()
		return nil, fmt.Errorf("listen on http-addr %s: %w", cfg.HTTPAddr, err)
	}
	if s.metricsL, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
		s.httpLis.Close()
		s.grpcLis.Close()
		s.db.Close()
		return nil, fmt.Errorf("listen on metrics-addr %s: %w", cfg.MetricsAddr, err)
	}
	if cfg.AuthzHTTPAddr != "" {
		if s.authzL, err = net.Listen("tcp", cfg.AuthzHTTPAddr); err != nil {
			s.metricsL.Close()
			s.httpLis.Close()
			s.grpcLis.Close()
			s.db.Close()
			return nil, fmt.Errorf("listen on authz-http-addr %s: %w", cfg.AuthzHTTPAddr, err)
		}
	}
	return s, nil
}

func (s *Server) openStore(ctx context.Context) error {
	db, err := store.OpenReady(ctx, s.cfg.DatabaseURL, store.Options{MaxConns: s.cfg.DBMaxConns}, s.cfg.Migrate)
	if err != nil {
		return err
	}
	s.db = db
	return nil
}

// build wires the cache, the watcher, the Check server and the endpoints.
func (s *Server) build() error {
	ea := s.cfg.ExtAuthz
	if s.cfg.RouteRules != "" {
		routes, err := extauthz.LoadRoutes(s.cfg.RouteRules)
		if err != nil {
			return err
		}
		ea.Routes = routes
	}
	m := newMetrics()
	var open policy.Opener
	var box *seal.Box
	if s.cfg.EncryptionKey != nil {
		var err error
		if box, err = seal.NewBox(s.cfg.EncryptionKey); err != nil {
			return fmt.Errorf("invalid config: encryption key: %w", err)
		}
		open = box.Open
	} else {
		s.log.Warn("no encryption key (TOLLGATE_ENCRYPTION_KEY): tokens that require signed requests cannot be checked")
	}
	replay, err := policy.NewReplayCache(s.cfg.replay(), time.Now)
	if err != nil {
		return fmt.Errorf("invalid config: %w", err)
	}
	s.cache, err = policy.NewCache(timedStore{BatchStore: s.db, m: m}, s.cfg.Cache, time.Now, open)
	if err != nil {
		return fmt.Errorf("invalid config: %w", err)
	}
	poll := s.cfg.ResyncInterval
	if s.db.Dialect() == store.SQLite {
		// No NOTIFY: the change log is the only path, and changes must
		// show within a second.
		poll = min(poll, 250*time.Millisecond)
	}
	listenURL := s.cfg.ListenDatabaseURL
	if listenURL == "" {
		listenURL = s.cfg.DatabaseURL
	}
	s.watcher = s.db.NewWatcher(s.cache, store.WatchConfig{ListenURL: listenURL, PollInterval: poll, QueryTimeout: s.cfg.Cache.StoreTimeout}, s.log)
	m.follow(s.cache, s.watcher, &s.cfg)
	s.metrics = m

	cc := s.cfg.Credits
	if s.cfg.RedisURL != "" {
		if s.redis, err = redislimit.Open(s.cfg.RedisURL, redislimit.DefaultPrefix); err != nil {
			return fmt.Errorf("invalid config: %w", err)
		}
		cc.Limiter, cc.LimiterTimeout = s.redis, s.cfg.RedisTimeout
	}
	if s.meter, err = credits.New(s.db, cc, time.Now, s.log); err != nil {
		return fmt.Errorf("invalid config: %w", err)
	}
	m.followMeter(s.meter)
	replayStore, err := s.replayStore(replay, cc.LimiterRetry, m)
	if err != nil {
		return fmt.Errorf("invalid config: %w", err)
	}
	eval := policy.EvalOptions{
		AllowSecretInBrowser: s.cfg.AllowSecretInBrowser,
		Signatures: policy.SignatureOptions{
			Skew: s.cfg.SignatureSkew, AllowUnsignedPayload: s.cfg.AllowUnsignedPayload, Replay: replayStore,
		},
	}
	decider := policy.NewDecider(s.cache, s.meter, time.Now, eval)
	// The codec turns a CheckRequest that is not valid UTF-8 into a deny
	// rather than a gRPC error.
	s.grpc = grpc.NewServer(extauthz.ServerOptions()...)
	check := extauthz.NewServer(decider, ea, s.log, m.observe)
	authv3.RegisterAuthorizationServer(s.grpc, check)
	if s.cfg.AuthzHTTPAddr != "" {
		authz, err := check.HTTPHandler(s.cfg.AuthzHTTPPrefix)
		if err != nil {
			return fmt.Errorf("invalid config: %w", err)
		}
		s.authzH = &http.Server{Handler: authz, ReadHeaderTimeout: 5 * time.Second}
	}
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	if s.cfg.Reflection {
		reflection.Register(s.grpc)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		// Readiness does not follow the database: with it down, cached
		// tokens still pass, and taking every replica out would turn a
		// partial outage into a total one.
		if s.draining.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	api := admin.New(s.db, admin.Config{SessionTTL: s.cfg.SessionTTL, InsecureCookies: s.cfg.InsecureCookies,
		Box: box, Period: s.cfg.Credits.Period, Eval: eval, TrustedHops: s.cfg.APITrustedHops, SignIn: s.cfg.SignIn}, s.log)
	mux.Handle("/v1/", api)
	mux.Handle("/console/", api)
	mux.Handle("GET /{$}", api)
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	metricsMux := http.NewServeMux()
	metricsMux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	s.metricsH = &http.Server{Handler: metricsMux, ReadHeaderTimeout: 5 * time.Second}
	return nil
}

// replayStore returns where signatures are remembered against replays:
// this replica's memory, and with Redis the fleet's in front of which it
// stands in, while Redis fails, as the rate limits' shares do.
func (s *Server) replayStore(local *policy.ReplayCache, retry time.Duration, m *metrics) (policy.ReplayStore, error) {
	if s.redis == nil {
		m.followReplay(func() uint64 { return 0 })
		return local, nil
	}
	fb, err := policy.NewReplayFallback(s.redis, local, policy.ReplayFallbackConfig{Timeout: s.cfg.RedisTimeout, Retry: retry},
		time.Now, func(err error) {
			if err != nil {
				s.log.Warn("replay protection: Redis failed; until it answers, a replay is refused only by the replica that saw the original",
					"retry_every", retry, "err", err)
				return
			}
			s.log.Info("replay protection: Redis answers again; replays are refused fleet-wide")
		})
	if err != nil {
		return nil, err
	}
	m.followReplay(fb.Fallbacks)
	return fb, nil
}

// GRPCAddr returns the address the gRPC server listens on.
func (s *Server) GRPCAddr() net.Addr { return s.grpcLis.Addr() }

// AuthzHTTPAddr returns the address the HTTP authorization endpoint
// listens on, or nil when it is off.
func (s *Server) AuthzHTTPAddr() net.Addr {
	if s.authzL == nil {
		return nil
	}
	return s.authzL.Addr()
}

// HTTPAddr returns the address the HTTP endpoints listen on.
func (s *Server) HTTPAddr() net.Addr { return s.httpLis.Addr() }

// MetricsAddr returns the address /metrics listens on.
func (s *Server) MetricsAddr() net.Addr { return s.metricsL.Addr() }

// Cache returns the policy cache, for tuning at run time.
func (s *Server) Cache() *policy.Cache { return s.cache }

// Reconfigure applies the settings that can change at run time (the
// cache's sizes and durations) and returns the names of those that differ
// but need a restart.
func (s *Server) Reconfigure(cfg Config) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.cache.Configure(cfg.Cache); err != nil {
		s.log.Error("reconfigure: cache settings refused", "err", err)
		return nil
	}
	var restart []string
	old := s.cfg
	old.Cache = cfg.Cache
	for name, changed := range map[string]bool{
		"grpc-addr": old.GRPCAddr != cfg.GRPCAddr, "http-addr": old.HTTPAddr != cfg.HTTPAddr,
		"metrics-addr": old.MetricsAddr != cfg.MetricsAddr, "authz-http-addr": old.AuthzHTTPAddr != cfg.AuthzHTTPAddr, "authz-http-prefix": old.AuthzHTTPPrefix != cfg.AuthzHTTPPrefix, "replay-cache-size": old.ReplayCacheSize != cfg.ReplayCacheSize, "replay-per-token": old.ReplayPerToken != cfg.ReplayPerToken,
		"database-url": old.DatabaseURL != cfg.DatabaseURL, "listen-database-url": old.ListenDatabaseURL != cfg.ListenDatabaseURL,
		"db-max-conns": old.DBMaxConns != cfg.DBMaxConns, "membership-filter": old.MembershipFilter != cfg.MembershipFilter, "resync-interval": old.ResyncInterval != cfg.ResyncInterval,
		"redis-url": old.RedisURL != cfg.RedisURL, "redis-timeout": old.RedisTimeout != cfg.RedisTimeout,
		"route-rules": old.RouteRules != cfg.RouteRules, "dry-run": old.ExtAuthz.DryRun != cfg.ExtAuthz.DryRun,
		"xff-trusted-hops":        old.ExtAuthz.TrustedHops != cfg.ExtAuthz.TrustedHops,
		"allow-unmatched-routes":  old.ExtAuthz.AllowUnmatchedRoutes != cfg.ExtAuthz.AllowUnmatchedRoutes,
		"strip-credentials":       old.ExtAuthz.StripCredentials != cfg.ExtAuthz.StripCredentials,
		"allow-secret-in-browser": old.AllowSecretInBrowser != cfg.AllowSecretInBrowser,
		"token-sources":           !slices.Equal(old.ExtAuthz.TokenSources, cfg.ExtAuthz.TokenSources),
		"grant-free-apis":         !slices.Equal(old.ExtAuthz.GrantFreeAPIs, cfg.ExtAuthz.GrantFreeAPIs),
	} {
		if changed {
			restart = append(restart, name)
		}
	}
	slices.Sort(restart)
	s.cfg.Cache = cfg.Cache
	s.metrics.showConfig(&s.cfg)
	return restart
}

// Run serves until ctx ends, then shuts down in order: health reports
// NOT_SERVING, in-flight Checks finish, the HTTP server stops, and the
// database closes last.
func (s *Server) Run(ctx context.Context) error {
	watchCtx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { s.watcher.Run(watchCtx) })
	if s.cfg.MembershipFilter {
		wg.Go(func() { s.keepFilter(watchCtx) })
	}
	// Policies cached before the watcher has applied the changes logged
	// just before this start would be evicted once more; wait for it a
	// moment, but never for a database that does not answer.
	select {
	case <-s.watcher.Started():
	case <-time.After(s.cfg.Cache.StoreTimeout):
	}
	// The meter outlives the gRPC server: it returns unspent credits and
	// writes the last usage once no Check can spend any more.
	meterCtx, stopMeter := context.WithCancel(context.WithoutCancel(ctx))
	var meterDone sync.WaitGroup
	meterDone.Go(func() { s.meter.Run(meterCtx) })

	errc := make(chan error, 4)
	go func() { errc <- s.grpc.Serve(s.grpcLis) }()
	type served struct {
		srv *http.Server
		lis net.Listener
	}
	listeners := []served{{s.http, s.httpLis}, {s.metricsH, s.metricsL}}
	if s.authzH != nil {
		listeners = append(listeners, served{s.authzH, s.authzL})
	}
	for _, h := range listeners {
		go func() {
			if err := h.srv.Serve(h.lis); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	s.log.Info("serving", "grpc", s.GRPCAddr().String(), "http", s.HTTPAddr().String(), "metrics", s.MetricsAddr().String(),
		"store", s.db.Dialect())

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("serve: %w", err)
	}
	s.log.Info("shutting down")
	s.draining.Store(true)
	s.health.Shutdown()
	time.Sleep(s.cfg.DrainDelay)

	stopped := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(s.cfg.ShutdownTimeout):
		s.log.Warn("in-flight checks did not finish in time; stopping")
		s.grpc.Stop()
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if s.authzH != nil {
		// HTTP authorization stops with Check, before the API.
		if aerr := s.authzH.Shutdown(shutCtx); aerr != nil && err == nil {
			err = fmt.Errorf("shut down authz http: %w", aerr)
		}
	}
	if herr := s.http.Shutdown(shutCtx); herr != nil && err == nil {
		err = fmt.Errorf("shut down http: %w", herr)
	}
	// Metrics stop last of the listeners, so that a final scrape still
	// sees the shutdown's decisions.
	if merr := s.metricsH.Shutdown(shutCtx); merr != nil && err == nil {
		err = fmt.Errorf("shut down metrics: %w", merr)
	}
	stopMeter()
	meterDone.Wait()
	if s.redis != nil {
		s.redis.Close()
	}
	stopWatch()
	wg.Wait()
	if cerr := s.db.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close store: %w", cerr)
	}
	return err
}
