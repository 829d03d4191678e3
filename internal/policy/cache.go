package policy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Store is what the cache needs from storage: one round trip per miss.
type Store interface {
	// TokenByHash returns the token whose live key has hash h, and its
	// account. It returns an error wrapping ErrNotFound when no live key
	// has that hash, and must honour ctx's deadline.
	TokenByHash(ctx context.Context, h Hash) (*Token, *Account, error)
}

// CacheConfig are the cache's tunables. Every one can change at run time
// (see Cache.Configure).
type CacheConfig struct {
	// Size bounds the cached token policies.
	Size int
	// TTL is how long a cached policy is used before it is read again.
	// Notifications evict changed tokens at once; the TTL bounds the damage
	// of one that was lost.
	TTL time.Duration
	// NegativeSize bounds the remembered unknown tokens.
	NegativeSize int
	// NegativeTTL is how long an unknown token is remembered as unknown, so
	// that guessing does not hammer the database.
	NegativeTTL time.Duration
	// MaxStaleness is how old a cached policy may grow while the store
	// cannot be reached before it stops being used.
	MaxStaleness time.Duration
	// StoreTimeout bounds one look-up.
	StoreTimeout time.Duration
	// FilterMissLookups is how many tokens per second that the membership
	// filter rules out are still looked up in the store, in case they were
	// created too recently for this replica to have heard of them. Past
	// it, they are refused without a query; 0 refuses every one.
	FilterMissLookups int
}

// Validate reports the first unusable setting.
func (c CacheConfig) Validate() error {
	switch {
	case c.Size < 1:
		return errors.New("the cache must hold at least 1 policy")
	case c.NegativeSize < 1:
		return errors.New("the negative cache must hold at least 1 token")
	case c.TTL <= 0:
		return errors.New("the cache TTL must be > 0")
	case c.NegativeTTL <= 0:
		return errors.New("the negative cache TTL must be > 0")
	case c.MaxStaleness < c.TTL:
		return errors.New("the longest staleness must be at least the cache TTL")
	case c.StoreTimeout <= 0:
		return errors.New("the store timeout must be > 0")
	case c.FilterMissLookups < 0:
		return errors.New("the look-ups a second past the membership filter must be >= 0")
	}
	return nil
}

// Cache holds compiled policies by token hash in an LRU, with a TTL, a
// separate negative cache for unknown tokens, one store query per key at a
// time and concurrent misses for different keys batched into one query
// (BatchStore; see loader), and eviction on notification. When the store fails,
// it keeps serving what it has, up to MaxStaleness old. Once a membership
// filter is loaded (LoadFilter), a token it rules out is refused without a
// query.
type Cache struct {
	open     Opener
	now      func() time.Time
	cfg      atomic.Pointer[CacheConfig]
	entries  *table
	negative *lru.Cache[Hash, int64]
	// loads runs the store look-ups, one per key at a time.
	loads *loader

	// gen counts invalidations. A load that sees it move while it queried
	// may hold data older than the change, so it is not cached; a request
	// that reads a later count than a load in flight does not join it
	// (loader.start), so a request arriving after a change never joins a
	// query that began before it, which would answer with what the change
	// replaced.
	gen atomic.Uint64

	// filter is the membership filter in force, nil before the first load
	// and after changes were lost; building is the one being loaded. Both
	// receive every announced key. filterGen counts the times changes were
	// lost, so that a load that overlapped one is not put in force;
	// filterMu orders that check against the loss.
	filter, building atomic.Pointer[Membership]
	filterGen        atomic.Uint64
	filterMu         sync.Mutex
	rebuild          chan struct{}
	missLookups      allowance

	stats struct {
		hits, misses, negativeHits, evictions, staleServed atomic.Uint64
		loadErrors, invalidations                          atomic.Uint64
		filterRefusals, filterLookups                      atomic.Uint64
	}
}

