// Package credits charges allowed requests against each token's credit
// limit and its account's quota, rate-limits tokens, and records usage.
//
// Postgres stays the source of truth without a write per request: each
// replica reserves blocks of credits with one transaction and spends them
// locally. A reservation never takes a subject past its limit, so however
// many replicas spend at once, a token can never spend more than its limit.
// Blocks shrink as the limit nears, so the last credits are shared out
// rather than stranded in one replica's block. Unspent credits go back on
// graceful shutdown; a replica killed outright leaves its unspent block
// counted as used (the customer loses at most one block).
package credits

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/tollgate/tollgate/internal/policy"
)

// Store is what the meter needs from storage: *store.DB.
type Store interface {
	Reserve(ctx context.Context, subject string, period time.Time, grant func(reserved int64) int64) (granted, total int64, err error)
	AddCredits(ctx context.Context, subject string, period time.Time, n int64) (int64, error)
	AddCreditsBatch(ctx context.Context, period time.Time, deltas map[string]int64) (map[string]int64, error)
	RecordUsage(ctx context.Context, batch []policy.DailyUsage) error
	Heartbeat(ctx context.Context, id string, ttl time.Duration) (int, error)
	ReportDemand(ctx context.Context, id string, ttl time.Duration, demand map[string]float64) (map[string]float64, error)
	RemoveReplica(ctx context.Context, id string) error
}

// Config tunes a Meter.
type Config struct {
	// Period is how long credits count.
	Period policy.Period
	// MaxBlock is the most credits one reservation takes.
	MaxBlock int64
	// FlushInterval is how often usage is written and leases are tidied.
	FlushInterval time.Duration
	// ReplicaTTL is how long a replica counts as alive after its last
	// heartbeat; rate limits are split between the live replicas.
	ReplicaTTL time.Duration
	// ShareInterval is how often each replica reports its demand for
	// rate-limited tokens and takes its share of each limit by demand.
	ShareInterval time.Duration
	// StoreTimeout bounds one reservation.
	StoreTimeout time.Duration
	// Limiter, when set, limits rates fleet-wide; each replica's share
	// (the rate split between live replicas) is then only the fallback.
	Limiter Limiter
	// LimiterTimeout bounds one call to the Limiter; past it the Check is
	// decided by this replica's share.
	LimiterTimeout time.Duration
	// LimiterRetry is how long a failed Limiter is left alone before one
	// Check tries it again.
	LimiterRetry time.Duration
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Period: policy.PeriodMonth, MaxBlock: 1000, FlushInterval: 2 * time.Second, ReplicaTTL: 6 * time.Second, ShareInterval: time.Second, StoreTimeout: 2 * time.Second,
		LimiterTimeout: 10 * time.Millisecond, LimiterRetry: time.Second}
}

// Meter is the policy.Meter of one replica.
type Meter struct {
	store Store
	cfg   Config
	now   func() time.Time
	log   *slog.Logger
	id    string // this replica, for the heartbeat

	mu       sync.Mutex
	subjects map[subjectKey]*subject
	usage    map[usageKey]*policy.DailyUsage

	buckets  *lru.Cache[string, *bucket]
	replicas atomic.Int64
	flushes  atomic.Uint64
	failures atomic.Uint64 // failed writes of usage or spending
	// queue is what flushes took out of the books and have not written
	// yet; only the goroutine keeping the books touches it. queued is its
	// length in rows, for Backlog.
	queue  writeQueue
	queued atomic.Int64

	// lastShare and sharing belong to Run's demand reports.
	lastShare time.Time
	sharing   bool

	// over remembers, per token, until when (unix nanoseconds) the fleet
	// limiter refuses it.
	over *lru.Cache[string, int64]
	// limiterDown is when (unix nanoseconds) to try a failed limiter
	// again; 0 while it answers.
	limiterDown atomic.Int64
	fallbacks   atomic.Uint64
}

var _ policy.Meter = (*Meter)(nil)

type subjectKey struct {
	id     string // a token or account id
	period int64  // unix seconds of the period's start
}

// subject is this replica's view of one token's or account's credits in
// one period.
type subject struct {
	mu sync.Mutex
	// limit is the limit the lease was taken under; -1 means the subject
	// is only counted, never limited.
	limit int64
	// lease is reserved in the store and not yet spent here.
	lease int64
	// total is the period's reserved total after our last exchange.
	total int64
	// pending is spent and not yet added to the store (unlimited only).
	pending int64
	// queued is spending a flush has queued for writing and not yet
	// written (unlimited only).
	queued int64
	// known is set once total has been read.
	known bool
	// refusedUntil (unix nanoseconds) is when a refusal from the store
	// stops standing in for asking it again.
	refusedUntil int64
	lastUsed     int64
	// retired is set when a flush has settled the books and dropped them.
	retired bool
}

// usageKey is a token and a day, as days since the Unix epoch (UTC), so
// counting a request formats nothing.
type usageKey struct {
	token string
	day   int64
}

