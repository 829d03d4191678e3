package bench

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Report is everything one benchmark run measured.
type Report struct {
	Config  Config
	Command string
	Machine Machine
	Started time.Time
	Took    time.Duration
	Seeding []SeedRow
	// Compare holds the no-op ÷ Tollgate comparisons on the cache-hit mix;
	// CompareLarge the same over every token of the largest database.
	Compare, CompareLarge []Pair
	Features              []FeatureRow
	TLS                   []TLSRow
	Cold                  []ColdRow
	Warm                  []WarmRow
	Flood                 []FloodRow
	Scale                 []ScaleRow
	Memory                []MemRow
	GC                    []GCSummary
	Ghz                   []*GhzResult
	Revocation            *Revocation
	Shutdowns             []Shutdown
	Notes                 []string
}

// Shutdown is how long a replica took to exit after SIGTERM.
type Shutdown struct {
	Name   string
	Took   time.Duration
	Killed bool // it had not exited after 60 s, and was killed
}

// Machine describes where the benchmark ran.
type Machine struct {
	CPUs            int
	CPUModel        string
	MemTotal        string
	Go, Kernel, Pg  string
	OtherLoadBefore string
}

// SeedRow is how long seeding up to Tokens took.
type SeedRow struct {
	Tokens int
	Took   time.Duration
}

// Pair is one load against both servers, over one or more rounds.
type Pair struct {
	Label          string
	Noop, Tollgate *Result
	// RoundCPU and RoundRPS are each round's Tollgate ÷ no-op ratios.
	RoundCPU, RoundRPS []float64
	// OPA is the same load against bench/opa, when it ran; RoundOPA each
	// round's OPA ÷ Tollgate CPU per request.
	OPA      *Result
	RoundOPA []float64
}

// FeatureRow is one load with credits and signatures off and on.
type FeatureRow struct {
	Rate                   float64
	Plain, Credits, Signed *Result
	// Rated is a rate-limited token on a replica enforcing its share of
	// the limit; RatedRedis the same on a replica with Redis (nil when the
	// run had none).
	Rated, RatedRedis *Result
}

// TLSRow is one load against the no-op server, Tollgate in plaintext and
// Tollgate over TLS.
type TLSRow struct {
	Rate             float64
	Noop, Plain, TLS *Result
}

// ColdRow is the cold path at one database size.
type ColdRow struct {
	Tokens int
	// Kind says what was cold: a token's first use, or the cache alone.
	Kind   string
	Res    *Result
	Misses int
	// PGCPU is the CPU the database's Postgres backends used meanwhile.
	PGCPU time.Duration
}

// WarmRow is loading tokens [From, To) of the plain pool into the cache.
type WarmRow struct {
	Tokens   int
	From, To int
	Res      *Result
	Took     time.Duration
	PGCPU    time.Duration
}

// ScaleRow is latency over Cached tokens, all cached, in a database of
// Tokens.
type ScaleRow struct {
	Tokens, Cached int
	Res            *Result
}

// MemSample is a replica's memory at one moment.
type MemSample struct {
	RSS, HeapInuse int64
	Entries        int
	LiveMB         int // live heap at the last GC
}

// MemRow is memory before and after caching a database's tokens.
type MemRow struct {
	Tokens        int
	Before, After MemSample
}

// PerToken is the RSS growth per cached token.
func (m MemRow) PerToken() float64 {
	n := m.After.Entries - m.Before.Entries
	if n <= 0 {
		return 0
	}
	return float64(m.After.RSS-m.Before.RSS) / float64(n)
}

// LivePerToken is the live-heap growth per cached token.
func (m MemRow) LivePerToken() float64 {
	n := m.After.Entries - m.Before.Entries
	if n <= 0 {
		return 0
	}
	return float64(m.After.LiveMB-m.Before.LiveMB) * (1 << 20) / float64(n)
}

func machineInfo(ctx context.Context, adminURL string) (Machine, error) {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				var kb int64
				fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
				m.MemTotal = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.OtherLoadBefore = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	db, err := sql.Open("postgres", adminURL)
	if err != nil {
		return m, err
	}
	defer db.Close()
	if err := db.QueryRowContext(ctx, `SHOW server_version`).Scan(&m.Pg); err != nil {
		return m, fmt.Errorf("postgres at %s: %w (is it running? see .ci/postgres.sh)", adminURL, err)
	}
	return m, nil
}

