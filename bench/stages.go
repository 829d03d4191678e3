package bench

import (
	"database/sql"
	"fmt"
	"time"
)

// firstStage runs everything that needs only a small database: the
// comparisons with the no-op server on the cache-hit mix, credits and
// signatures and rate limits, the cold path (alone and beside a flood of made-up tokens),
// the ghz cross-check and revocation.
func (b *bench) firstStage(n int) error {
	if err := b.restartTollgate(n); err != nil {
		return err
	}
	if b.cfg.OPA != "" {
		if err := b.startOPA(); err != nil {
			return err
		}
	}
	hot := NewMix(b.pool(0, hotEnd, classWeb, classWebIP), b.unknown, b.bad)
	from := time.Since(b.tg.Started)
	for _, rate := range b.loads() {
		p, err := b.compare(fmt.Sprintf("cache-hit mix, %d tokens", hotEnd), hot, rate, b.cfg.Rounds)
		if err != nil {
			return err
		}
		b.rep.Compare = append(b.rep.Compare, p)
	}
	// OPA is compared on this database only: it would hold a larger one
	// as a document in memory, which measures OPA's loading, not Check.
	b.stopOPA()
	b.gc("cache-hit mix (1k tokens)", b.tg, from)
	if b.cfg.Profile {
		if err := b.profile("hot", b.cfg.Phase, func() error {
			_, err := ClosedLoop(b.ctx, b.tgT, hot, Workers(), b.cfg.Phase, 0, b.tg.CPU, true, b.nextBase())
			return err
		}); err != nil {
			return err
		}
	}

	// Credits and signatures, on and off, at the same loads.
	credits := NewMix(b.pool(creditsEnd-100, creditsEnd, classCredits), b.unknown, b.bad)
	var signedToks []Token
	for _, t := range b.toks[creditsEnd:signedEnd] {
		signedToks = append(signedToks, t)
	}
	vals := make([]string, len(signedToks))
	for i, t := range signedToks {
		vals[i] = t.Value
	}
	signed := NewMix(vals, b.unknown, b.bad)
	signed.sign = (&signer{tokens: signedToks}).build
	rated := NewMix(b.pool(signedEnd, ratedEnd, classRated), b.unknown, b.bad)
	for _, rate := range []float64{0, b.cfg.Rates[0]} {
		row := FeatureRow{Rate: rate}
		for _, c := range []struct {
			dst **Result
			src Source
		}{{&row.Plain, hot}, {&row.Credits, credits}, {&row.Signed, signed}, {&row.Rated, rated}} {
			r, err := b.measure(b.tgT, b.tg, c.src, rate, b.cfg.Phase, true)
			if err != nil {
				return err
			}
			*c.dst = r
		}
		b.rep.Features = append(b.rep.Features, row)
	}
	if err := b.redisRows(n, rated); err != nil {
		return err
	}
	if err := b.tlsRows(n, hot); err != nil {
		return err
	}

	// The cold path: tokens never seen, each once, at a moderate rate;
	// then misses of tokens the meter already knows.
	if err := b.cold(n, generalAt, n); err != nil {
		return err
	}
	if err := b.coldMissOnly(n); err != nil {
		return err
	}
	if err := b.floodRows(n); err != nil {
		return err
	}
	// Latency over every token of the database (all cached now).
	if err := b.scale(b.pool(0, n, classWeb, classWebIP), n); err != nil {
		return err
	}
	if b.cfg.Ghz != "" {
		for _, target := range []struct {
			t *Target
			p *Proc
		}{{b.noopT, b.noop}, {b.tgT, b.tg}} {
			g, err := b.ghz(target.t, target.p, hot)
			if err != nil {
				b.rep.Notes = append(b.rep.Notes, "ghz: "+err.Error())
				b.logf("ghz: %v", err)
				break
			}
			b.rep.Ghz = append(b.rep.Ghz, g)
		}
	}
	return b.revocation()
}

// redisRows measures the rate-limited mix on a replica with Redis, at the
// features' loads, and adds it to their rows.
func (b *bench) redisRows(n int, rated Source) error {
	if b.cfg.RedisURL == "" {
		return nil
	}
	p, t, err := b.startTollgate("tollgate-redis", max(500_000, n+n/10), "--redis-url", b.cfg.RedisURL)
	if err != nil {
		return err
	}
	defer func() {
		t.Close()
		p.Stop(60 * time.Second)
	}()
	for i := range b.rep.Features {
		row := &b.rep.Features[i]
		if row.RatedRedis, err = b.measure(t, p, rated, row.Rate, b.cfg.Phase, true); err != nil {
			return err
		}
	}
	return nil
}

// cold sends each token of [from, to) once (at most ColdN of them) at
// ColdRate, none of them cached: every request is a miss to Postgres.
func (b *bench) cold(n, from, to int) error {
	pool := b.pool(from, to, classWeb, classWebIP)
	pool = pool[:min(len(pool), b.cfg.ColdN)]
	return b.coldRun(b.tg, b.tgT, n, pool, "first use")
}