// New returns a Meter; Run keeps its books.
func New(s Store, cfg Config, now func() time.Time, log *slog.Logger) (*Meter, error) {
	if _, err := policy.ParsePeriod(string(cfg.Period)); err != nil {
		return nil, err
	}
	if cfg.MaxBlock < 1 || cfg.FlushInterval <= 0 || cfg.ReplicaTTL <= 0 || cfg.StoreTimeout <= 0 || cfg.ShareInterval <= 0 {
		return nil, errors.New("credits: block, flush interval, replica TTL, share interval and store timeout must be positive")
	}
	if cfg.Limiter != nil && (cfg.LimiterTimeout <= 0 || cfg.LimiterRetry <= 0) {
		return nil, errors.New("credits: the limiter's timeout and retry interval must be positive")
	}
	buckets, err := lru.New[string, *bucket](100_000)
	if err != nil {
		return nil, err
	}
	over, err := lru.New[string, int64](100_000)
	if err != nil {
		return nil, err
	}
	m := &Meter{store: s, cfg: cfg, now: now, log: log, id: policy.NewID("rep"),
		subjects: map[subjectKey]*subject{}, usage: map[usageKey]*policy.DailyUsage{}, buckets: buckets, over: over}
	m.replicas.Store(1)
	return m, nil
}

// errUnavailable reports that credits could not be checked: the store
// is down and this replica holds none for the subject.
var errUnavailable = errors.New("credits: cannot reserve credits")

// Settle implements policy.Meter.
func (m *Meter) Settle(ctx context.Context, p policy.Policy, dec policy.Decision) (policy.Decision, error) {
	err := m.apply(ctx, &p, &dec)
	return dec, err
}

func (m *Meter) apply(ctx context.Context, p *policy.Policy, d *policy.Decision) error {
	now := m.now()
	defer m.count(d, now)
	if !d.Allow {
		return nil
	}
	period := m.cfg.Period.Start(now)
	tokLimit, quota := limitOf(p.CreditLimit()), limitOf(p.AccountQuota())
	// The headers report the token's limit, else the account's.
	report := p.TokenID
	d.Usage.Metered, d.Usage.Limit = true, tokLimit
	if tokLimit < 0 && quota >= 0 {
		report, d.Usage.Limit = p.AccountID, quota
	}
	// The token's own rate limit, then its account's, shared by every
	// token of the account (keyed by the account id: ids of tokens and
	// accounts never collide). The headers describe the limit that refused,
	// else the token's, else the account's.
	tr, tb, tok := p.RateLimit()
	ar, ab, aok := p.AccountRateLimit()
	for _, lim := range [2]subjectRate{
		rateOn(p.TokenID, "this token is over its rate limit; retry later", tr, tb, tok),
		rateOn(p.AccountID, "this account is over its rate limit (shared by all its tokens); retry later", ar, ab, aok),
	} {
		if !lim.ok {
			continue
		}
		left, wait, ok := m.rate(ctx, lim.id, lim.rps, lim.burst, now)
		if d.Usage.RateRPS == 0 || !ok {
			d.Usage.RateRPS, d.Usage.RateBurst, d.Usage.RateRemaining = lim.rps, lim.burst, left
		}
		if !ok {
			d.Usage.RetryAfter = wait
			d.Usage.Used = m.peek(report, period, now)
			refuse(d, policy.CodeRateLimited, lim.msg)
			return nil
		}
	}
	cost := d.Cost
	ok, usedTok, err := m.charge(ctx, p.TokenID, period, now, tokLimit, cost)
	if err != nil {
		return err
	}
	if !ok {
		d.Usage.Used = usedTok
		refuse(d, policy.CodeCreditsExhausted, "this token has used its credit limit for this period")
		return nil
	}
	ok, usedAcc, err := m.charge(ctx, p.AccountID, period, now, quota, cost)
	if err != nil || !ok {
		usedTok = m.refund(p.TokenID, period, now, cost)
		if err != nil {
			return err
		}
		d.Usage.Used = usedTok
		if report == p.AccountID {
			d.Usage.Used = usedAcc
		}
		refuse(d, policy.CodeQuotaExhausted, "this account has used its credit quota for this period")
		return nil
	}
	d.Usage.Used = usedTok
	if report == p.AccountID {
		d.Usage.Used = usedAcc
	}
	return nil
}

// subjectRate is a rate limit on one subject (a token or an account),
// with the message of its refusal.
type subjectRate struct {
	id, msg    string
	rps, burst int64
	ok         bool
}

func rateOn(id, msg string, rps, burst int64, ok bool) subjectRate {
	return subjectRate{id: id, msg: msg, rps: rps, burst: burst, ok: ok}
}

func limitOf(n int64, ok bool) int64 {
	if !ok {
		return -1
	}
	return n
}

// refuse turns an allow into a deny; the request spent nothing.
func refuse(d *policy.Decision, code policy.DenyCode, msg string) {
	d.Allow, d.Code, d.Message = false, code, msg
}