// NewCache returns an empty cache over store. open reads the signing
// secrets of tokens that require signed requests; it may be nil when the
// operator has set no encryption key, and such tokens then fail to load.
func NewCache(store Store, cfg CacheConfig, now func() time.Time, open Opener) (*Cache, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	negative, err := lru.New[Hash, int64](cfg.NegativeSize)
	if err != nil {
		return nil, err
	}
	c := &Cache{open: open, now: now, entries: newTable(cfg.Size), negative: negative,
		rebuild: make(chan struct{}, 1)}
	c.cfg.Store(&cfg)
	c.loads = newLoader(store, func() time.Duration { return c.cfg.Load().StoreTimeout })
	return c, nil
}

// Configure applies new tunables to a running cache. Shrinking evicts the
// least recently used entries.
func (c *Cache) Configure(cfg CacheConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	c.entries.resize(cfg.Size)
	c.negative.Resize(cfg.NegativeSize)
	c.cfg.Store(&cfg)
	return nil
}

// Config returns the tunables in effect.
func (c *Cache) Config() CacheConfig { return *c.cfg.Load() }

// Get returns the policy of the token whose value hashes to h. It returns
// an error wrapping ErrNotFound for an unknown token (or one the membership
// filter rules out), and another error only when the store failed and
// nothing usable was cached.
func (c *Cache) Get(ctx context.Context, h Hash) (Policy, error) {
	p, _, err := c.get(ctx, h)
	return p, err
}

// get is Get, also reporting whether the store was asked (a miss).
func (c *Cache) get(ctx context.Context, h Hash) (Policy, bool, error) {
	cfg := c.cfg.Load()
	now := c.now().UnixNano()
	cachedPolicy, loaded, stale, cached := c.entries.get(h)
	if cached && !stale && now-loaded < int64(cfg.TTL) {
		c.stats.hits.Add(1)
		return cachedPolicy, false, nil
	}
	ruledOut := false
	if !cached {
		ruledOut = c.ruledOut(h)
		if at, ok := c.negative.Get(h); ok && now-at < int64(cfg.NegativeTTL) {
			c.stats.negativeHits.Add(1)
			return Policy{}, false, ErrNotFound
		}
		if ruledOut {
			if !c.missLookups.take(now, cfg.FilterMissLookups) {
				c.stats.filterRefusals.Add(1)
				return Policy{}, false, ErrNotFound
			}
			c.stats.filterLookups.Add(1)
		}
	}
	c.stats.misses.Add(1)
	p, err := c.load(ctx, h, cfg)
	if err == nil || errors.Is(err, ErrNotFound) {
		return p, true, err
	}
	c.stats.loadErrors.Add(1)
	if ruledOut {
		// The filter's word stands: a deny, not an error that Envoy's
		// failure_mode_allow could turn into an allow for a made-up
		// token while the store is down.
		c.stats.filterRefusals.Add(1)
		return Policy{}, true, ErrNotFound
	}
	// The store failed: a policy that merely outlived its TTL is still the
	// best answer, up to the staleness bound. One known to have changed is
	// not.
	if cached && !stale && now-loaded < int64(cfg.MaxStaleness) {
		c.stats.staleServed.Add(1)
		return cachedPolicy, true, nil
	}
	return Policy{}, true, err
}

// load reads a policy from the store, once for all concurrent callers.
func (c *Cache) load(ctx context.Context, h Hash, cfg *CacheConfig) (Policy, error) {
	l := c.loads.start(ctx, h, c.gen.Load())
	// A stalled database may not honour the query's deadline (the driver
	// waits for the server to acknowledge the cancel), so stop waiting at
	// the deadline regardless, and let the next caller start a new query
	// rather than join the stuck one.
	timer := time.NewTimer(cfg.StoreTimeout)
	defer timer.Stop()
	select {
	case <-l.done:
		l.once.Do(func() { l.p, l.perr = c.settle(l) })
		return l.p, l.perr
	case <-timer.C:
		c.loads.abandon(l)
		return Policy{}, &Error{Code: EUnavailable, Message: "token look-up timed out after " + cfg.StoreTimeout.String()}
	case <-ctx.Done():
		return Policy{}, &Error{Code: EUnavailable, Message: "token look-up abandoned", Err: ctx.Err()}
	}
}