func us(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/1e3) }
func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

func lat(d time.Duration) string {
	if d < time.Millisecond {
		return fmt.Sprintf("%.0f µs", float64(d)/1e3)
	}
	return ms(d)
}

func loadName(rate float64) string {
	if rate == 0 {
		return "closed loop"
	}
	return fmt.Sprintf("%.0f rps", rate)
}

// Targets evaluates the targets.
func (r *Report) Targets() []TargetRow {
	var out []TargetRow
	if len(r.Compare) > 0 && r.Compare[0].Noop != nil {
		// The median round: other work on the machine falls on single
		// rounds, and the median is the least swayed by it.
		p := r.Compare[0]
		cpu, rps := median(p.RoundCPU), median(p.RoundRPS)
		out = append(out, TargetRow{"server CPU per request ≤ 1.25× no-op (cache hit, closed loop)",
			fmt.Sprintf("%.2f× (median of rounds %s; all rounds together %s vs %s)", cpu, floats(p.RoundCPU),
				us(p.Tollgate.CPUPerRequest()), us(p.Noop.CPUPerRequest())), cpu <= 1.25})
		out = append(out, TargetRow{"RPS ≥ 90% of no-op (cache hit, closed loop)",
			fmt.Sprintf("%.0f%% (median of rounds %s; all rounds together %.0f vs %.0f rps)", 100*rps, floats(p.RoundRPS),
				p.Tollgate.RPS(), p.Noop.RPS()), rps >= 0.9})
	}
	for _, p := range r.Compare {
		if p.OPA == nil {
			continue
		}
		// Closed loop, OPA should cost five times Tollgate's CPU; at a
		// fixed rate every request's syscalls weigh on both, and twice is
		// the aim.
		want := 5.0
		if p.Tollgate.Rate > 0 {
			want = 2
		}
		x := median(p.RoundOPA)
		out = append(out, TargetRow{fmt.Sprintf("OPA's CPU per request ≥ %.0f× Tollgate's (cache hit, %s)", want, loadName(p.Tollgate.Rate)),
			fmt.Sprintf("%.2f× (median of rounds %s; all rounds together %s vs %s)", x, floats(p.RoundOPA),
				us(p.OPA.CPUPerRequest()), us(p.Tollgate.CPUPerRequest())), x >= want})
	}
	if n := len(r.Memory); n > 0 {
		m := r.Memory[n-1]
		out = append(out, TargetRow{"≤ 1 KiB of memory per cached token",
			fmt.Sprintf("%.0f B RSS per token (%d cached; live heap %.0f B per token)", m.PerToken(), m.After.Entries, m.LivePerToken()),
			m.PerToken() <= 1024})
	}
	if rv := r.Revocation; rv != nil && len(rv.Disable) > 0 {
		p99 := pct(rv.Disable, 99)
		out = append(out, TargetRow{"revocation p99 < 1 s (3 replicas, store write)",
			fmt.Sprintf("%s p99, %s max over %d trials × %d replicas", ms(p99), ms(pct(rv.Disable, 100)), len(rv.Disable)/max(rv.Replicas, 1), rv.Replicas),
			p99 < time.Second && rv.Failed == 0})
	}
	if rv := r.Revocation; rv != nil && len(rv.API) > 0 {
		p99 := pct(rv.API, 99)
		out = append(out, TargetRow{"revocation p99 < 1 s through the Tokens API (3 replicas)",
			fmt.Sprintf("%s p99, %s max over %d trials × %d replicas", ms(p99), ms(pct(rv.API, 100)), len(rv.API)/max(rv.Replicas, 1), rv.Replicas),
			p99 < time.Second && rv.Failed == 0})
	}
	if len(r.Cold) > 0 {
		worst := r.Cold[0]
		for _, c := range r.Cold {
			if c.Res.Pct(99) > worst.Res.Pct(99) {
				worst = c
			}
		}
		out = append(out, TargetRow{"cold miss p99 < 5 ms",
			fmt.Sprintf("%s p99 (worst: %s, %d tokens)", lat(worst.Res.Pct(99)), worst.Kind, worst.Tokens), worst.Res.Pct(99) < 5*time.Millisecond})
	}
	return out
}

