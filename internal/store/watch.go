package store

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/lib/pq"

	"github.com/tollgate/tollgate/internal/policy"
)

// Invalidator is told what changed: the policy cache.
type Invalidator interface {
	Invalidate(h policy.Hash)
	InvalidateAccount(id string)
	InvalidateAll()
}

// WatchConfig tunes a Watcher.
type WatchConfig struct {
	// ListenURL is the Postgres URL for the LISTEN connection. It must be a
	// direct session connection (not a transaction-pooling PgBouncer).
	ListenURL string
	// PollInterval is how often the change log is read to catch anything a
	// notification missed; on SQLite, which has no NOTIFY, it is the only
	// path and should be well under a second.
	PollInterval time.Duration
	// Retention is how long logged changes are kept before pruning.
	Retention time.Duration
	// QueryTimeout bounds each read of the log, so a stalled database
	// cannot hold up notifications, which need no query.
	QueryTimeout time.Duration
}

// Watcher relays policy changes to an Invalidator: at once through
// Postgres notifications, and from the change log on every poll, so a
// notification lost to a dropped connection is caught up on.
type Watcher struct {
	db  *DB
	inv Invalidator
	cfg WatchConfig
	log *slog.Logger

	connected  atomic.Bool
	reconnects atomic.Uint64
	received   atomic.Uint64
	pollErrors atomic.Uint64
	last       int64 // newest change applied from the log; owned by Run
	// applied remembers, by sequence number, the changes of the recent
	// past already applied, so re-reading the log does not evict again.
	applied map[int64]time.Time
	started chan struct{} // closed once start has applied the recent past
}

// recheckWindow is how far back each poll re-reads the Postgres log. A
// sequence number is taken when a change is written, not when it commits,
// so a change can commit after a higher one was already read; the window
// catches it. Re-applying a change only evicts once more.
const recheckWindow = 10 * time.Second

// NewWatcher returns a Watcher; Run starts it.
func (db *DB) NewWatcher(inv Invalidator, cfg WatchConfig, log *slog.Logger) *Watcher {
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 30 * time.Second
	}
	if cfg.Retention <= 0 {
		cfg.Retention = time.Hour
	}
	if cfg.QueryTimeout <= 0 {
		cfg.QueryTimeout = 5 * time.Second
	}
	return &Watcher{db: db, inv: inv, cfg: cfg, log: log, applied: map[int64]time.Time{}, started: make(chan struct{})}
}

// Started is closed once Run has applied the changes logged just before
// it began: a policy cached before then may be evicted once more.
func (w *Watcher) Started() <-chan struct{} { return w.started }

// Connected reports whether notifications are flowing (always false on
// SQLite, which has none).
func (w *Watcher) Connected() bool { return w.connected.Load() }

// Reconnects counts how often the notification connection was re-made.
func (w *Watcher) Reconnects() uint64 { return w.reconnects.Load() }

// Received counts the changes applied, from notifications and the log.
func (w *Watcher) Received() uint64 { return w.received.Load() }

// PollErrors counts failed reads of the change log.
func (w *Watcher) PollErrors() uint64 { return w.pollErrors.Load() }

// Run relays changes until ctx ends. It starts from the newest logged
// change: whatever came before is already in the store the cache reads.
func (w *Watcher) Run(ctx context.Context) {
	if !w.startRetrying(ctx) {
		return
	}
	r := &logReader{w: w, results: make(chan pollResult, 1)}
	notify, stop := w.listen(ctx, r)
	defer stop()
	w.loop(ctx, notify, r)
}

// startRetrying runs start until it succeeds, once a second, and reports
// false if ctx ended first.
func (w *Watcher) startRetrying(ctx context.Context) bool {
	for {
		err := w.start(ctx)
		if err == nil {
			close(w.started)
			return true
		}
		w.log.Warn("watch: reading the change log failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Second):
		}
	}
}

// logReader reads the change log beside the loop: a stalled database can
// hold a query well past its deadline (the driver waits for the server to
// acknowledge the cancel), and notifications, which need no query, must
// still be applied meanwhile. One read runs at a time; the loop alone
// touches the books, with what arrives on results.
type logReader struct {
	w       *Watcher
	results chan pollResult
	busy    bool
}

