package server

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tollgate/tollgate/internal/admin"
	"github.com/tollgate/tollgate/internal/anomaly"
	"github.com/tollgate/tollgate/internal/certs"
	"github.com/tollgate/tollgate/internal/credits"
	"github.com/tollgate/tollgate/internal/extauthz"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/scanning"
)

// Config is everything a server needs, one section per component.
// Defaults come from DefaultConfig; the command line overrides them from
// its config file, the environment and flags, and alone knows their names.
type Config struct {
	Listen ListenConfig
	Store  StoreConfig
	Cache  policy.CacheConfig
	// MembershipFilter keeps a Bloom filter of every live token key, so
	// that an unknown token is refused without a store query.
	MembershipFilter bool
	Credits          credits.Config
	Redis            RedisConfig
	ExtAuthz         extauthz.Config
	// RouteRules is the path of a route-rules file; "" for none.
	RouteRules string
	// Eval is the operator's choices every decision is made with, by
	// Check and by the Tokens API alike.
	Eval     EvalConfig
	Signing  SigningConfig
	API      APIConfig
	Shutdown ShutdownConfig
	// SecretScanning receives GitHub's reports of leaked tokens.
	SecretScanning SecretScanningConfig
	// Anomaly flags unusual usage of tokens.
	Anomaly AnomalyConfig
	// TLS, when it names a certificate, serves every listener over TLS.
	TLS TLSConfig
	// Tracing exports a span of every Check over OTLP, when it names an
	// endpoint.
	Tracing TracingConfig
}

// ListenConfig is where the server listens.
type ListenConfig struct {
	GRPC string // ext_authz Check, health, reflection
	HTTP string // /healthz, /readyz, the Tokens API and the console
	// AuthzHTTP, when set, serves HTTP authorization subrequests (Envoy
	// http_service under AuthzHTTPPrefix, nginx auth_request, Caddy and
	// Traefik forward auth) with the same decisions as Check.
	AuthzHTTP       string
	AuthzHTTPPrefix string
	// Metrics serves /metrics, apart from the Tokens API and the console,
	// so that scraping and what a NetworkPolicy opens for it reach nothing
	// else.
	Metrics string
	// Reflection turns on gRPC server reflection, so grpcurl works.
	Reflection bool
}

// StoreConfig is the policy store.
type StoreConfig struct {
	// URL is the database; "" means the embedded default.
	URL string
	// ListenURL is where the LISTEN connection goes, when the pool goes
	// through a transaction-pooling proxy; "" means URL.
	ListenURL string
	MaxConns  int
	// Migrate runs migrations at start. The embedded store always migrates.
	Migrate bool
	// ResyncInterval is how often the change log is read to catch up on
	// missed notifications.
	ResyncInterval time.Duration
}

// RedisConfig, when URL is set, makes rate limits (GCRA in Redis) and
// replay protection fleet-wide; Timeout bounds each call, past which a
// Check falls back to this replica's share of the limit and its own replay
// memory.
type RedisConfig struct {
	URL     string
	Timeout time.Duration
}

// EvalConfig is what the operator decides about every token.
type EvalConfig struct {
	// AllowSecretInBrowser lets secret tokens through requests that bear a
	// browser's marks.
	AllowSecretInBrowser bool
	// GrantFreeAPIs need no grant on a connection's sources.
	GrantFreeAPIs []string
}

// SigningConfig is how signed requests are checked.
type SigningConfig struct {
	// EncryptionKey seals and opens tokens' signing secrets and kept
	// values; without it, tokens that require signed requests cannot be
	// checked.
	EncryptionKey []byte
	// PreviousEncryptionKeys open, never seal, what was sealed before the
	// key was rotated, until tollgate reseal has sealed it again under
	// EncryptionKey.
	PreviousEncryptionKeys [][]byte
	// Skew is how far a signed request's time may be from ours.
	Skew time.Duration
	// AllowUnsignedPayload accepts signatures that leave the body out.
	AllowUnsignedPayload bool
	// Replay bounds the signatures remembered against replays.
	Replay policy.ReplayConfig
}

// APIConfig is the Tokens API and the console.
type APIConfig struct {
	// SessionTTL is how long a console sign-in lasts.
	SessionTTL time.Duration
	// InsecureCookies serves the console's session cookie without Secure,
	// for plain HTTP on hosts other than localhost.
	InsecureCookies bool
	// TrustedHops is how many proxies in front of the HTTP API append to
	// X-Forwarded-For; 0 takes the caller from the TCP peer.
	TrustedHops int
	// SignIn bounds console sign-in (attempt limits, the hashing pool).
	SignIn admin.SignInConfig
}