// coldRun sends each token of pool once at ColdRate to the replica p.
func (b *bench) coldRun(p *Proc, t *Target, n int, pool []string, kind string) error {
	m0, err := p.Metrics(b.ctx)
	if err != nil {
		return err
	}
	d := time.Duration(float64(len(pool)) / b.cfg.ColdRate * float64(time.Second))
	var r *Result
	pg, err := b.pgCPU(func() error {
		var err error
		r, err = OpenLoop(b.ctx, t, NewSweep(pool), b.cfg.ColdRate, d, p.CPU, true, 0)
		return err
	})
	if err != nil {
		return err
	}
	r.Load = fmt.Sprintf("cold (%s), %.0f rps", kind, b.cfg.ColdRate)
	m1, err := p.Metrics(b.ctx)
	if err != nil {
		return err
	}
	misses := m1["tollgate_cache_misses_total"] - m0["tollgate_cache_misses_total"]
	b.logf("%s (cache misses %.0f)", r, misses)
	b.rep.Cold = append(b.rep.Cold, ColdRow{Tokens: n, Kind: kind, Res: r, Misses: int(misses), PGCPU: pg})
	return nil
}

// coldMissOnly measures cache misses alone: a replica whose cache holds
// 100 policies is sent 700 tokens in turn, twice; the second round misses
// the cache again, but the meter already knows every token (it forgets
// them after 20 s idle), so each miss is just the token's query.
func (b *bench) coldMissOnly(n int) error {
	p, t, err := b.startTollgate("tollgate-small-cache", 100)
	if err != nil {
		return err
	}
	defer func() {
		t.Close()
		p.Stop(60 * time.Second)
	}()
	pool := b.pool(generalAt, n, classWeb, classWebIP)
	pool = pool[:min(len(pool), 700)]
	d := time.Duration(float64(len(pool)) / b.cfg.ColdRate * float64(time.Second))
	if _, err := OpenLoop(b.ctx, t, NewSweep(pool), b.cfg.ColdRate, d, nil, true, 0); err != nil {
		return err
	}
	return b.coldRun(p, t, n, pool, "cache miss only, --cache-size 100")
}

// scale measures latency at the first fixed rate over the cached tokens
// of pool, uniformly, in a database of n tokens: the cache's size at work.
func (b *bench) scale(pool []string, n int) error {
	r, err := b.measure(b.tgT, b.tg, NewMix(pool, b.unknown, b.bad), b.cfg.Rates[0], b.cfg.Phase, true)
	if err != nil {
		return err
	}
	r.Load = fmt.Sprintf("%.0f rps over %d", b.cfg.Rates[0], len(pool))
	b.rep.Scale = append(b.rep.Scale, ScaleRow{Tokens: n, Cached: len(pool), Res: r})
	return nil
}

// largeTTL is the cache TTL of the replica that warms a large database.
const largeTTL = 2 * time.Hour

// largeStage measures a database of n tokens with a fresh replica: the
// cold path, then warming every token into the cache, stopping at each
// checkpoint (and at n) to measure memory per cached token and latency
// over every cached token; on the last stage, the comparisons with the
// no-op server again.
func (b *bench) largeStage(n int, last bool) error {
	// Warming a large database takes longer than the default cache TTL
	// (5 minutes): keep what was warmed, so that what follows measures a
	// cache holding every token. Notifications still evict changes.
	if err := b.restartTollgate(n, "--cache-ttl", largeTTL.String(), "--max-staleness", largeTTL.String()); err != nil {
		return err
	}
	hot := NewMix(b.pool(0, hotEnd, classWeb, classWebIP), b.unknown, b.bad)
	if _, err := ClosedLoop(b.ctx, b.tgT, hot, Workers(), b.cfg.Warm, 0, b.tg.CPU, false, b.nextBase()); err != nil {
		return err
	}
	before, err := b.memSample(0)
	if err != nil {
		return err
	}
	prev := b.rep.Cold[len(b.rep.Cold)-1].Tokens
	if err := b.cold(n, prev, n); err != nil {
		return err
	}
	// Warm every plain token once, as fast as it goes, in segments.
	pool := b.pool(0, n, classWeb, classWebIP)
	var stops []int
	for _, c := range b.cfg.Checkpoints {
		if c < n {
			stops = append(stops, len(b.pool(0, c, classWeb, classWebIP)))
		}
	}
	stops = append(stops, len(pool))
	done := 0
	for _, stop := range stops {
		from := time.Since(b.tg.Started)
		start := time.Now()
		var w *Result
		pg, err := b.pgCPU(func() error {
			var err error
			w, err = ClosedLoop(b.ctx, b.tgT, NewSweep(pool), Workers(), 2*time.Hour, stop-done, b.tg.CPU, true, uint64(done))
			return err
		})
		if err != nil {
			return err
		}
		w.Load = fmt.Sprintf("warm %d→%d", done, stop)
		b.logf("%s", w)
		b.rep.Warm = append(b.rep.Warm, WarmRow{Tokens: n, From: done, To: stop, Res: w, Took: time.Since(start), PGCPU: pg})
		b.gc(fmt.Sprintf("warming %d→%d of %d tokens", done, stop, n), b.tg, from)
		done = stop

		from = time.Since(b.tg.Started)
		if err := b.profile(fmt.Sprintf("uniform-%d", stop), b.cfg.Phase+b.cfg.Warm, func() error { return b.scale(pool[:stop], n) }); err != nil {
			return err
		}
		b.gc(fmt.Sprintf("%.0f rps over %d cached", b.cfg.Rates[0], stop), b.tg, from)
		after, err := b.memSample(stop)
		if err != nil {
			return err
		}
		b.rep.Memory = append(b.rep.Memory, MemRow{Tokens: n, Before: before, After: after})
		b.logf("memory with %d cached: RSS %d → %d MiB, heap in use %d → %d MiB, live %d → %d MB, %d entries", stop,
			before.RSS>>20, after.RSS>>20, before.HeapInuse>>20, after.HeapInuse>>20, before.LiveMB, after.LiveMB, after.Entries)
	}
	if !last {
		return nil
	}
	mix := NewMix(pool, b.unknown, b.bad)
	from := time.Since(b.tg.Started)
	for _, c := range []struct {
		label string
		src   Source
		rates []float64
	}{
		{fmt.Sprintf("cache-hit mix (%d tokens) with %d cached", hotEnd, len(pool)), hot, []float64{0, b.cfg.Rates[0]}},
		{fmt.Sprintf("uniform over all %d cached", len(pool)), mix, []float64{0, b.cfg.Rates[0]}},
	} {
		for _, rate := range c.rates {
			p, err := b.compare(c.label, c.src, rate, 1)
			if err != nil {
				return err
			}
			b.rep.CompareLarge = append(b.rep.CompareLarge, p)
		}
	}
	b.gc(fmt.Sprintf("comparisons with %d cached", len(pool)), b.tg, from)
	return nil
}