// read starts a read of the changes after the last applied one, plus those
// of the recent window, unless a read is already running.
func (r *logReader) read(ctx context.Context, window time.Duration) {
	if r.busy {
		return
	}
	r.busy = true
	last := r.w.last
	go func() {
		qctx, cancel := context.WithTimeout(ctx, r.w.cfg.QueryTimeout)
		defer cancel()
		var res pollResult
		res.changes, res.gap, res.err = r.w.db.changesSince(qctx, last, window)
		select {
		case r.results <- res:
		case <-ctx.Done():
		}
	}()
}

// listen subscribes to change notifications on Postgres; SQLite has none
// and relies on the log alone (a nil channel never delivers).
func (w *Watcher) listen(ctx context.Context, r *logReader) (<-chan *pq.Notification, func()) {
	if w.db.dialect != Postgres {
		return nil, func() {}
	}
	l := pq.NewListener(w.cfg.ListenURL, 100*time.Millisecond, 5*time.Second, w.event)
	if err := l.Listen(NotifyChannel); err != nil {
		// The listener retries by itself and re-listens on reconnect.
		w.log.Warn("watch: LISTEN failed; retrying in the background", "err", err)
	}
	// Changes made between reading the log's end and LISTEN taking effect
	// were announced to no one: read them now (only those: what came
	// before is already in what the cache will load).
	r.read(ctx, 0)
	return l.Notify, func() { l.Close() }
}

// loop applies notifications as they come and reads the log every poll
// interval, and at once after the notification connection was re-made.
func (w *Watcher) loop(ctx context.Context, notify <-chan *pq.Notification, r *logReader) {
	tick := time.NewTicker(w.cfg.PollInterval)
	defer tick.Stop()
	prune := time.NewTicker(max(w.cfg.Retention/10, time.Minute))
	defer prune.Stop()
	lastPoll := time.Now()
	poll := func() {
		r.read(ctx, time.Since(lastPoll)+recheckWindow)
		lastPoll = time.Now()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case n := <-notify:
			if n == nil {
				// The connection was re-made: notifications sent while it
				// was down are lost, so read them from the log.
				poll()
				continue
			}
			w.apply(n.Extra)
		case <-tick.C:
			poll()
		case res := <-r.results:
			r.busy = false
			w.applyPoll(res)
		case <-prune.C:
			go w.prune(ctx)
		}
	}
}

func (w *Watcher) prune(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, w.cfg.QueryTimeout)
	defer cancel()
	if err := w.db.pruneChanges(pctx, w.cfg.Retention); err != nil {
		w.log.Warn("watch: pruning the change log failed", "err", err)
	}
}

// start reads where the change log ends and applies the changes of its
// recent window (and any logged since that read) at once. Each poll re-reads the window before its last
// read, to catch a change that committed after a higher one was read, so
// the first poll's window reaches back before this replica started: left
// to that poll, those changes would evict, a poll interval later, the
// tokens loaded since. Applied now, they evict next to nothing and are
// skipped when read again.
func (w *Watcher) start(ctx context.Context) error {
	last, err := w.db.LastChange(ctx)
	if err != nil {
		return err
	}
	recent, _, err := w.db.changesSince(ctx, last, recheckWindow)
	if err != nil {
		return err
	}
	for _, c := range recent {
		w.relay(c)
	}
	w.last = last
	return nil
}

// pollResult is one read of the change log.
type pollResult struct {
	changes []Change
	gap     bool
	err     error
}

// event follows the listener's connection state.
func (w *Watcher) event(ev pq.ListenerEventType, err error) {
	switch ev {
	case pq.ListenerEventConnected:
		w.connected.Store(true)
	case pq.ListenerEventReconnected:
		w.connected.Store(true)
		w.reconnects.Add(1)
		w.log.Info("watch: notification connection re-established")
	case pq.ListenerEventDisconnected:
		w.connected.Store(false)
		w.log.Warn("watch: notification connection lost; cached policies may lag until it returns", "err", err)
	case pq.ListenerEventConnectionAttemptFailed:
		w.connected.Store(false)
	}
}