// peek returns the subject's spending without charging it.
func (m *Meter) peek(id string, period, now time.Time) int64 {
	s := m.lockSubject(id, period, now)
	defer s.mu.Unlock()
	return s.used()
}

// used is this replica's best estimate of the period's spending: what is
// reserved overall, less what this replica holds unspent, plus what it has
// spent and not yet written. Other replicas' unspent blocks count as used
// until they are spent or returned. For a subject without a limit the
// overall total is learnt at the first flush after this replica first
// counts it; until then only this replica's count shows.
func (s *subject) used() int64 { return s.total - s.lease + s.pending + s.queued }

// lockSubject returns the subject's books, locked, making them if need
// be. Books being retired by a flush are skipped for their replacement.
func (m *Meter) lockSubject(id string, period time.Time, now time.Time) *subject {
	k := subjectKey{id, period.Unix()}
	for {
		m.mu.Lock()
		s, ok := m.subjects[k]
		if !ok {
			s = &subject{limit: -1}
			m.subjects[k] = s
		}
		m.mu.Unlock()
		s.mu.Lock()
		if !s.retired {
			s.lastUsed = now.Unix()
			return s
		}
		s.mu.Unlock()
	}
}

// charge spends cost from the subject, reserving from the store when the
// local lease runs short. It reports false when the limit would be
// crossed, and the subject's spending after the charge (or refusal).
func (m *Meter) charge(ctx context.Context, id string, period, now time.Time, limit, cost int64) (bool, int64, error) {
	s := m.lockSubject(id, period, now)
	defer s.mu.Unlock()
	ok, err := m.chargeLocked(ctx, s, id, period, now, limit, cost)
	return ok, s.used(), err
}

func (m *Meter) chargeLocked(ctx context.Context, s *subject, id string, period, now time.Time, limit, cost int64) (bool, error) {
	if limit != s.limit {
		// The limit changed (or the subject turned limited): give back what
		// was leased under the old one and start again under the new one.
		if err := m.settleLease(ctx, s, id, period); err != nil {
			return false, err
		}
		s.limit = limit
	}
	if limit < 0 {
		// Only counted: the flush adds it up in one statement for every
		// such subject, and learns the period's total then.
		s.pending += cost
		return true, nil
	}
	if s.lease >= cost {
		s.lease -= cost
		return true, nil
	}
	need := cost - s.lease
	// A client hammering a spent token must not cost a transaction per
	// request: the store's last refusal stands for a flush interval. Credits
	// other replicas give back meanwhile become usable after it; a raised
	// limit, at once.
	if now.UnixNano() < s.refusedUntil && limit-s.total < need {
		return false, nil
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.StoreTimeout)
	defer cancel()
	granted, total, err := m.store.Reserve(rctx, id, period, func(reserved int64) int64 {
		avail := limit - reserved
		if avail < need {
			return 0
		}
		// A quarter of what is left, so the last credits are shared out
		// between replicas, but never less than this request needs.
		return min(avail, max(need, min(m.cfg.MaxBlock, avail/4)))
	})
	if err != nil {
		return false, fmt.Errorf("%w for %s: %w", errUnavailable, id, err)
	}
	s.total, s.known = total, true
	if granted == 0 {
		s.refusedUntil = now.Add(m.cfg.FlushInterval).UnixNano()
		return false, nil
	}
	s.lease += granted - cost
	return true, nil
}

// refund puts back a charge the account then refused, and returns the
// subject's spending after it.
func (m *Meter) refund(id string, period, now time.Time, cost int64) int64 {
	s := m.lockSubject(id, period, now)
	defer s.mu.Unlock()
	if s.limit < 0 {
		s.pending -= cost
	} else {
		s.lease += cost
	}
	return s.used()
}

// settleLease writes what the subject owes the store: pending spending,
// or an unspent lease returned. Called with s.mu held.
func (m *Meter) settleLease(ctx context.Context, s *subject, id string, period time.Time) error {
	delta := s.pending - s.lease
	if delta == 0 {
		return nil
	}
	total, err := m.exchange(ctx, id, period, delta)
	if err != nil {
		return err
	}
	s.total, s.known, s.pending, s.lease = total, true, 0, 0
	return nil
}

func (m *Meter) exchange(ctx context.Context, id string, period time.Time, delta int64) (int64, error) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.StoreTimeout)
	defer cancel()
	return m.store.AddCredits(sctx, id, period, delta)
}

// count adds a decision about a known token to the day's usage.
func (m *Meter) count(d *policy.Decision, now time.Time) {
	if d.TokenID == "" {
		return
	}
	k := usageKey{d.TokenID, now.Unix() / 86400}
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.usage[k]
	if !ok {
		u = &policy.DailyUsage{TokenID: d.TokenID, AccountID: d.AccountID, Day: now.UTC().Format(time.DateOnly)}
		m.usage[k] = u
	}
	if d.Allow {
		u.Requests++
		u.Credits += d.Cost
		u.LastUsed = now
		return
	}
	if u.Denials == nil {
		u.Denials = map[string]int64{}
	}
	u.Denials[string(d.Code)]++
}
