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
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/tollgate/tollgate/internal/admin"
	"github.com/tollgate/tollgate/internal/anomaly"
	"github.com/tollgate/tollgate/internal/certs"
	"github.com/tollgate/tollgate/internal/credits"
	"github.com/tollgate/tollgate/internal/extauthz"
	"github.com/tollgate/tollgate/internal/manage"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/redislimit"
	"github.com/tollgate/tollgate/internal/seal"
	"github.com/tollgate/tollgate/internal/store"
)

// Server is a running Tollgate.
type Server struct {
	cfg      Config
	log      *slog.Logger
	db       *store.DB
	cache    *policy.Cache
	watcher  *store.Watcher
	meter    *credits.Meter
	redis    *redislimit.Client // nil without Redis
	metrics  *metrics
	grpc     *grpc.Server
	health   *health.Server
	http     *http.Server
	metricsH *http.Server
	authzH   *http.Server // nil without the HTTP authorization listener
	grpcLis  net.Listener
	httpLis  net.Listener
	metricsL net.Listener
	authzL   net.Listener
	recorder *anomaly.Recorder // nil with anomaly flags off
	detector *anomaly.Detector
	certs    *certs.Reloader // nil without TLS
	traces   *tracing        // nil without an OTLP endpoint
	draining atomic.Bool
	mu       sync.Mutex // serialises Reconfigure
}

// New opens the store and binds the listeners; Run serves.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log}
	if cfg.TLS.CertFile != "" {
		// Fail closed: a listener configured for TLS never serves
		// plaintext for want of a readable certificate.
		var err error
		files := certs.Files{Cert: cfg.TLS.CertFile, Key: cfg.TLS.KeyFile, ClientCA: cfg.TLS.ClientCAFile}
		if s.certs, err = certs.New(files, cfg.TLS.ReloadInterval, log); err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
	}
	traces, err := newTracing(ctx, cfg.Tracing)
	if err != nil {
		return nil, err
	}
	s.traces = traces
	if err := s.openStore(ctx); err != nil {
		s.traces.shutdown(ctx)
		return nil, err
	}
	if err := s.build(); err != nil {
		s.traces.shutdown(ctx)
		s.db.Close()
		return nil, err
	}
	if err := s.listen(); err != nil {
		s.traces.shutdown(ctx)
		s.db.Close()
		return nil, err
	}
	return s, nil
}

// listen binds every listener, or none.
func (s *Server) listen() error {
	cfg := &s.cfg
	var err error
	if s.grpcLis, err = net.Listen("tcp", cfg.Listen.GRPC); err != nil {
		return fmt.Errorf("listen on the gRPC address %s: %w", cfg.Listen.GRPC, err)
	}
	if s.httpLis, err = net.Listen("tcp", cfg.Listen.HTTP); err != nil {
		s.grpcLis.Close()
		return fmt.Errorf("listen on the HTTP address %s: %w", cfg.Listen.HTTP, err)
	}
	if s.metricsL, err = net.Listen("tcp", cfg.Listen.Metrics); err != nil {
		s.httpLis.Close()
		s.grpcLis.Close()
		return fmt.Errorf("listen on the metrics address %s: %w", cfg.Listen.Metrics, err)
	}
	if cfg.Listen.AuthzHTTP != "" {
		if s.authzL, err = net.Listen("tcp", cfg.Listen.AuthzHTTP); err != nil {
			s.metricsL.Close()
			s.httpLis.Close()
			s.grpcLis.Close()
			return fmt.Errorf("listen on the HTTP authorization address %s: %w", cfg.Listen.AuthzHTTP, err)
		}
	}
	return nil
}

