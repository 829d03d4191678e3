// Package bench is Tollgate's load benchmark and soak test: it seeds a
// Postgres database with 1,000 to 1,000,000 tokens, starts the real
// "tollgate serve" and the no-op ext_authz server (cmd/noopauthz) as
// separate processes, drives Check with requests shaped as Envoy sends
// them, and reports throughput, latency, server CPU time per request
// (from /proc), memory per cached token, the cold path, the cost of
// credits and signatures, revocation across replicas and GC behaviour.
// cmd/tollgate-bench runs it; "make bench" and "make soak" run that.
package bench

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	_ "github.com/lib/pq" // COPY for seeding

	"github.com/tollgate/tollgate/internal/seal"
)

// Config is one benchmark run.
type Config struct {
	// Tollgate and Noop are the server binaries.
	Tollgate, Noop string
	// OPA is the bench/opa binary, to compare with OPA evaluating the
	// same token check; "" leaves OPA out.
	OPA string
	// RedisURL is a Redis for the rate-limit row with fleet-wide limits;
	// "" leaves the row out.
	RedisURL string
	// Ghz is the ghz binary for a cross-check of the closed-loop figures;
	// "" skips it.
	Ghz string
	// AdminURL is a Postgres URL whose user may create databases.
	AdminURL string
	// WorkDir receives the servers' logs.
	WorkDir string
	// Sizes are the database sizes, ascending; the first is where the
	// comparisons with the no-op server run.
	Sizes []int
	// Checkpoints are cache sizes at which warming a larger database
	// stops to measure memory and latency.
	Checkpoints []int
	// Phase is each measured run's length; Warm the unmeasured run before it.
	Phase, Warm time.Duration
	// Rates are the fixed rates (requests per second) of the open-loop runs.
	Rates []float64
	// Rounds is how many times each comparison alternates between the
	// no-op server and Tollgate (on the first database size; the last
	// size's comparisons run once).
	Rounds int
	// ColdRate is the rate of the cold-path runs, ColdN their length.
	ColdRate float64
	ColdN    int
	// RevocationTrials, CLITrials and APITrials are the revocation trials
	// through the store, the tollgate command and the Tokens API.
	RevocationTrials, CLITrials, APITrials int
	// KeepDB keeps the benchmark database afterwards.
	KeepDB bool
	// Profile captures pprof profiles of the replica: Tollgate must then
	// be bench/profserve (tollgate with pprof at PPROF_ADDR).
	Profile bool
	// TollgateEnv is added to every replica's environment (e.g. GOGC=400),
	// to measure a tuning.
	TollgateEnv []string
	Log         io.Writer
}

// Quick returns a configuration for a smoke test of the harness: a
// thousand tokens and short runs.
func Quick(c Config) Config {
	c.Sizes = []int{1000}
	c.Phase, c.Warm = 3*time.Second, time.Second
	c.Rounds = 1
	c.ColdN = 500
	c.RevocationTrials, c.CLITrials, c.APITrials = 20, 2, 5
	return c
}

// Full returns the configuration of "make bench".
func Full(c Config) Config {
	c.Sizes = []int{1000, 1_000_000}
	c.Checkpoints = []int{100_000}
	c.Phase, c.Warm = 10*time.Second, 2*time.Second
	c.Rounds = 3
	c.ColdN = 3000
	c.RevocationTrials, c.CLITrials, c.APITrials = 150, 10, 50
	return c
}

// bench is the state of one run.
type bench struct {
	cfg     Config
	ctx     context.Context
	dbName  string
	dbURL   string
	keyB64  string
	box     *seal.Box
	toks    []Token
	unknown []string
	bad     []string
	noop    *Proc
	noopT   *Target
	opa     *Proc
	opaT    *Target
	tg      *Proc
	tgT     *Target
	tgN     int // which tollgate process this is, for its log's name
	rep     *Report
	base    uint64 // the next run's first request index
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.cfg.Log, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

// nextBase returns a fresh range of request indexes, so that no two runs
// send the same signed request.
func (b *bench) nextBase() uint64 {
	b.base += 1 << 32
	return b.base
}

// Run runs the benchmark and returns its report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return nil, err
	}
	b := &bench{cfg: cfg, ctx: ctx, dbName: runDatabase("tollgate_bench"), rep: &Report{Started: time.Now(), Config: cfg}}
	var err error
	if b.rep.Machine, err = machineInfo(ctx, cfg.AdminURL); err != nil {
		return nil, err
	}
	// The servers stop before their database goes.
	defer func() {
		b.stopAll()
		if !cfg.KeepDB {
			DropDatabase(context.Background(), cfg.AdminURL, b.dbName)
		}
	}()
	if err := b.setup(); err != nil {
		return nil, err
	}
	for i, n := range cfg.Sizes {
		if err := b.grow(n); err != nil {
			return nil, err
		}
		if i == 0 {
			if err := b.firstStage(n); err != nil {
				return nil, err
			}
			continue
		}
		if err := b.largeStage(n, i == len(cfg.Sizes)-1); err != nil {
			return nil, err
		}
	}
	b.rep.Took = time.Since(b.rep.Started)
	return b.rep, nil
}

