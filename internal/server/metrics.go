package server

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/attribute"

	"github.com/tollgate/tollgate/internal/certs"

	"github.com/tollgate/tollgate/internal/credits"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/store"
)

// metrics are the server's Prometheus series, on a registry of its own.
type metrics struct {
	reg *prometheus.Registry
	// decisions has one counter per result and code, resolved up front so
	// that counting a decision is an atomic add, not a label look-up.
	decisions   map[policy.DenyCode]prometheus.Counter
	checkErrors prometheus.Counter
	checkTime   prometheus.Observer
	storeTime   prometheus.Observer
	storeErrors prometheus.Counter
	configInfo  *prometheus.GaugeVec
	keyInfo     *prometheus.GaugeVec
}

// configLabels are the tunables tollgate_config_info reports.
var configLabels = []string{"cache_size", "cache_ttl", "negative_cache_size", "negative_cache_ttl",
	"max_staleness", "store_timeout", "resync_interval", "dry_run"}

// showConfig makes tollgate_config_info report the values in effect.
func (m *metrics) showConfig(cfg *Config) {
	cc := cfg.Cache
	m.configInfo.Reset()
	m.configInfo.WithLabelValues(strconv.Itoa(cc.Size), cc.TTL.String(), strconv.Itoa(cc.NegativeSize),
		cc.NegativeTTL.String(), cc.MaxStaleness.String(), cc.StoreTimeout.String(),
		cfg.Store.ResyncInterval.String(), strconv.FormatBool(cfg.ExtAuthz.DryRun)).Set(1)
}

// showKeys makes tollgate_encryption_keys_info name the keys this replica
// seals and opens with (seal.KeyID, never the keys), so that an operator
// rotating the key can see every replica hold the new one before re-sealing.
func (m *metrics) showKeys(current string, previous []string) {
	m.keyInfo.Reset()
	m.keyInfo.WithLabelValues(current, strings.Join(previous, ",")).Set(1)
}

func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	decisions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_check_decisions_total", Help: "Check decisions by result and deny code.",
	}, []string{"result", "code"})
	m := &metrics{
		reg:       reg,
		decisions: map[policy.DenyCode]prometheus.Counter{"": decisions.WithLabelValues("allow", "")},
		checkErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_check_errors_total", Help: "Checks answered with a gRPC error: Tollgate could not decide.",
		}),
	}
	m.configInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tollgate_config_info", Help: "The tunables in effect (always 1).",
	}, configLabels)
	m.keyInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tollgate_encryption_keys_info",
		Help: "The ids of the encryption key this replica seals with and of the previous keys it also opens with (always 1; absent without a key).",
	}, []string{"current", "previous"})
	for _, c := range policy.DenyCodes() {
		m.decisions[c] = decisions.WithLabelValues("deny", string(c))
	}
	checkTime := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "tollgate_check_duration_seconds", Help: "Time to answer a Check, inside Tollgate.",
		Buckets: []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1},
	})
	storeTime := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "tollgate_store_duration_seconds", Help: "Time of policy store queries (cache misses).",
		Buckets: []float64{250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1, 2.5},
	}, []string{"op"})
	storeErrors := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_store_errors_total", Help: "Failed policy store queries.",
	}, []string{"op"})
	m.checkTime, m.storeTime, m.storeErrors = checkTime, storeTime.WithLabelValues("token_by_hash"), storeErrors.WithLabelValues("token_by_hash")

	reg.MustRegister(decisions, m.checkErrors, checkTime, storeTime, storeErrors)
	return m
}