// settle turns an answered look-up into its policy, and caches what it
// learnt unless an invalidation came after the look-up was made.
func (c *Cache) settle(l *lookup) (Policy, error) {
	now := c.now().UnixNano()
	if errors.Is(l.err, ErrNotFound) {
		if c.gen.Load() == l.gen {
			c.negative.Add(l.h, now)
			c.entries.remove(l.h)
		}
		return Policy{}, l.err
	}
	if l.err != nil {
		return Policy{}, fmt.Errorf("load token policy: %w", l.err)
	}
	t, a := l.got.Token, l.got.Account
	p, err := Compile(t, a, c.open)
	if err != nil {
		return Policy{}, &Error{Code: EInternal, Message: "compile token policy: " + err.Error(), Err: err}
	}
	var key string
	if p.rules != nil {
		key = rulesKey(t)
	}
	if c.gen.Load() == l.gen {
		if c.entries.add(l.h, p, key, now) {
			c.stats.evictions.Add(1)
		}
		c.negative.Remove(l.h)
	}
	return p, nil
}

// Invalidate forgets the token key with hash h, known or unknown, and
// adds it to the membership filter: it may be a key just created.
func (c *Cache) Invalidate(h Hash) {
	c.addKey(h)
	c.gen.Add(1)
	c.stats.invalidations.Add(1)
	c.entries.remove(h)
	c.negative.Remove(h)
}

// InvalidateAccount forgets every cached policy of an account.
func (c *Cache) InvalidateAccount(id string) {
	c.gen.Add(1)
	c.stats.invalidations.Add(1)
	c.entries.staleAccount(id)
}

// InvalidateAll forgets everything: for when changes may have been missed.
// The membership filter, which may lack keys created meanwhile, stops
// being used until it is loaded again (FilterWanted).
func (c *Cache) InvalidateAll() {
	c.dropFilter()
	c.gen.Add(1)
	c.stats.invalidations.Add(1)
	c.entries.purge()
	c.negative.Purge()
}

// CacheStats are counters since the cache was made, and its current size.
type CacheStats struct {
	Hits, Misses, NegativeHits, Evictions, StaleServed, LoadErrors, Invalidations uint64
	Entries, NegativeEntries                                                      int
	// FilterRefusals counts unknown tokens refused on the membership
	// filter's word: without a query, or when the query failed;
	// FilterLookups those it ruled out and that were looked up all the
	// same (see CacheConfig.FilterMissLookups).
	FilterRefusals, FilterLookups uint64
	// FilterLoaded reports whether a membership filter is in force, and
	// FilterEntries and FilterBytes its keys and size.
	FilterLoaded               bool
	FilterEntries, FilterBytes int
}

// Stats returns the cache's counters.
func (c *Cache) Stats() CacheStats {
	s := CacheStats{
		Hits: c.stats.hits.Load(), Misses: c.stats.misses.Load(), NegativeHits: c.stats.negativeHits.Load(),
		Evictions: c.stats.evictions.Load(), StaleServed: c.stats.staleServed.Load(),
		LoadErrors: c.stats.loadErrors.Load(), Invalidations: c.stats.invalidations.Load(),
		Entries: c.entries.len(), NegativeEntries: c.negative.Len(),
		FilterRefusals: c.stats.filterRefusals.Load(), FilterLookups: c.stats.filterLookups.Load(),
	}
	if f := c.filter.Load(); f != nil {
		s.FilterLoaded, s.FilterEntries, s.FilterBytes = true, f.Len(), f.Bytes()
	}
	return s
}