func (b *bench) setup() error {
	var err error
	b.logf("creating database %s", b.dbName)
	if b.dbURL, err = CreateDatabase(b.ctx, b.cfg.AdminURL, b.dbName); err != nil {
		return err
	}
	if err := migrate(b.ctx, b.cfg.Tollgate, b.dbURL); err != nil {
		return err
	}
	var key []byte
	b.keyB64, key = NewKey()
	if b.box, err = seal.NewBox(key); err != nil {
		return err
	}
	b.unknown, b.bad = unknownValues(64), malformedValues(64)
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	if b.noop, err = StartProc("noop", b.cfg.Noop, []string{"--grpc-addr", addr}, nil, filepath.Join(b.cfg.WorkDir, "noop.log")); err != nil {
		return err
	}
	b.noop.GRPCAddr = addr
	if err := b.noop.waitReady(10 * time.Second); err != nil {
		return err
	}
	b.noopT, err = Dial("no-op", addr, 2)
	return err
}

// grow seeds the database up to n tokens.
func (b *bench) grow(n int) error {
	from := len(b.toks)
	if n <= from {
		return nil
	}
	start := time.Now()
	toks, sealed := NewTokens(from, n, b.box)
	db, err := sql.Open("postgres", b.dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := Seed(b.ctx, db, toks, sealed); err != nil {
		return err
	}
	b.toks = append(b.toks, toks...)
	b.logf("seeded %d tokens (now %d) in %v", n-from, n, time.Since(start).Round(time.Millisecond))
	b.rep.Seeding = append(b.rep.Seeding, SeedRow{Tokens: n, Took: time.Since(start)})
	return nil
}

// tollgateArgs are the flags every benchmarked replica runs with: the
// defaults, but for one trusted proxy in front of Envoy and a cache big
// enough for the database.
func (b *bench) tollgateArgs(cacheSize int) []string {
	return []string{"--log-format", "json", "--xff-trusted-hops", "1", "--cache-size", strconv.Itoa(cacheSize)}
}

func (b *bench) tollgateEnv() []string {
	return append([]string{"TOLLGATE_DATABASE_URL=" + b.dbURL, "TOLLGATE_ENCRYPTION_KEY=" + b.keyB64, "GODEBUG=gctrace=1"}, b.cfg.TollgateEnv...)
}

// profile saves the replica's CPU profile over run as name.cpu.prof and
// its heap profile after it as name.heap.prof, when profiling is on.
func (b *bench) profile(name string, d time.Duration, run func() error) error {
	if !b.cfg.Profile || b.tg.PprofAddr == "" {
		return run()
	}
	got := make(chan error, 1)
	go func() {
		got <- fetch(b.ctx, "http://"+b.tg.PprofAddr+"/debug/pprof/profile?seconds="+strconv.Itoa(max(1, int(d.Seconds()))),
			filepath.Join(b.cfg.WorkDir, name+".cpu.prof"))
	}()
	err := run()
	if perr := <-got; perr != nil {
		b.logf("profile %s: %v", name, perr)
	}
	if herr := fetch(b.ctx, "http://"+b.tg.PprofAddr+"/debug/pprof/heap", filepath.Join(b.cfg.WorkDir, name+".heap.prof")); herr != nil {
		b.logf("heap profile %s: %v", name, herr)
	}
	b.logf("profiles of %s in %s", name, b.cfg.WorkDir)
	return err
}

// fetch saves the body of url at path.
func fetch(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// startTollgate starts a replica; name labels its log, extra are flags
// beyond tollgateArgs.
func (b *bench) startTollgate(name string, cacheSize int, extra ...string) (*Proc, *Target, error) {
	env := b.tollgateEnv()
	var pp string
	if b.cfg.Profile {
		var err error
		if pp, err = freeAddr(); err != nil {
			return nil, nil, err
		}
		env = append(env, "PPROF_ADDR="+pp)
	}
	p, err := startServe(name, b.cfg.Tollgate, append(b.tollgateArgs(cacheSize), extra...), env, filepath.Join(b.cfg.WorkDir, name+".log"))
	if err != nil {
		return nil, nil, err
	}
	p.PprofAddr = pp
	if err := p.WaitMetric(b.ctx, "tollgate_listener_connected", 10*time.Second, func(v float64) bool { return v == 1 }); err != nil {
		p.Stop(5 * time.Second)
		return nil, nil, err
	}
	// A replica reads every token key into its membership filter after it
	// starts (4.4 s for a million keys here): Postgres work that measured
	// cold misses would share. Every phase measures a replica past it.
	if !slices.Contains(extra, "--membership-filter=false") {
		if err := p.WaitMetric(b.ctx, "tollgate_filter_loaded", 2*time.Minute, func(v float64) bool { return v == 1 }); err != nil {
			p.Stop(5 * time.Second)
			return nil, nil, err
		}
	}
	t, err := Dial("tollgate", p.GRPCAddr, 2)
	if err != nil {
		p.Stop(5 * time.Second)
		return nil, nil, err
	}
	return p, t, nil
}

// startReplicas starts a replica per name, each with a cache of cacheSize,
// and returns their clients and a stop that closes and stops them all
// (also those started before an error).
func (b *bench) startReplicas(names []string, cacheSize int) ([]*Target, []*Proc, func(), error) {
	var ts []*Target
	var ps []*Proc
	stop := func() {
		for _, t := range ts {
			t.Close()
		}
		for _, p := range ps {
			p.Stop(10 * time.Second)
		}
	}
	for _, name := range names {
		p, t, err := b.startTollgate(name, cacheSize)
		if err != nil {
			stop()
			return nil, nil, nil, err
		}
		t.Name = name
		ps, ts = append(ps, p), append(ts, t)
	}
	return ts, ps, stop, nil
}

// restartTollgate replaces the benchmarked replica with a fresh one (an
// empty cache) sized for n tokens, with extra flags.
func (b *bench) restartTollgate(n int, extra ...string) error {
	b.stopTollgate()
	b.tgN++
	var err error
	b.tg, b.tgT, err = b.startTollgate(fmt.Sprintf("tollgate-%d", b.tgN), max(500_000, n+n/10), extra...)
	return err
}

func (b *bench) stopTollgate() {
	if b.tgT != nil {
		b.tgT.Close()
		b.tgT = nil
	}
	if b.tg != nil {
		start := time.Now()
		err := b.tg.Stop(60 * time.Second)
		took := time.Since(start)
		b.rep.Shutdowns = append(b.rep.Shutdowns, Shutdown{Name: b.tg.Name, Took: took, Killed: err != nil})
		b.logf("stopped %s in %v (%v)", b.tg.Name, took.Round(time.Millisecond), err)
		b.tg = nil
	}
}

func (b *bench) stopAll() {
	b.stopTollgate()
	b.stopOPA()
	if b.noopT != nil {
		b.noopT.Close()
	}
	if b.noop != nil {
		b.noop.Stop(10 * time.Second)
	}
}

// pools returns the values of tokens [from, to) of classes that a plain
// request is allowed with.
func (b *bench) pool(from, to int, classes ...class) []string {
	var out []string
	for _, t := range b.toks[from:min(to, len(b.toks))] {
		for _, c := range classes {
			if t.Class == c {
				out = append(out, t.Value)
				break
			}
		}
	}
	return out
}

// quiet waits until the benchmarked replica's background work after a
// run is done, so that it does not fall on the next run, whichever server
// that measures: the meter's flushes writing what the run spent, and the
// books of the tokens it left idle being dropped (20 s after their last
// use). Done means a whole flush interval, from one flush's end to the
// next one's, in which the replica used at most idleShare of a core; the
// first such interval begins after the run, so what the run spent has
// been written by then. A window shorter than the flush interval would
// see the quiet between two flushes and call that idle. It gives up
// after quietCap and notes long waits.
func (b *bench) quiet() error {
	if b.tg == nil {
		return nil
	}
	const (
		idleShare = 0.05
		quietCap  = 30 * time.Second
	)
	start := time.Now()
	deadline := start.Add(quietCap)
	flushes, err := b.flushes()
	if err != nil {
		return err
	}
	busy := "no flush finished"
	for first := true; ; first = false {
		c0, err := b.tg.CPU()
		if err != nil {
			return err
		}
		t0 := time.Now()
		next, err := b.waitFlush(flushes, deadline)
		if err != nil {
			return err
		}
		if next == flushes {
			break // the deadline passed
		}
		flushes = next
		if first {
			continue // that flush may have begun during the run
		}
		c1, err := b.tg.CPU()
		if err != nil {
			return err
		}
		share := float64(c1-c0) / float64(time.Since(t0))
		if share <= idleShare {
			busy = ""
			break
		}
		busy = fmt.Sprintf("still using %.0f%% of a core", 100*share)
	}
	waited := time.Since(start)
	if busy == "" && waited < 10*time.Second {
		return nil
	}
	note := fmt.Sprintf("waited %v after a run for Tollgate's background work (credit and usage flushes) to finish", waited.Round(time.Second))
	if busy != "" {
		note = fmt.Sprintf("gave up after %v waiting for Tollgate's background work (credit and usage flushes) to finish: %s", waited.Round(time.Second), busy)
	}
	b.logf("%s", note)
	b.rep.Notes = append(b.rep.Notes, note)
	return nil
}

// flushes reads how many credit and usage flushes the replica has finished.
func (b *bench) flushes() (float64, error) {
	m, err := b.tg.Metrics(b.ctx)
	if err != nil {
		return 0, fmt.Errorf("%s: read metrics: %w", b.tg.Name, err)
	}
	n, ok := m["tollgate_credits_flushes_total"]
	if !ok {
		return 0, fmt.Errorf("%s: no tollgate_credits_flushes_total in /metrics", b.tg.Name)
	}
	return n, nil
}

// waitFlush waits, until deadline, for the replica to finish a flush
// after the after-th, and returns the count then (after itself at the
// deadline). It polls every 200 ms: often enough against a 2 s flush
// interval, rarely enough that reading /metrics costs the replica little.
func (b *bench) waitFlush(after float64, deadline time.Time) (float64, error) {
	for time.Now().Before(deadline) {
		n, err := b.flushes()
		if err != nil || n > after {
			return n, err
		}
		select {
		case <-b.ctx.Done():
			return after, b.ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return after, nil
}

// measure runs src against t: first a warm-up, then the measured run,
// closed loop when rate is 0.
func (b *bench) measure(t *Target, p *Proc, src Source, rate float64, d time.Duration, check bool) (*Result, error) {
	if err := b.ctx.Err(); err != nil {
		return nil, err
	}
	if err := b.quiet(); err != nil {
		return nil, err
	}
	var cpu Meter
	if p != nil {
		cpu = p.CPU
	}
	run := func(d time.Duration) (*Result, error) {
		if rate == 0 {
			return ClosedLoop(b.ctx, t, src, Workers(), d, 0, cpu, check, b.nextBase())
		}
		return OpenLoop(b.ctx, t, src, rate, d, cpu, check, b.nextBase())
	}
	if b.cfg.Warm > 0 {
		if _, err := run(b.cfg.Warm); err != nil {
			return nil, err
		}
	}
	r, err := run(d)
	if err != nil {
		return nil, err
	}
	b.logf("%s", r)
	if r.Errors > 0 || r.Wrong > 0 {
		b.rep.Notes = append(b.rep.Notes, fmt.Sprintf("%s %s: %d errors, %d answers not as expected (%v)", r.Server, r.Load, r.Errors, r.Wrong, r.Codes))
	}
	return r, nil
}

// compare runs the same load against the no-op server, Tollgate and OPA
// (when it runs), alternating rounds times, so that whatever else the
// machine does falls on all alike.
func (b *bench) compare(label string, src Source, rate float64, rounds int) (Pair, error) {
	p := Pair{Label: label}
	var ns, ts, opas []*Result
	for range rounds {
		if b.opaT != nil {
			o, err := b.opaCheck(src, rate)
			if err != nil {
				return Pair{}, err
			}
			opas = append(opas, o)
		}
		n, err := b.measure(b.noopT, b.noop, src, rate, b.cfg.Phase, false)
		if err != nil {
			return Pair{}, err
		}
		t, err := b.measure(b.tgT, b.tg, src, rate, b.cfg.Phase, true)
		if err != nil {
			return Pair{}, err
		}
		ns, ts = append(ns, n), append(ts, t)
		p.RoundCPU = append(p.RoundCPU, ratio(t.CPUPerRequest(), n.CPUPerRequest()))
		p.RoundRPS = append(p.RoundRPS, t.RPS()/n.RPS())
		if len(opas) > 0 {
			p.RoundOPA = append(p.RoundOPA, ratio(opas[len(opas)-1].CPUPerRequest(), t.CPUPerRequest()))
		}
	}
	p.Noop, p.Tollgate = merge(ns), merge(ts)
	if len(opas) > 0 {
		p.OPA = merge(opas)
	}
	return p, nil
}

// loads are the comparisons' loads: closed loop, then each fixed rate.
func (b *bench) loads() []float64 { return append([]float64{0}, b.cfg.Rates...) }