// follow registers the series read from the cache and the watcher, which
// are built after the metrics because the cache's store reports to them.
func (m *metrics) follow(cache *policy.Cache, w *store.Watcher, cfg *Config) {
	counter := func(name, help string, f func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	m.reg.MustRegister(
		counter("tollgate_cache_hits_total", "Cache hits, including remembered unknown tokens.", func() uint64 { s := cache.Stats(); return s.Hits + s.NegativeHits }),
		counter("tollgate_cache_misses_total", "Cache misses (store look-ups).", func() uint64 { return cache.Stats().Misses }),
		counter("tollgate_cache_evictions_total", "Entries pushed out of the cache by its size bound.", func() uint64 { return cache.Stats().Evictions }),
		counter("tollgate_cache_stale_served_total", "Policies served past their TTL because the store failed.", func() uint64 { return cache.Stats().StaleServed }),
		gauge("tollgate_cache_entries", "Token policies cached.", func() float64 { return float64(cache.Stats().Entries) }),
		counter("tollgate_filter_refusals_total", "Unknown tokens refused by the membership filter without a store query.", func() uint64 { return cache.Stats().FilterRefusals }),
		counter("tollgate_filter_miss_lookups_total", "Tokens the membership filter ruled out that were looked up all the same (filter-miss-lookups a second), in case they were just created.",
			func() uint64 { return cache.Stats().FilterLookups }),
		gauge("tollgate_filter_entries", "Token keys in the membership filter in force.", func() float64 { return float64(cache.Stats().FilterEntries) }),
		gauge("tollgate_filter_bytes", "Size of the membership filter in force.", func() float64 { return float64(cache.Stats().FilterBytes) }),
		gauge("tollgate_filter_loaded", "1 while a membership filter is in force; 0 before its first load and after changes were lost, when every unknown token is looked up.", func() float64 {
			if cache.Stats().FilterLoaded {
				return 1
			}
			return 0
		}),
		counter("tollgate_invalidations_total", "Policy changes received (notifications and change-log catch-up).", w.Received),
		counter("tollgate_listener_reconnects_total", "Times the notification connection was re-established.", w.Reconnects),
		gauge("tollgate_listener_connected", "1 while policy change notifications flow.", func() float64 {
			if w.Connected() {
				return 1
			}
			return 0
		}),
		counter("tollgate_change_poll_errors_total", "Failed reads of the change log.", w.PollErrors),
		m.configInfo,
		m.keyInfo,
	)
	m.showConfig(cfg)
}

// followMeter registers the series read from the credit meter: the
// usage writer and the rate limits' fleet-wide state.
func (m *metrics) followMeter(meter *credits.Meter) {
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tollgate_credits_flushes_total", Help: "Credit and usage flushes finished, with or without anything to write.",
		}, func() float64 { return float64(meter.Flushes()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tollgate_credits_flush_errors_total", Help: "Failed writes of usage or credit spending (each is retried).",
		}, func() float64 { return float64(meter.FlushErrors()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tollgate_usage_backlog_rows", Help: "Usage rows (token and day) counted and not yet written.",
		}, func() float64 { return float64(meter.Backlog()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tollgate_ratelimit_fallback_total",
			Help: "Rate-limited Checks decided by this replica's share of the limit because Redis failed or was resting after a failure."},
			func() float64 { return float64(meter.RateFallbacks()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tollgate_replicas",
			Help: "Live replicas counted at the last heartbeat; without Redis each rate limit is shared between them by demand."},
			func() float64 { return float64(meter.Replicas()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tollgate_ratelimit_fleetwide",
			Help: "1 while rate limits are checked fleet-wide in Redis; 0 in the per-replica fallback or without Redis."},
			func() float64 {
				if meter.LimiterUp() {
					return 1
				}
				return 0
			}),
	)
}

// followReplay registers the replay memory's fallback count.
func (m *metrics) followReplay(fallbacks func() uint64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tollgate_replay_fallback_total",
		Help: "Signatures remembered by this replica alone because Redis failed or was resting after a failure: their replays are refused only here."},
		func() float64 { return float64(fallbacks()) }))
}

// observe is the extauthz.Observer.
func (m *metrics) observe(d policy.Decision, err error, elapsed time.Duration) {
	m.checkTime.Observe(elapsed.Seconds())
	if err != nil {
		m.checkErrors.Inc()
		return
	}
	if c, ok := m.decisions[d.Code]; ok {
		c.Inc()
	}
}

// timedStore times the store's look-ups for the metrics: one look-up or a
// batch of them (one query either way). With tracing, each is a span, a
// child of the Check that asked (the cache's query keeps the asking
// Check's context values; a batch's, the first asker's).
type timedStore struct {
	policy.BatchStore
	m      *metrics
	traces *tracing // nil without tracing
	system string   // the store's dialect, for the span
}

func (s timedStore) TokensByHash(ctx context.Context, hs []policy.Hash) (map[policy.Hash]policy.Loaded, error) {
	ctx, span := s.traces.start(ctx, "tollgate.store.TokensByHash", attribute.String("db.system.name", s.system), attribute.Int("tollgate.batch_size", len(hs)))
	start := time.Now()
	found, err := s.BatchStore.TokensByHash(ctx, hs)
	s.m.storeTime.Observe(time.Since(start).Seconds())
	if err != nil {
		s.m.storeErrors.Inc()
	}
	s.traces.end(span, err)
	return found, err
}

func (s timedStore) TokenByHash(ctx context.Context, h policy.Hash) (*policy.Token, *policy.Account, error) {
	ctx, span := s.traces.start(ctx, "tollgate.store.TokenByHash", attribute.String("db.system.name", s.system))
	start := time.Now()
	t, a, err := s.BatchStore.TokenByHash(ctx, h)
	s.m.storeTime.Observe(time.Since(start).Seconds())
	failure := err
	if err != nil && policy.ErrorCode(err) == policy.ENotFound {
		failure = nil // an answer, not a failure
	}
	if failure != nil {
		s.m.storeErrors.Inc()
	}
	s.traces.end(span, failure)
	return t, a, err
}

// followCerts reports the TLS certificate in force: when it expires, and
// how many new ones were refused (each logged), so that an alert can fire
// well before clients start to fail.
func (m *metrics) followCerts(r *certs.Reloader) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tollgate_tls_cert_not_after_seconds", Help: "When the served TLS certificate expires (Unix time).",
		}, func() float64 { return float64(r.NotAfter().Unix()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tollgate_tls_reload_errors_total", Help: "New TLS certificates or CA bundles refused; the previous one kept serving.",
		}, func() float64 { return float64(r.Errors()) }),
	)
}
