package bench

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/tollgate/tollgate/internal/seal"
)

// FleetConfig sizes a fleet measurement: many replicas on one Postgres,
// for what the fleet costs the database.
type FleetConfig struct {
	Tollgate, AdminURL, WorkDir string
	// Replicas is how many tollgate processes share the database.
	Replicas int
	// Rate is the Checks per second sent, spread evenly over the replicas,
	// with credit-limited tokens (so that credits are reserved).
	Rate float64
	// Load is how long that traffic runs; Idle how long the fleet is
	// watched with no traffic.
	Load, Idle time.Duration
	// Trials is how many tokens are disabled while every replica is
	// polled, for the notification fan-out.
	Trials int
	Log    func(format string, a ...any)
}

// FleetReport is what a fleet costs the database.
type FleetReport struct {
	Replicas int
	// Conns and Listeners are the database's connections, and those of
	// them waiting in LISTEN, with the fleet idle and at the end of the
	// load.
	ConnsIdle, ListenersIdle, ConnsLoaded int
	// TxIdle and TxLoaded are committed transactions per second on the
	// database, idle and under load; Rate is the load actually sent.
	TxIdle, TxLoaded, Rate float64
	Revocation             *Revocation
}

// Fleet starts cfg.Replicas replicas on a fresh database and measures
// their connections, their transactions idle and under credit-limited
// load, and how long a change takes to reach every one of them.
func Fleet(ctx context.Context, cfg FleetConfig) (*FleetReport, error) {
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return nil, err
	}
	b := &bench{cfg: Config{Tollgate: cfg.Tollgate, AdminURL: cfg.AdminURL, WorkDir: cfg.WorkDir, Log: os.Stderr},
		ctx: ctx, dbName: runDatabase("tollgate_fleet"), rep: &Report{}}
	var err error
	if b.dbURL, err = CreateDatabase(ctx, cfg.AdminURL, b.dbName); err != nil {
		return nil, err
	}
	defer DropDatabase(context.Background(), cfg.AdminURL, b.dbName)
	var key []byte
	b.keyB64, key = NewKey()
	if b.box, err = seal.NewBox(key); err != nil {
		return nil, err
	}
	if err := migrate(ctx, cfg.Tollgate, b.dbURL); err != nil {
		return nil, err
	}
	if err := b.grow(generalAt + cfg.Trials); err != nil {
		return nil, err
	}
	admin, err := sql.Open("postgres", cfg.AdminURL)
	if err != nil {
		return nil, err
	}
	defer admin.Close()

	names := make([]string, cfg.Replicas)
	for i := range names {
		names[i] = fmt.Sprintf("replica-%d", i)
	}
	ts, _, stop, err := b.startReplicas(names, 100_000)
	if err != nil {
		return nil, err
	}
	defer stop()
	rep := &FleetReport{Replicas: cfg.Replicas}
	cfg.Log("fleet: %d replicas up; idle for %v", cfg.Replicas, cfg.Idle)
	if rep.TxIdle, err = commitsPerSecond(ctx, admin, b.dbName, func() error { time.Sleep(cfg.Idle); return nil }); err != nil {
		return nil, err
	}
	if rep.ConnsIdle, rep.ListenersIdle, err = connections(ctx, admin, b.dbName); err != nil {
		return nil, err
	}

	cfg.Log("fleet: %.0f Checks/s with credit-limited tokens for %v", cfg.Rate, cfg.Load)
	mix := NewMix(b.pool(hotEnd, creditsEnd, classCredits), unknownValues(64), malformedValues(64))
	var sent int64
	rep.TxLoaded, err = commitsPerSecond(ctx, admin, b.dbName, func() error {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var first error
		for i, t := range ts {
			wg.Go(func() {
				r, err := OpenLoop(ctx, t, mix, cfg.Rate/float64(len(ts)), cfg.Load, nil, false, uint64(i)<<32)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					first = cmp.Or(first, err)
					return
				}
				sent += int64(r.Requests)
			})
		}
		wg.Wait()
		if first != nil {
			return first
		}
		rep.ConnsLoaded, _, err = connections(ctx, admin, b.dbName)
		return err
	})
	if err != nil {
		return nil, err
	}
	rep.Rate = float64(sent) / cfg.Load.Seconds()

	cfg.Log("fleet: %d revocation trials over %d replicas", cfg.Trials, cfg.Replicas)
	rep.Revocation, err = RunRevocation(ctx, ts, cfg.Tollgate, b.dbURL, b.toks[generalAt:], RevocationTrials{Store: cfg.Trials}, cfg.Log)
	if err != nil {
		return nil, err
	}
	return rep, nil
}

// connections counts the database's connections, and those in LISTEN.
func connections(ctx context.Context, admin *sql.DB, dbName string) (conns, listeners int, err error) {
	err = admin.QueryRowContext(ctx, `SELECT count(*), count(*) FILTER (WHERE query ILIKE 'LISTEN%')
		FROM pg_stat_activity WHERE datname = $1`, dbName).Scan(&conns, &listeners)
	return conns, listeners, err
}

// commitsPerSecond runs run and returns the transactions committed on the
// database per second meanwhile. Postgres publishes its statistics about
// every half second, so a window should be several seconds long.
func commitsPerSecond(ctx context.Context, admin *sql.DB, dbName string, run func() error) (float64, error) {
	read := func() (int64, error) {
		// A fresh snapshot: within a transaction Postgres would repeat the
		// first one.
		if _, err := admin.ExecContext(ctx, `SELECT pg_stat_clear_snapshot()`); err != nil {
			return 0, err
		}
		var n int64
		err := admin.QueryRowContext(ctx, `SELECT xact_commit FROM pg_stat_database WHERE datname = $1`, dbName).Scan(&n)
		return n, err
	}
	before, err := read()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := run(); err != nil {
		return 0, err
	}
	time.Sleep(time.Second) // let the last statistics arrive
	after, err := read()
	if err != nil {
		return 0, err
	}
	return float64(after-before) / (time.Since(start) - time.Second).Seconds(), nil
}

// Markdown renders the report.
func (r *FleetReport) Markdown(command string) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "```sh\n%s\n```\n\n", command)
	fmt.Fprintf(&sb, "| %d replicas on one Postgres | measured |\n|---|---|\n", r.Replicas)
	fmt.Fprintf(&sb, "| connections, idle (of them in `LISTEN`) | %d (%d) |\n", r.ConnsIdle, r.ListenersIdle)
	fmt.Fprintf(&sb, "| connections at the end of the load | %d |\n", r.ConnsLoaded)
	fmt.Fprintf(&sb, "| transactions/s, idle | %.1f |\n", r.TxIdle)
	fmt.Fprintf(&sb, "| transactions/s at %.0f Checks/s of credit-limited tokens | %.1f |\n", r.Rate, r.TxLoaded)
	if rv := r.Revocation; rv != nil {
		fmt.Fprintf(&sb, "| a change reaching every replica, p50 / p99 / max (%d answers) | %v / %v / %v |\n",
			len(rv.Disable), pct(rv.Disable, 50), pct(rv.Disable, 99), pct(rv.Disable, 100))
	}
	return sb.String()
}