// memSample reads the replica's memory.
func (b *bench) memSample(want int) (MemSample, error) {
	var s MemSample
	var err error
	if s.RSS, err = b.tg.RSS(); err != nil {
		return s, err
	}
	m, err := b.tg.Metrics(b.ctx)
	if err != nil {
		return s, err
	}
	s.HeapInuse = int64(m["go_memstats_heap_inuse_bytes"])
	s.Entries = int(m["tollgate_cache_entries"])
	if cycles, err := readGCTrace(b.tg.LogPath); err == nil && len(cycles) > 0 {
		s.LiveMB = cycles[len(cycles)-1].Live
	}
	if want > 0 && s.Entries < want {
		b.rep.Notes = append(b.rep.Notes, fmt.Sprintf("only %d of %d tokens cached at the memory sample", s.Entries, want))
	}
	return s, nil
}

// gc records the GC cycles of p since from.
func (b *bench) gc(phase string, p *Proc, from time.Duration) {
	cycles, err := readGCTrace(p.LogPath)
	if err != nil {
		b.logf("gctrace: %v", err)
		return
	}
	s := summarizeGC(phase, cycles, from, time.Since(p.Started))
	b.rep.GC = append(b.rep.GC, s)
	b.logf("gc %s: %d cycles, mark p50 %v max %v, STW max %v, live %d–%d MB", phase, s.Cycles, s.MarkP50, s.MarkMax, s.STWMax, s.LiveMin, s.LiveMax)
}

// revocation starts three replicas on the database and measures how long
// a disabled token takes to be denied by each.
func (b *bench) revocation() error {
	b.logf("revocation: starting 3 replicas")
	ts, ps, stop, err := b.startReplicas([]string{"replica-a", "replica-b", "replica-c"}, 500_000)
	if err != nil {
		return err
	}
	defer stop()
	var toks []Token
	for _, t := range b.toks[generalAt:] {
		if t.Class == classWeb || t.Class == classWebIP {
			toks = append(toks, t)
		}
	}
	trials := RevocationTrials{Store: b.cfg.RevocationTrials, CLI: b.cfg.CLITrials, API: b.cfg.APITrials, APIURL: "http://" + ps[0].HTTPAddr}
	rev, err := RunRevocation(b.ctx, ts, b.cfg.Tollgate, b.dbURL, toks, trials, b.logf)
	if err != nil {
		return err
	}
	b.rep.Revocation = rev
	b.logf("revocation: disable p50 %v p99 %v max %v over %d answers; CLI p50 %v; API p50 %v p99 %v; failed %d",
		pct(rev.Disable, 50), pct(rev.Disable, 99), pct(rev.Disable, 100), len(rev.Disable), pct(rev.CLI, 50), pct(rev.API, 50), pct(rev.API, 99), rev.Failed)
	return nil
}

// pgCPU runs run and returns the CPU time the benchmark database's
// Postgres backends used meanwhile.
func (b *bench) pgCPU(run func() error) (time.Duration, error) {
	db, err := sql.Open("postgres", b.cfg.AdminURL)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	before, err := snapshotPostgres(b.ctx, db, b.dbName)
	if err != nil {
		return 0, err
	}
	if err := run(); err != nil {
		return 0, err
	}
	after, err := snapshotPostgres(b.ctx, db, b.dbName)
	if err != nil {
		return 0, err
	}
	return after.since(before), nil
}