func (s *Server) openStore(ctx context.Context) error {
	db, err := store.OpenReady(ctx, s.cfg.Store.URL, store.Options{MaxConns: s.cfg.Store.MaxConns}, s.cfg.Store.Migrate)
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
	if s.cfg.Signing.EncryptionKey != nil {
		var err error
		if box, err = seal.NewBox(s.cfg.Signing.EncryptionKey, s.cfg.Signing.PreviousEncryptionKeys...); err != nil {
			return fmt.Errorf("invalid config: encryption key: %w", err)
		}
		open = box.Open
		cur, prev := box.KeyIDs()
		s.log.Info("encryption keys", "current", cur, "previous", prev)
		m.showKeys(cur, prev)
	} else {
		s.log.Warn("no encryption key: tokens that require signed requests cannot be checked")
	}
	replay, err := policy.NewReplayCache(s.cfg.Signing.Replay, time.Now)
	if err != nil {
		return fmt.Errorf("invalid config: %w", err)
	}
	s.cache, err = policy.NewCache(timedStore{BatchStore: s.db, m: m, traces: s.traces, system: string(s.db.Dialect())}, s.cfg.Cache, time.Now, open)
	if err != nil {
		return fmt.Errorf("invalid config: %w", err)
	}
	poll := s.cfg.Store.ResyncInterval
	if s.db.Dialect() == store.SQLite {
		// No NOTIFY: the change log is the only path, and changes must
		// show within a second.
		poll = min(poll, 250*time.Millisecond)
	}
	listenURL := s.cfg.Store.ListenURL
	if listenURL == "" {
		listenURL = s.cfg.Store.URL
	}
	s.watcher = s.db.NewWatcher(s.cache, store.WatchConfig{ListenURL: listenURL, PollInterval: poll, QueryTimeout: s.cfg.Cache.StoreTimeout}, s.log)
	m.follow(s.cache, s.watcher, &s.cfg)
	s.metrics = m

	cc := s.cfg.Credits
	if s.cfg.Redis.URL != "" {
		if s.redis, err = redislimit.Open(s.cfg.Redis.URL, redislimit.DefaultPrefix); err != nil {
			return fmt.Errorf("invalid config: %w", err)
		}
		cc.Limiter, cc.LimiterTimeout = s.redis, s.cfg.Redis.Timeout
		if s.traces != nil {
			cc.Limiter = tracedLimiter{Limiter: s.redis, t: s.traces}
		}
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
		AllowSecretInBrowser: s.cfg.Eval.AllowSecretInBrowser,
		GrantFreeAPIs:        s.cfg.Eval.GrantFreeAPIs,
		Signatures: policy.SignatureOptions{
			Skew: s.cfg.Signing.Skew, AllowUnsignedPayload: s.cfg.Signing.AllowUnsignedPayload, Replay: replayStore,
		},
	}
	decider := policy.NewDecider(s.cache, s.meter, time.Now, eval)
	// The codec turns a CheckRequest that is not valid UTF-8 into a deny
	// rather than a gRPC error.
	grpcOpts := extauthz.ServerOptions(s.cfg.ExtAuthz)
	lt, err := s.listenerTLS()
	if err != nil {
		return err
	}
	if s.certs != nil {
		m.followCerts(s.certs)
	}
	if lt.grpc != nil {
		grpcOpts = append(grpcOpts, grpc.Creds(credentials.NewTLS(lt.grpc)))
	}
	s.grpc = grpc.NewServer(grpcOpts...)
	ea.Tracing = s.traces.extauthz()
	watched, err := s.watchAnomalies(decider, m)
	if err != nil {
		return err
	}
	check := extauthz.NewServer(watched, ea, s.log, m.observe)
	authv3.RegisterAuthorizationServer(s.grpc, check)
	if s.cfg.Listen.AuthzHTTP != "" {
		authz, err := check.HTTPHandler(s.cfg.Listen.AuthzHTTPPrefix)
		if err != nil {
			return fmt.Errorf("invalid config: %w", err)
		}
		s.authzH = &http.Server{Handler: authz, ReadHeaderTimeout: 5 * time.Second, TLSConfig: lt.authz}
	}
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	if s.cfg.Listen.Reflection {
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
	api := admin.New(s.db, admin.Config{SessionTTL: s.cfg.API.SessionTTL, InsecureCookies: s.cfg.API.InsecureCookies,
		Box: box, Period: s.cfg.Credits.Period, Eval: eval, TrustedHops: s.cfg.API.TrustedHops, SignIn: s.cfg.API.SignIn}, s.log)
	mux.Handle("/v1/", api)
	mux.Handle("/v3/", api) // CARTO's Tokens API
	mux.Handle("/console/", api)
	mux.Handle("GET /{$}", api)
	leaks := manage.New(s.db, manage.Config{Box: box, Now: time.Now, Eval: eval})
	if scan, err := s.secretScanning(leaks, m); err != nil {
		return err
	} else if scan != nil {
		mux.Handle(secretScanningPath, scan)
	}
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, TLSConfig: lt.api}
	metricsMux := http.NewServeMux()
	metricsMux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	s.metricsH = &http.Server{Handler: metricsMux, ReadHeaderTimeout: 5 * time.Second, TLSConfig: lt.metrics}
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
	fb, err := policy.NewReplayFallback(s.redis, local, policy.ReplayFallbackConfig{Timeout: s.cfg.Redis.Timeout, Retry: retry},
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

// Reconfigure applies the settings that can change at run time, the
// cache's sizes and durations; the rest of cfg is read only at start.
func (s *Server) Reconfigure(cfg Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.cache.Configure(cfg.Cache); err != nil {
		return fmt.Errorf("cache settings: %w", err)
	}
	s.cfg.Cache = cfg.Cache
	s.metrics.showConfig(&s.cfg)
	return nil
}

// Run serves until ctx ends, then shuts down in order: health reports
// NOT_SERVING, in-flight Checks finish, the HTTP server stops, and the
// database closes last.
func (s *Server) Run(ctx context.Context) error {
	watchCtx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { s.watcher.Run(watchCtx) })
	if s.certs != nil {
		wg.Go(func() { s.certs.Run(watchCtx) })
	}
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
	if s.recorder != nil {
		// Like the meter, the recorder flushes once more after the last Check.
		meterDone.Go(func() { s.recorder.Run(meterCtx) })
		wg.Go(func() { s.detector.Run(watchCtx) })
	}

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
			serve := h.srv.Serve
			if h.srv.TLSConfig != nil {
				// The certificate comes from TLSConfig, reloaded.
				serve = func(l net.Listener) error { return h.srv.ServeTLS(l, "", "") }
			}
			if err := serve(h.lis); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	s.log.Info("serving", "grpc", s.GRPCAddr().String(), "http", s.HTTPAddr().String(), "metrics", s.MetricsAddr().String(),
		"store", s.db.Dialect(), "tls", s.certs != nil, "mtls", s.cfg.TLS.ClientCAFile != "", "tracing", s.traces != nil)

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("serve: %w", err)
	}
	s.log.Info("shutting down")
	s.draining.Store(true)
	s.health.Shutdown()
	time.Sleep(s.cfg.Shutdown.DrainDelay)

	stopped := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(s.cfg.Shutdown.Timeout):
		s.log.Warn("in-flight checks did not finish in time; stopping")
		s.grpc.Stop()
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), s.cfg.Shutdown.Timeout)
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
	s.traces.shutdown(ctx)
	if cerr := s.db.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close store: %w", cerr)
	}
	return err
}
