package credits

import (
	"context"
	"time"
)

// Limiter limits a key's request rate across the whole fleet, in one place
// every replica asks (redislimit.Client, on Redis).
type Limiter interface {
	// Allow spends one request of key's limit (rps a second, up to burst
	// at once). It reports whether the request may pass, how many more may
	// pass at once, and when refused how long until one may. It returns an
	// error when the limit could not be checked within ctx; the meter then
	// decides with this replica's share of the limit.
	Allow(ctx context.Context, key string, rps, burst int64) (ok bool, remaining int64, retryAfter time.Duration, err error)
}

// rate spends one request of the token's rate limit: from the fleet's
// limiter when there is one and it answers, else from this replica's
// share. It returns what is left at once and, when refused, the wait.
func (m *Meter) rate(ctx context.Context, tokenID string, rps, burst int64, now time.Time) (left int64, wait time.Duration, ok bool) {
	if m.cfg.Limiter == nil {
		return m.bucket(tokenID, rps, burst, max(m.replicas.Load(), 1)).take(now)
	}
	// A client hammering a spent token costs Redis nothing until the
	// limiter's own retry-after has passed: the answer could not change.
	if until, found := m.over.Get(tokenID); found && now.UnixNano() < until {
		return 0, time.Duration(until - now.UnixNano()), false
	}
	if m.limiterUsable(now) {
		// Not the Check's context: a caller that hangs up must not count
		// as Redis failing.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.LimiterTimeout)
		ok, left, wait, err := m.cfg.Limiter.Allow(lctx, tokenID, rps, burst)
		cancel()
		if err == nil {
			m.limiterAnswered()
			if !ok {
				m.over.Add(tokenID, now.Add(wait).UnixNano())
			}
			return left, wait, ok
		}
		m.limiterFailed(now, err)
	}
	m.fallbacks.Add(1)
	return m.bucket(tokenID, rps, burst, max(m.replicas.Load(), 1)).take(now)
}

// limiterUsable reports whether to ask the limiter. After a failure it is
// left alone for LimiterRetry, then one Check (whichever wins the swap)
// tries it again, so a dead or slow Redis costs at most one timeout per
// LimiterRetry, never one per Check.
func (m *Meter) limiterUsable(now time.Time) bool {
	down := m.limiterDown.Load()
	if down == 0 {
		return true
	}
	t := now.UnixNano()
	return t >= down && m.limiterDown.CompareAndSwap(down, now.Add(m.cfg.LimiterRetry).UnixNano())
}

func (m *Meter) limiterFailed(now time.Time, err error) {
	if m.limiterDown.Swap(now.Add(m.cfg.LimiterRetry).UnixNano()) == 0 {
		// Logged on the change only: a line per Check would flood the
		// log just when it is read.
		m.log.Warn("rate limits: the fleet limiter (Redis) failed; each replica enforces its share of each limit until it answers",
			"retry_every", m.cfg.LimiterRetry, "err", err)
	}
}

func (m *Meter) limiterAnswered() {
	if m.limiterDown.Load() != 0 && m.limiterDown.Swap(0) != 0 {
		m.log.Info("rate limits: the fleet limiter (Redis) answers again; limits are fleet-wide")
	}
}

// RateFallbacks returns how many rate-limited Checks were decided by this
// replica's share because the fleet limiter failed or was resting.
func (m *Meter) RateFallbacks() uint64 { return m.fallbacks.Load() }

// LimiterUp reports whether rate limits are being checked fleet-wide: a
// limiter is configured and has not failed since it last answered.
func (m *Meter) LimiterUp() bool { return m.cfg.Limiter != nil && m.limiterDown.Load() == 0 }

// Replicas returns the live replicas counted at the last heartbeat, this
// one included: the rate limits' fallback shares are split between them.
func (m *Meter) Replicas() int { return int(max(m.replicas.Load(), 1)) }
