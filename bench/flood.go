package bench

import (
	"fmt"
	"sync"
	"time"
)

// floodRate is the rate of made-up tokens in the flood stage: the flood
// that drove ~5.8k Postgres queries a second through one replica before
// the membership filter, held at a fixed rate so that it takes the same
// CPU from the replica either way and what differs is the store's work.
const floodRate = 2000

// FloodRow is legitimate cold misses on a fresh replica while, or not
// while, other clients send made-up (well-formed, unknown) tokens.
type FloodRow struct {
	Kind string
	// Legit is the cold misses' run; Flood the flood's, nil without one.
	Legit, Flood *Result
	// Queries is how many token look-ups the replica sent to the store
	// during the legitimate run, Refusals how many made-up tokens the
	// membership filter turned away meanwhile, PGCPU the CPU the
	// database's backends used.
	Queries, Refusals float64
	PGCPU             time.Duration
}

// floodRows measures the cold misses of tokens of the n-token database
// on three fresh replicas: without a flood, with a flood and the
// membership filter off, and with a flood and the filter on.
func (b *bench) floodRows(n int) error {
	pool := b.pool(generalAt, n, classWeb, classWebIP)
	pool = pool[:min(len(pool), 700)]
	legitFor := time.Duration(float64(len(pool)) / b.cfg.ColdRate * float64(time.Second))
	for i, c := range []struct {
		kind   string
		flood  bool
		filter string
	}{
		{"no flood", false, "--membership-filter=true"},
		{"flood, membership filter off", true, "--membership-filter=false"},
		{"flood, membership filter on", true, "--membership-filter=true"},
	} {
		row, err := b.flood(fmt.Sprintf("tollgate-flood-%d", i), c.kind, c.flood, c.filter, n, pool, legitFor)
		if err != nil {
			return err
		}
		b.logf("flood %s: %s; store queries %.0f, filter refusals %.0f", c.kind, row.Legit, row.Queries, row.Refusals)
		b.rep.Flood = append(b.rep.Flood, row)
	}
	return nil
}

// flood runs one row: a fresh replica with the filter flag, the flood (if
// any) started half a second before the legitimate misses and ended after
// them.
func (b *bench) flood(name, kind string, flood bool, filter string, n int, pool []string, legitFor time.Duration) (FloodRow, error) {
	row := FloodRow{Kind: kind}
	p, t, err := b.startTollgate(name, n+n/10, filter)
	if err != nil {
		return row, err
	}
	defer func() {
		t.Close()
		p.Stop(60 * time.Second)
	}()
	var wg sync.WaitGroup
	var floodErr error
	if flood {
		floodFor := legitFor + time.Second
		// Every made-up token is new, so the negative cache never helps.
		made := NewSweep(unknownValues(int(floodRate * floodFor.Seconds())))
		wg.Go(func() {
			row.Flood, floodErr = OpenLoop(b.ctx, t, made, floodRate, floodFor, nil, false, 0)
		})
		time.Sleep(500 * time.Millisecond)
	}
	m0, err := p.Metrics(b.ctx)
	if err != nil {
		return row, err
	}
	row.PGCPU, err = b.pgCPU(func() error {
		var err error
		row.Legit, err = OpenLoop(b.ctx, t, NewSweep(pool), b.cfg.ColdRate, legitFor, p.CPU, true, 0)
		return err
	})
	if err != nil {
		return row, err
	}
	m1, err := p.Metrics(b.ctx)
	if err != nil {
		return row, err
	}
	wg.Wait()
	if floodErr != nil {
		return row, floodErr
	}
	const queries = `tollgate_store_duration_seconds_count{op="token_by_hash"}`
	row.Queries = m1[queries] - m0[queries]
	row.Refusals = m1["tollgate_filter_refusals_total"] - m0["tollgate_filter_refusals_total"]
	return row, nil
}