func (w *Watcher) apply(payload string) {
	c, err := ParseNotification(payload)
	if err != nil {
		w.log.Warn("watch: ignoring a malformed notification", "err", err)
		return
	}
	w.relay(c)
}

func (w *Watcher) relay(c Change) {
	if c.Seq > 0 {
		if _, done := w.applied[c.Seq]; done {
			return
		}
		w.applied[c.Seq] = time.Now()
	}
	w.received.Add(1)
	if c.AccountID != "" {
		w.inv.InvalidateAccount(c.AccountID)
		return
	}
	w.inv.Invalidate(c.Hash)
}

// applyPoll applies a read of the change log: the changes logged after
// the last one applied from the log and, on Postgres, those of the recent
// window, skipping any already applied. If the log was pruned past the
// last change applied, everything cached is dropped: a miss costs a query,
// a missed revocation costs a breach. A failed read is retried at the next
// poll.
func (w *Watcher) applyPoll(r pollResult) {
	if r.err != nil {
		w.pollErrors.Add(1)
		w.log.Warn("watch: reading the change log failed", "err", r.err)
		return
	}
	for seq, at := range w.applied {
		if time.Since(at) > 2*(w.cfg.PollInterval+recheckWindow) {
			delete(w.applied, seq)
		}
	}
	if r.gap {
		w.log.Warn("watch: the change log was pruned past what this replica saw; dropping the whole cache")
		w.inv.InvalidateAll()
	}
	for _, c := range r.changes {
		w.relay(c)
		w.last = max(w.last, c.Seq)
	}
}

// changesSince returns changes after seq, plus (on Postgres) those logged
// in the last window, and whether changes after seq were pruned unseen.
func (db *DB) changesSince(ctx context.Context, seq int64, window time.Duration) ([]Change, bool, error) {
	q := `SELECT seq, change FROM policy_changes WHERE seq > ? ORDER BY seq`
	args := []any{seq}
	if db.dialect == Postgres {
		q = `SELECT seq, change FROM policy_changes
			WHERE seq > ? OR at > clock_timestamp() - make_interval(secs => ?) ORDER BY seq`
		args = append(args, window.Seconds())
	}
	var rows []changeRow
	if err := db.db.SelectContext(ctx, &rows, db.db.Rebind(q), args...); err != nil {
		return nil, false, wrapErr("read changes", err)
	}
	var oldest int64
	if err := db.db.GetContext(ctx, &oldest, `SELECT COALESCE(MIN(seq), 0) FROM policy_changes`); err != nil {
		return nil, false, wrapErr("read changes", err)
	}
	return changesOf(rows), seq > 0 && oldest > seq+1, nil
}

// pruneChanges deletes logged changes older than retention, and token
// values whose grace period after a roll has passed.
func (db *DB) pruneChanges(ctx context.Context, retention time.Duration) error {
	cutoff := db.Now().UTC().Add(-retention)
	// The newest change older than the cutoff stays: the gap check in
	// changesSince compares the oldest logged change with the last one a
	// replica applied, and sequence numbers have holes (a rolled-back
	// write takes one). Were the whole old log gone, a replica that had
	// missed nothing would take the next change after a hole for a gap,
	// and drop its cache.
	q := `DELETE FROM policy_changes WHERE at < ? AND seq < (SELECT MAX(seq) FROM policy_changes WHERE at < ?)`
	arg := any(cutoff)
	if db.dialect == SQLite {
		// The log's default timestamp is SQLite's own text form.
		arg = cutoff.Format("2006-01-02 15:04:05.000")
	}
	if _, err := db.db.ExecContext(ctx, db.db.Rebind(q), arg, arg); err != nil {
		return wrapErr("prune changes", err)
	}
	_, err := db.db.ExecContext(ctx, db.db.Rebind(`DELETE FROM token_keys WHERE expires_at < ?`), db.now())
	return wrapErr("prune expired keys", err)
}
