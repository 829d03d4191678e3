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

// batcher gathers look-ups into batches. A look-up that finds no query
// in flight starts one at once, so a lone miss waits for nothing; those
// arriving while a query is in flight wait for it and then go together in
// the next one. One query is in flight at a time: the batches grow with
// the load instead of the queries multiplying.
type batcher struct {
	store   BatchStore
	timeout func() time.Duration

	mu      sync.Mutex
	queue   []*lookup
	running bool
}

// lookup is one hash's place in a batch; done closes when it is answered.
type lookup struct {
	h Hash
	// ctx carries the asker's values (a trace) to the query, never its
	// cancellation.
	ctx  context.Context
	got  Loaded
	err  error
	done chan struct{}
}

// get looks h up in the next batch. It returns an error wrapping
// ErrNotFound when h has no live key, and the batch's error, if its query
// failed, to every look-up of that batch alone.
func (b *batcher) get(ctx context.Context, h Hash) (*Token, *Account, error) {
	l := &lookup{h: h, ctx: ctx, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, l)
	start := !b.running
	b.running = true
	b.mu.Unlock()
	if start {
		go b.run()
	}
	select {
	case <-l.done:
		return l.got.Token, l.got.Account, l.err
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

// run queries batch after batch until the queue is empty.
func (b *batcher) run() {
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

func (b *batcher) query(batch []*lookup) {
	hs := make([]Hash, len(batch))
	for i, l := range batch {
		hs[i] = l.h
	}
	// The query serves every look-up of the batch, so none of their
	// contexts may cut it short; it has the one look-up's deadline, and
	// the first asker's values, so that a trace shows it under that Check.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(batch[0].ctx), b.timeout())
	found, err := b.store.TokensByHash(ctx, hs)
	cancel()
	for _, l := range batch {
		switch got, ok := found[l.h]; {
		case err != nil:
			l.err = err
		case ok:
			l.got = got
		default:
			l.err = ErrNotFound
		}
		close(l.done)
	}
}