// ShutdownConfig is how the server stops.
type ShutdownConfig struct {
	// DrainDelay is how long the server keeps answering after it reports
	// NOT_SERVING, so that Envoy notices before connections close.
	DrainDelay time.Duration
	// Timeout bounds the wait for in-flight Checks.
	Timeout time.Duration
}

// DefaultConfig returns the defaults documented in the README.
func DefaultConfig() Config {
	return Config{
		Listen: ListenConfig{GRPC: ":9191", HTTP: ":8181", Metrics: ":9090",
			AuthzHTTPPrefix: extauthz.DefaultHTTPPrefix, Reflection: true},
		Store: StoreConfig{MaxConns: 10, ResyncInterval: 30 * time.Second},
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
		MembershipFilter: true,
		Credits:          credits.DefaultConfig(),
		Redis:            RedisConfig{Timeout: credits.DefaultConfig().LimiterTimeout},
		ExtAuthz: extauthz.Config{
			TokenSources:     extauthz.DefaultTokenSources(),
			StripCredentials: true,
			DenyLogLevel:     slog.LevelInfo,
			CreditHeaders:    extauthz.DefaultCreditHeaders(),
			StreamWorkers:    extauthz.DefaultStreamWorkers(),
		},
		Eval: EvalConfig{GrantFreeAPIs: []string{policy.APILDS}},
		Signing: SigningConfig{Skew: 5 * time.Minute,
			Replay: policy.ReplayConfig{Size: 1_000_000, PerToken: 250_000}},
		API:            APIConfig{SessionTTL: 12 * time.Hour, SignIn: admin.DefaultSignInConfig()},
		Shutdown:       ShutdownConfig{Timeout: 15 * time.Second},
		SecretScanning: SecretScanningConfig{KeysRefetch: time.Minute, Config: scanning.DefaultConfig()},
		Anomaly:        AnomalyConfig{On: true, Recorder: anomaly.DefaultRecorderConfig(), Detector: anomaly.DefaultDetectorConfig()},
		TLS:            TLSConfig{ReloadInterval: certs.DefaultInterval},
		Tracing:        TracingConfig{SampleRatio: 0.01},
	}
}

// Validate reports the first unusable setting, in words a person can act
// on; the command line adds the name it knows the setting by.
func (c *Config) Validate() error {
	if err := c.validate(); err != nil {
		return fmt.Errorf("invalid config: %w", err)
	}
	return nil
}

func (c *Config) validate() error {
	if err := c.Cache.Validate(); err != nil {
		return err
	}
	switch {
	case c.Listen.GRPC == "":
		return errors.New("the gRPC listen address must be set")
	case c.Listen.HTTP == "":
		return errors.New("the HTTP listen address must be set")
	case c.Listen.Metrics == "":
		return errors.New("the metrics listen address must be set (metrics have a port of their own)")
	case c.Store.ResyncInterval <= 0:
		return errors.New("the change log's resync interval must be > 0")
	case c.ExtAuthz.TrustedHops < 0:
		return errors.New("the trusted X-Forwarded-For hops in front of Envoy must be >= 0")
	case c.ExtAuthz.StreamWorkers < 0:
		return errors.New("the gRPC stream workers must be >= 0 (0: a goroutine per stream)")
	case c.Store.MaxConns < 1:
		return errors.New("the store's connection pool must allow at least 1 connection")
	case c.Shutdown.Timeout <= 0:
		return errors.New("the shutdown timeout must be > 0")
	case c.Signing.Skew <= 0:
		return errors.New("the signature skew must be > 0")
	case c.Signing.EncryptionKey == nil && len(c.Signing.PreviousEncryptionKeys) > 0:
		// Opening without sealing would serve old tokens and refuse to
		// sign new ones: a half-rotated key, never what was meant.
		return errors.New("previous encryption keys need a current encryption key to seal with")
	case c.Redis.Timeout <= 0:
		return errors.New("the Redis timeout must be > 0")
	case c.API.TrustedHops < 0:
		return errors.New("the trusted X-Forwarded-For hops in front of the Tokens API must be >= 0")
	}
	if c.Listen.AuthzHTTP != "" {
		if err := extauthz.ValidateHTTPPrefix(c.Listen.AuthzHTTPPrefix); err != nil {
			return err
		}
	}
	if err := c.Signing.Replay.Validate(); err != nil {
		return err
	}
	if err := c.API.SignIn.Validate(); err != nil {
		return err
	}
	if err := c.TLS.Validate(); err != nil {
		return err
	}
	if err := c.Tracing.Validate(); err != nil {
		return err
	}
	if c.Anomaly.On {
		if err := c.Anomaly.validate(); err != nil {
			return err
		}
	}
	if c.SecretScanning.Keys != "" {
		return c.SecretScanning.Validate()
	}
	return nil
}
