// Command tollgate-bench runs Tollgate's load benchmark against the no-op
// baseline (bench mode, "make bench"), its soak test (soak mode,
// "make soak") or Check under a sign-in flood (signin mode), and writes the results into docs/benchmarks.md. It needs
// the tollgate and noopauthz binaries and a Postgres it may create
// databases on; .ci/bench.sh and .ci/soak.sh provide them.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tollgate/tollgate/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tollgate-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("tollgate-bench", flag.ContinueOnError)
	mode := fs.String("mode", "bench", "bench, soak, signin or fleet")
	tollgate := fs.String("tollgate", "bin/tollgate", "the tollgate binary")
	noop := fs.String("noop", "bin/noopauthz", "the no-op ext_authz binary")
	ghz := fs.String("ghz", "", "a ghz binary, for a closed-loop cross-check (bench)")
	opa := fs.String("opa", "", "a bench/opa binary, to compare with OPA (bench)")
	redisURL := fs.String("redis-url", "", "Redis for the fleet-wide rate-limit row (bench); without it the row is left out")
	admin := fs.String("admin-url", cmp.Or(os.Getenv("TOLLGATE_TEST_DATABASE_URL"), "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"),
		"Postgres URL of a user that may create databases")
	work := fs.String("work-dir", "bench-out", "where server logs and reports go")
	quick := fs.Bool("quick", false, "smoke test: 1,000 tokens and short runs (bench)")
	doc := fs.String("doc", "", "update this document's generated section with the results (e.g. docs/benchmarks.md)")
	command := fs.String("command", "", "the command to show in the document (default: this one)")
	keep := fs.Bool("keep-db", false, "keep the benchmark database afterwards (bench)")
	profile := fs.Bool("profile", false, "capture pprof profiles into -work-dir; -tollgate must be a bench/profserve binary (bench)")
	tgEnv := fs.String("tollgate-env", "", "environment for every replica, comma-separated KEY=VALUE (bench; e.g. GOGC=400)")
	sizes := fs.String("sizes", "", "database sizes, comma-separated (bench; default 1000,1000000 with a stop at 100000 cached, or 1000 with -quick)")
	phase := fs.Duration("phase", 0, "length of each measured run (bench; default 15s, 3s with -quick)")
	soakFor := fs.Duration("duration", 10*time.Minute, "how long to soak (soak)")
	soakRate := fs.Float64("rate", 1000, "Checks per second (soak, signin)")
	flooders := fs.Int("flooders", 8, "sign-in loops in the flood phases (signin)")
	replicas := fs.Int("replicas", 8, "replicas sharing the database (fleet)")
	floodRate := fs.Float64("flood-rate", 200, "sign-in attempts per second the loops send together; 0: as fast as answered (signin)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cmdline := cmp.Or(*command, "tollgate-bench "+strings.Join(args, " "))
	logf := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", a...)
	}
	switch *mode {
	case "bench":
		cfg := bench.Config{Tollgate: *tollgate, Noop: *noop, Ghz: *ghz, OPA: *opa, RedisURL: *redisURL, AdminURL: *admin, WorkDir: *work,
			Rates: []float64{2000, 5000}, ColdRate: 200, KeepDB: *keep, Log: os.Stderr}
		if *quick {
			cfg = bench.Quick(cfg)
		} else {
			cfg = bench.Full(cfg)
		}
		if *phase > 0 {
			cfg.Phase = *phase
		}
		cfg.Profile = *profile
		if *tgEnv != "" {
			cfg.TollgateEnv = strings.Split(*tgEnv, ",")
		}
		if *sizes != "" {
			cfg.Sizes = nil
			for _, f := range strings.Split(*sizes, ",") {
				n, err := strconv.Atoi(strings.TrimSpace(f))
				if err != nil || n < 1000 {
					return fmt.Errorf("-sizes: %q is not a size of at least 1000", f)
				}
				cfg.Sizes = append(cfg.Sizes, n)
			}
		}
		rep, err := bench.Run(ctx, cfg)
		if err != nil {
			return err
		}
		rep.Command = cmdline
		md := rep.Markdown()
		fmt.Println(md)
		if err := os.WriteFile(*work+"/bench.md", []byte(md), 0o644); err != nil {
			return err
		}
		if *doc != "" {
			return bench.WriteDoc(*doc, "bench", md)
		}
	case "soak":
		rep, err := bench.Soak(ctx, bench.SoakConfig{Tollgate: *tollgate, AdminURL: *admin, WorkDir: *work,
			Duration: *soakFor, Rate: *soakRate, Tokens: 200, EditEvery: 50 * time.Millisecond,
			SampleEvery: 10 * time.Second, Window: time.Second, Log: logf})
		if err != nil {
			return err
		}
		md := rep.Markdown(cmdline)
		fmt.Println(md)
		if err := os.WriteFile(*work+"/soak.md", []byte(md), 0o644); err != nil {
			return err
		}
		if *doc != "" {
			if err := bench.WriteDoc(*doc, "soak", md); err != nil {
				return err
			}
		}
		if rep.Wrong > 0 || rep.Errors > 0 {
			return fmt.Errorf("soak: %d wrong decisions, %d errors", rep.Wrong, rep.Errors)
		}
	case "fleet":
		rep, err := bench.Fleet(ctx, bench.FleetConfig{Tollgate: *tollgate, AdminURL: *admin, WorkDir: *work,
			Replicas: *replicas, Rate: *soakRate, Load: 20 * time.Second, Idle: 10 * time.Second, Trials: 30, Log: logf})
		if err != nil {
			return err
		}
		fmt.Println(rep.Markdown(cmdline))
	case "signin":
		cfg := bench.SignInFloodConfig{Tollgate: *tollgate, AdminURL: *admin, WorkDir: *work, Rate: *soakRate,
			Phase: cmp.Or(*phase, 10*time.Second), Flooders: *flooders, FloodRate: *floodRate, Log: logf,
			// A new address per attempt needs the replica to read it from
			// X-Forwarded-For; an older build ignores the setting.
			Env: []string{"TOLLGATE_API_XFF_TRUSTED_HOPS=1"}}
		if *tgEnv != "" {
			cfg.Env = append(cfg.Env, strings.Split(*tgEnv, ",")...)
		}
		rep, err := bench.SignInFlood(ctx, cfg)
		if err != nil {
			return err
		}
		md := rep.Markdown(cmdline)
		fmt.Println(md)
		return os.WriteFile(*work+"/signin.md", []byte(md), 0o644)
	default:
		return fmt.Errorf("-mode must be bench, soak or signin, not %q", *mode)
	}
	return nil
}
