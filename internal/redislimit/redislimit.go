// Package redislimit keeps Tollgate's fleet-wide limits in Redis, so that
// they hold however many replicas share the traffic: request rates, with
// GCRA in a Lua script (one round trip spends a request or refuses it),
// and signatures already seen, with SET NX (replay protection).
//
// Redis's own clock times every limit, so replicas whose clocks disagree
// still share one. The caller bounds each call with its context and decides
// what to do when Redis does not answer: this package never retries.
package redislimit

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/policy"
)

// Client is one replica's connection pool to Redis and the scripts it runs.
type Client struct {
	rdb    *redis.Client
	prefix string
	gcra   *redis.Script
}

// DefaultPrefix begins every key Tollgate writes.
const DefaultPrefix = "tollgate:"

// Open returns a Client for url (redis://, rediss:// or unix://). Keys are
// written under prefix, so several fleets (or tests) can share a server.
// Nothing is dialled until the first call.
func Open(rawURL, prefix string) (*Client, error) {
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		// url.Parse's error repeats the URL, password and all.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("redis-url: want redis://[user:password@]host:port[/db], rediss:// or unix://: %w", err)
	}
	// A limit that cannot be checked in time is decided by the caller's
	// fallback; a retry would only make the Check wait longer.
	opt.MaxRetries = -1
	opt.DialerRetries = 1
	opt.DialTimeout = time.Second
	opt.ContextTimeoutEnabled = true
	// RESP2: RESP3's push notifications make the client look for pending
	// ones before every command, a system call per Check for nothing
	// these few commands use.
	opt.Protocol = 2
	return &Client{rdb: redis.NewClient(opt), prefix: prefix, gcra: redis.NewScript(gcraScript)}, nil
}

// Close closes the connection pool.
func (c *Client) Close() error { return c.rdb.Close() }

// Ping reports whether Redis answers.
func (c *Client) Ping(ctx context.Context) error { return c.rdb.Ping(ctx).Err() }

// gcraScript spends one request of a GCRA limit (the token bucket's exact
// equivalent: burst at once, refilled at one request per interval) in one
// step, so concurrent replicas never both take the last request.
//
// KEYS[1] holds the theoretical arrival time (TAT), in microseconds on
// Redis's clock; it expires when the bucket would be full again, so idle
// limits cost no memory. ARGV[1] is the interval in microseconds, ARGV[2]
// the burst. The reply is {allowed (0/1), remaining, retry-after in µs}.
const gcraScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, 0, math.ceil(allow_at - now)}
end
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, math.floor((now - allow_at) / interval), 0}
`

// Allow spends one request of key's limit: rps requests a second, up to
// burst at once. It reports whether the request may pass, how many more
// may pass at once after it, and, when refused, how long until one may.
// It returns an error, and spends nothing it can vouch for, when Redis
// does not answer within ctx or the limit is not positive.
func (c *Client) Allow(ctx context.Context, key string, rps, burst int64) (ok bool, remaining int64, retryAfter time.Duration, err error) {
	if rps < 1 || burst < 1 {
		return false, 0, 0, fmt.Errorf("redislimit: limit of %s: rps %d and burst %d must be positive", key, rps, burst)
	}
	interval := 1e6 / float64(rps)
	res, err := c.gcra.Run(ctx, c.rdb, []string{c.prefix + "rate:" + key}, interval, burst).Int64Slice()
	if err != nil {
		return false, 0, 0, fmt.Errorf("redislimit: rate of %s: %w", key, err)
	}
	if len(res) != 3 {
		return false, 0, 0, fmt.Errorf("redislimit: rate of %s: got %d values from the script, want 3", key, len(res))
	}
	return res[0] == 1, res[1], time.Duration(res[2]) * time.Microsecond, nil
}

// Remember records that tokenID's request with signature sig was seen, for
// as long as it could be replayed (until), and reports whether it was the
// first time. It is one SET NX PX: whichever replica sees a signature
// first wins, and every later one, on any replica, is told it is not
// fresh. A signature whose window has already passed is reported fresh
// and not stored: its date refuses it anyway. It returns an error when
// Redis does not answer within ctx.
func (c *Client) Remember(ctx context.Context, tokenID string, sig [32]byte, until time.Time) (fresh bool, err error) {
	ttl := time.Until(until)
	if ttl <= 0 {
		return true, nil
	}
	fresh, err = c.rdb.SetNX(ctx, c.replayKey(tokenID, sig), 1, max(ttl, time.Millisecond)).Result()
	if err != nil {
		return false, fmt.Errorf("redislimit: remember signature of %s: %w", tokenID, err)
	}
	return fresh, nil
}

// Forget drops a signature that Remember reported fresh for, when its
// request was refused after all, so that the client may send it again.
// Forgetting a signature that is not remembered does nothing.
func (c *Client) Forget(ctx context.Context, tokenID string, sig [32]byte) error {
	if err := c.rdb.Del(ctx, c.replayKey(tokenID, sig)).Err(); err != nil {
		return fmt.Errorf("redislimit: forget signature of %s: %w", tokenID, err)
	}
	return nil
}

func (c *Client) replayKey(tokenID string, sig [32]byte) string {
	return c.prefix + "replay:" + tokenID + ":" + hex.EncodeToString(sig[:])
}

// Client is the fleet-wide replay memory; policy.ReplayFallback puts this
// replica's own in front of it for when Redis does not answer.
var _ policy.ReplayStore = (*Client)(nil)
