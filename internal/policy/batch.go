package policy

import (
	"context"
	"sync"
	"time"
)

// Loaded is a token and its account as the store reads them.
type Loaded struct {
	Token   *Token
	Account *Account
}

// BatchStore is a Store that can also look many hashes up in one query.
// The cache then gathers concurrent misses for different tokens into one
// query: a replica warming a million tokens pays a round trip per batch
// rather than per token.
type BatchStore interface {
	Store
	// TokensByHash returns, by hash, the tokens among hs that have a live
	// key; a hash without one is absent. It must honour ctx's deadline.
	TokensByHash(ctx context.Context, hs []Hash) (map[Hash]Loaded, error)
}

// maxBatch bounds the hashes of one query, and so its time and its reply.
const maxBatch = 256

// loader runs the cache's store look-ups, one per key at a time:
// concurrent misses of one key share one look-up, as long as no
// invalidation came between them (see start). With a BatchStore it
// gathers look-ups into batches: a look-up that finds no query in flight
// starts one at once, so a lone miss waits for nothing; those arriving
// while a query is in flight wait for it and then go together in the next
// one. One query is in flight at a time: the batches grow with the load
// instead of the queries multiplying. Without one, each look-up is a
// query of its own.
//
// The askers wait in their own goroutines: with a BatchStore a miss
// costs a look-up and a channel, not a goroutine of its own.
type loader struct {
	store   Store
	batch   BatchStore // nil when the store answers one hash at a time
	timeout func() time.Duration

	mu sync.Mutex
	// pending holds the look-up each key's askers join, until it is
	// answered.
	pending map[Hash]*lookup
	queue   []*lookup
	running bool
}

// lookup is one hash's look-up; done closes when it is answered.
type lookup struct {
	h Hash
	// gen is the cache's invalidation count when the look-up was made.
	gen uint64
	// ctx carries the first asker's values (a trace) to the query, never
	// its cancellation.
	ctx  context.Context
	got  Loaded
	err  error
	done chan struct{}

	// The first asker to see the answer turns it into a policy (and
	// caches it) for every asker: once, p, perr.
	once sync.Once
	p    Policy
	perr error
}

func newLoader(s Store, timeout func() time.Duration) *loader {
	l := &loader{store: s, timeout: timeout, pending: map[Hash]*lookup{}}
	l.batch, _ = s.(BatchStore)
	return l
}

// start returns the look-up that answers h for an asker who read the
// cache's invalidation count gen: the pending one, if it was made at the
// same count, else a new one. A request that arrives after a change (and
// so reads a later count) never joins a look-up made before it, which
// could answer with what the change replaced; one that joins a look-up
// made at its own count arrived before the change was known.
func (b *loader) start(ctx context.Context, h Hash, gen uint64) *lookup {
	b.mu.Lock()
	if l := b.pending[h]; l != nil && l.gen == gen {
		b.mu.Unlock()
		return l
	}
	l := &lookup{h: h, gen: gen, ctx: ctx, done: make(chan struct{})}
	b.pending[h] = l
	if b.batch == nil {
		b.mu.Unlock()
		go b.one(l)
		return l
	}
	b.queue = append(b.queue, l)
	run := !b.running
	b.running = true
	b.mu.Unlock()
	if run {
		go b.run()
	}
	return l
}

// abandon stops later askers from joining l, whose query may be stuck: a
// stalled database may not honour the query's deadline.
func (b *loader) abandon(l *lookup) {
	b.mu.Lock()
	if b.pending[l.h] == l {
		delete(b.pending, l.h)
	}
	b.mu.Unlock()
}

// answer gives l its answer; nobody joins it after.
func (b *loader) answer(l *lookup, got Loaded, err error) {
	b.abandon(l)
	l.got, l.err = got, err
	close(l.done)
}

// one queries a single look-up.
func (b *loader) one(l *lookup) {
	// The query serves every asker waiting on it, so no one asker's
	// cancellation may cut it short.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(l.ctx), b.timeout())
	t, a, err := b.store.TokenByHash(ctx, l.h)
	cancel()
	b.answer(l, Loaded{Token: t, Account: a}, err)
}

// run queries batch after batch until the queue is empty.
func (b *loader) run() {
	for {
		b.mu.Lock()
		n := min(len(b.queue), maxBatch)
		if n == 0 {
			b.running = false
			b.queue = nil // let a burst's backing array go
			b.mu.Unlock()
			return
		}
		batch := b.queue[:n:n]
		b.queue = b.queue[n:]
		b.mu.Unlock()
		b.query(batch)
	}
}

// query answers a batch with one query. A failed query fails its own
// look-ups alone; a hash without a live key is not found.
func (b *loader) query(batch []*lookup) {
	hs := make([]Hash, len(batch))
	for i, l := range batch {
		hs[i] = l.h
	}
	// The query serves every look-up of the batch, so none of their
	// contexts may cut it short; it has the one look-up's deadline, and
	// the first asker's values, so that a trace shows it under that Check.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(batch[0].ctx), b.timeout())
	found, err := b.batch.TokensByHash(ctx, hs)
	cancel()
	for _, l := range batch {
		switch got, ok := found[l.h]; {
		case err != nil:
			b.answer(l, Loaded{}, err)
		case ok:
			b.answer(l, got, nil)
		default:
			b.answer(l, Loaded{}, ErrNotFound)
		}
	}
}