// TargetRow is a target, the measurement, and whether it was met.
type TargetRow struct {
	Name, Measured string
	Met            bool
}

// Markdown renders the report as the body of docs/benchmarks.md's results.
func (r *Report) Markdown() string {
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := r.Machine
	w("Run on %s, took %s.\n\n", r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Took.Round(time.Second))
	w("```sh\n%s\n```\n\n", r.Command)
	w("| machine | |\n|---|---|\n")
	w("| CPUs (nproc) | %d |\n| CPU | %s |\n| memory | %s |\n| Go | %s |\n| kernel | %s |\n| PostgreSQL | %s (same machine, loopback) |\n| load average before | %s |\n\n",
		m.CPUs, m.CPUModel, m.MemTotal, m.Go, m.Kernel, m.Pg, m.OtherLoadBefore)
	w("Replicas run with the defaults but `--xff-trusted-hops 1` and a cache large enough for the database; the one that warms the large database also runs with `--cache-ttl %v --max-staleness %v`, since warming it takes longer than the default TTL (5 minutes) and the measurements that follow are meant for a cache holding every token.\n\n", largeTTL, largeTTL)
	w("Load generator: the harness's own (`bench/load.go`, grpc-go, pre-encoded requests, 2 connections, %d workers closed loop; open loop in sub-millisecond batches) on the same 2 cores as the server. Each run: %v warm-up, then %v measured; comparisons alternate no-op and Tollgate %d times. \"Other load\" is the share of the machine's CPU that neither the server nor the load generator used (Postgres, and other work on the machine).\n\n",
		Workers(), r.Config.Warm, r.Config.Phase, r.Config.Rounds)

	w("### Targets\n\n| target | measured | |\n|---|---|---|\n")
	for _, t := range r.Targets() {
		verdict := "**met**"
		if !t.Met {
			verdict = "**missed**"
		}
		w("| %s | %s | %s |\n", t.Name, t.Measured, verdict)
	}
	w("\n")

	pairs := func(title string, ps []Pair) {
		if len(ps) == 0 {
			return
		}
		w("### %s\n\n", title)
		w("| load | server | RPS | p50 | p99 | p99.9 | server CPU / req | client CPU / req | other load | denies | errors |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
		label := ""
		for _, p := range ps {
			if p.Label != label && len(ps) > 3 {
				w("| **%s** | | | | | | | | | | |\n", p.Label)
			}
			label = p.Label
			servers := []*Result{p.Noop, p.Tollgate}
			if p.OPA != nil {
				servers = append(servers, p.OPA)
			}
			for _, x := range servers {
				w("| %s | %s | %.0f | %s | %s | %s | %s | %s | %.0f%% | %.1f%% | %d |\n", loadName(x.Rate), x.Server, x.RPS(),
					lat(x.Pct(50)), lat(x.Pct(99)), lat(x.Pct(99.9)), us(x.CPUPerRequest()),
					us(x.ClientCPU/time.Duration(max(x.Requests, 1))), 100*x.OtherLoad(), 100*x.DenyShare(), x.Errors+x.Wrong)
			}
			rounds := ""
			if len(p.RoundCPU) > 1 {
				rounds = "rounds: CPU " + floats(p.RoundCPU) + ", RPS " + floats(p.RoundRPS)
			}
			w("| %s | **Tollgate ÷ no-op** | **%.2f** | %.2f | %.2f | | **%.2f** | %s | | | |\n", loadName(p.Tollgate.Rate),
				p.Tollgate.RPS()/p.Noop.RPS(), ratio(p.Tollgate.Pct(50), p.Noop.Pct(50)), ratio(p.Tollgate.Pct(99), p.Noop.Pct(99)),
				ratio(p.Tollgate.CPUPerRequest(), p.Noop.CPUPerRequest()), rounds)
			if p.OPA != nil {
				w("| %s | **OPA ÷ Tollgate** | %.2f | %.2f | %.2f | | **%.2f** | rounds: CPU %s | | | |\n", loadName(p.Tollgate.Rate),
					p.OPA.RPS()/p.Tollgate.RPS(), ratio(p.OPA.Pct(50), p.Tollgate.Pct(50)), ratio(p.OPA.Pct(99), p.Tollgate.Pct(99)),
					ratio(p.OPA.CPUPerRequest(), p.Tollgate.CPUPerRequest()), floats(p.RoundOPA))
			}
		}
		w("\n")
	}
	pairs(fmt.Sprintf("Tollgate against the no-op server: cache hits (%d tokens, 90%% allowed)", hotEnd), r.Compare)
	if len(r.CompareLarge) > 0 {
		pairs(fmt.Sprintf("Tollgate against the no-op server with the %d-token database cached", r.Memory[len(r.Memory)-1].Tokens), r.CompareLarge)
	}

	if len(r.Ghz) > 0 {
		w("### Cross-check with ghz (closed loop, %d workers, %d connections)\n\n| server | RPS | p50 | p99 | server CPU / req | ghz CPU / req | statuses |\n|---|---|---|---|---|---|---|\n", r.Ghz[0].Concurrency, r.Ghz[0].Conns)
		for _, g := range r.Ghz {
			w("| %s | %.0f | %s | %s | %s | %s | %v |\n", g.Server, g.RPS, lat(g.P50), lat(g.P99), us(g.CPUPerRequest()),
				us(g.GhzCPU/time.Duration(max(g.Requests, 1))), g.Statuses)
		}
		if len(r.Ghz) == 2 {
			w("| **Tollgate ÷ no-op** | **%.2f** | | | **%.2f** | | |\n", r.Ghz[1].RPS/r.Ghz[0].RPS, ratio(r.Ghz[1].CPUPerRequest(), r.Ghz[0].CPUPerRequest()))
		}
		w("\n")
	}

	if len(r.Features) > 0 {
		w("### Credits, signed requests and rate limits (Tollgate, cache hits)\n\nRate-limited tokens have the highest limit a token may have (1,000,000 rps), so every Check runs the limiter and none is refused: on a replica without Redis, which enforces its share of the limit in memory, and on one with `--redis-url`, where each such Check is a round trip to Redis (the fleet-wide limit).\n\n| load | tokens | RPS | p50 | p99 | server CPU / req | ÷ plain |\n|---|---|---|---|---|---|---|\n")
		for _, f := range r.Features {
			for _, c := range []struct {
				name string
				r    *Result
			}{{"plain (counted, no limit)", f.Plain}, {"credit limit", f.Credits}, {"signed requests", f.Signed},
				{"rate limit, each replica's share", f.Rated}, {"rate limit, Redis", f.RatedRedis}} {
				if c.r == nil {
					continue
				}
				w("| %s | %s | %.0f | %s | %s | %s | %.2f |\n", loadName(f.Rate), c.name, c.r.RPS(), lat(c.r.Pct(50)), lat(c.r.Pct(99)),
					us(c.r.CPUPerRequest()), ratio(c.r.CPUPerRequest(), f.Plain.CPUPerRequest()))
			}
		}
		w("\n")
	}

	if len(r.TLS) > 0 {
		w("### TLS: Check over TLS beside plaintext and the no-op (cache hits)\n\nThe same cache-hit mix against the no-op server, a replica in plaintext (the sidecar on loopback) and a replica with `--tls-cert`/`--tls-key` (the shared service; ECDSA P-256, TLS 1.3, two long-lived HTTP/2 connections, so the handshake is not in the figures), one after the other at each load.\n\n| load | server | RPS | p50 | p99 | server CPU / req | ÷ plaintext |\n|---|---|---|---|---|---|---|\n")
		for _, row := range r.TLS {
			for _, c := range []struct {
				name string
				r    *Result
			}{{"no-op", row.Noop}, {"Tollgate, plaintext", row.Plain}, {"Tollgate, TLS", row.TLS}} {
				w("| %s | %s | %.0f | %s | %s | %s | %.2f |\n", loadName(row.Rate), c.name, c.r.RPS(), lat(c.r.Pct(50)), lat(c.r.Pct(99)),
					us(c.r.CPUPerRequest()), ratio(c.r.CPUPerRequest(), row.Plain.CPUPerRequest()))
			}
		}
		w("\n")
	}

	if len(r.Cold) > 0 {
		w("### Cold path: every request a cache miss to Postgres\n\nEach token of the database is sent once, none cached, at a fixed rate; a miss is the token's query and, on a token's first request, the meter's first reservation (see the findings).\n\n| tokens in the database | what is cold | requests | rate | p50 | p90 | p99 | max | Tollgate CPU / miss | Postgres CPU / miss | misses seen |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, c := range r.Cold {
			w("| %d | %s | %d | %.0f rps | %s | %s | %s | %s | %s | %s | %d |\n", c.Tokens, c.Kind, c.Res.Requests, c.Res.Rate, lat(c.Res.Pct(50)), lat(c.Res.Pct(90)),
				lat(c.Res.Pct(99)), lat(c.Res.Pct(100)), us(c.Res.CPUPerRequest()), us(c.PGCPU/time.Duration(max(c.Res.Requests, 1))), c.Misses)
		}
		for _, wr := range r.Warm {
			w("\nWarming plain tokens %d to %d of the %d-token database into the cache, closed loop: %d requests in %s, %.0f misses/s, p50 %s, p99 %s; Tollgate CPU %s and Postgres CPU %s per miss.\n",
				wr.From, wr.To, wr.Tokens, wr.Res.Requests, wr.Took.Round(time.Second), wr.Res.RPS(), lat(wr.Res.Pct(50)), lat(wr.Res.Pct(99)),
				us(wr.Res.CPUPerRequest()), us(wr.PGCPU/time.Duration(max(wr.Res.Requests, 1))))
		}
		w("\n")
	}

	if len(r.Flood) > 0 {
		w("### Made-up tokens: cold misses during a flood, with and without the membership filter\n\nA fresh replica per row; legitimate tokens not yet cached at %.0f rps while other clients send made-up (well-formed, unknown, each new) tokens at %d rps. Store queries are the replica's token look-ups during the legitimate run (concurrent misses share a query); Postgres CPU is the database's backends' over the same window.\n\n| flood | legitimate requests | p50 | p90 | p99 | max | store queries/s | Postgres CPU (share of a core) | made-up tokens refused by the filter/s | flood sent |\n|---|---|---|---|---|---|---|---|---|---|\n", r.Config.ColdRate, floodRate)
		for _, f := range r.Flood {
			secs := f.Legit.Elapsed.Seconds()
			sent := "—"
			if f.Flood != nil {
				sent = fmt.Sprintf("%.0f rps", f.Flood.RPS())
			}
			w("| %s | %d | %s | %s | %s | %s | %.0f | %.0f%% | %.0f | %s |\n", f.Kind, f.Legit.Requests, lat(f.Legit.Pct(50)), lat(f.Legit.Pct(90)), lat(f.Legit.Pct(99)), lat(f.Legit.Pct(100)),
				f.Queries/secs, 100*f.PGCPU.Seconds()/secs, f.Refusals/secs, sent)
		}
		w("\n")
	}

	if len(r.Scale) > 0 {
		w("### Latency from 1k to 1M tokens (%.0f rps spread uniformly over every cached token, 90%% allowed)\n\n| tokens cached | tokens in the database | p50 | p90 | p99 | p99.9 | max | server CPU / req | errors |\n|---|---|---|---|---|---|---|---|---|\n", r.Config.Rates[0])
		for _, s := range r.Scale {
			w("| %d | %d | %s | %s | %s | %s | %s | %s | %d |\n", s.Cached, s.Tokens, lat(s.Res.Pct(50)), lat(s.Res.Pct(90)), lat(s.Res.Pct(99)),
				lat(s.Res.Pct(99.9)), lat(s.Res.Pct(100)), us(s.Res.CPUPerRequest()), s.Res.Errors+s.Res.Wrong)
		}
		w("\n")
	}

	if len(r.Memory) > 0 {
		w("### Memory\n\nBefore: a fresh replica after a short cache-hit warm-up; after: once the tokens are cached and %.0f rps have run over them.\n\n| tokens in the database | cached | RSS before → after | heap in use before → after | live heap at last GC before → after | RSS per cached token | live heap per cached token |\n|---|---|---|---|---|---|---|\n", r.Config.Rates[0])
		for _, mm := range r.Memory {
			w("| %d | %d | %d → %d MiB | %d → %d MiB | %d → %d MB | %.0f B | %.0f B |\n", mm.Tokens, mm.After.Entries,
				mm.Before.RSS>>20, mm.After.RSS>>20, mm.Before.HeapInuse>>20, mm.After.HeapInuse>>20,
				mm.Before.LiveMB, mm.After.LiveMB, mm.PerToken(), mm.LivePerToken())
		}
		w("\n")
	}

	if len(r.GC) > 0 {
		w("### Garbage collection (GODEBUG=gctrace=1)\n\n| phase | window | cycles | concurrent mark p50 / max | longest pause | mark CPU | live heap |\n|---|---|---|---|---|---|---|\n")
		for _, g := range r.GC {
			w("| %s | %s | %d | %s / %s | %s | %s | %d–%d MB |\n", g.Phase, g.Window.Round(time.Second), g.Cycles,
				ms(g.MarkP50), ms(g.MarkMax), ms(g.STWMax), g.MarkCPU.Round(time.Millisecond), g.LiveMin, g.LiveMax)
		}
		w("\n")
	}

	if rv := r.Revocation; rv != nil {
		w("### Revocation across %d replicas\n\nEach trial caches a token on every replica, then disables it while each replica is polled about every millisecond, in one of three ways: with `store.UpdateToken` from the harness (what `tollgate tokens disable` runs), with `tollgate tokens disable` run as a process, or through the Tokens API — `PATCH /v1/tokens/{id}` `{\"enabled\":false}` to the first replica's HTTP port, authenticated with the account's secret token. The time runs from the start of the write (the process's start, the request's start) to the first `token_disabled` answer of each replica. The token is then enabled again (through the store) and measured the same way.\n\n", rv.Replicas)
		w("| change | answers | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|\n")
		for _, c := range []struct {
			name string
			d    []time.Duration
		}{{"disable (store), from the write's start", rv.Disable}, {"disable (store), from the write's return", rv.AfterWrite},
			{"enable again (store), from the write's start", rv.Enable}, {"the disabling write itself (store)", rv.Write},
			{"disable via `tollgate tokens disable`, from process start", rv.CLI},
			{"disable via the Tokens API (`PATCH /v1/tokens/{id}`), from the request's start", rv.API},
			{"the API request itself, until its response", rv.APIRequest}} {
			w("| %s | %d | %s | %s | %s | %s |\n", c.name, len(c.d), ms(pct(c.d, 50)), ms(pct(c.d, 90)), ms(pct(c.d, 99)), ms(pct(c.d, 100)))
		}
		w("\nReplicas that did not follow within 5 s: %d.\n\n", rv.Failed)
	}

	if len(r.Shutdowns) > 0 {
		w("Graceful shutdown (SIGTERM to exit) of the benchmarked replicas:")
		for _, sd := range r.Shutdowns {
			killed := ""
			if sd.Killed {
				killed = ", **not done: killed**"
			}
			w(" %s %s%s;", sd.Name, sd.Took.Round(100*time.Millisecond), killed)
		}
		w("\n\n")
	}
	if len(r.Seeding) > 0 {
		w("Seeding (COPY, triggers off, then VACUUM (ANALYZE)):")
		for _, s := range r.Seeding {
			w(" %d tokens in %s;", s.Tokens, s.Took.Round(100*time.Millisecond))
		}
		w("\n\n")
	}
	if len(r.Notes) > 0 {
		w("Notes from the run:\n\n")
		for _, n := range r.Notes {
			w("- %s\n", n)
		}
		w("\n")
	}
	return b.String()
}

// median returns the median of fs (the mean of the middle two for an even
// count).
func median(fs []float64) float64 {
	if len(fs) == 0 {
		return 0
	}
	s := slices.Clone(fs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func floats(fs []float64) string {
	var parts []string
	for _, f := range fs {
		parts = append(parts, fmt.Sprintf("%.2f", f))
	}
	return strings.Join(parts, " / ")
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// WriteDoc replaces the part of the document at path that lies between
// the markers named section (<!-- section:begin … --> and
// <!-- section:end -->) with body, keeping the rest; a document without
// them gets them appended.
func WriteDoc(path, section, body string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	s := string(old)
	beginMarker := "<!-- " + section + ":begin (generated by make " + section + "; edits between these lines are overwritten) -->"
	endMarker := "<!-- " + section + ":end -->"
	block := beginMarker + "\n" + body + endMarker + "\n"
	i, j := strings.Index(s, beginMarker), strings.Index(s, endMarker)
	if i >= 0 && j > i {
		rest := s[j+len(endMarker):]
		s = s[:i] + block + strings.TrimPrefix(rest, "\n")
	} else {
		s += "\n" + block
	}
	return os.WriteFile(path, []byte(s), 0o644)
}
