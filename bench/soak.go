package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/store"
)

// SoakConfig is one soak run.
type SoakConfig struct {
	Tollgate, AdminURL, WorkDir string
	Duration                    time.Duration
	// Rate is the Check load, requests per second.
	Rate float64
	// Tokens is how many tokens are edited and checked.
	Tokens int
	// EditEvery is the pause between two token edits.
	EditEvery time.Duration
	// SampleEvery is how often heap and goroutines are read.
	SampleEvery time.Duration
	// Window is the propagation allowance: an answer that matches a state
	// the token left less than Window before the request was sent is
	// counted as in the window, not as wrong.
	Window time.Duration
	Log    func(string, ...any)
}

// tokenState is what the soak edits: the token's switch, its allowed
// domains and its datasets, each one of a few variants.
type tokenState struct {
	enabled  bool
	domains  int // 0: any; 1: app.example.com; 2: other.example.net
	datasets int // 0: prices; 1: sales.*; 2: both
}

var (
	soakDomains  = [][]string{{}, {"app.example.com"}, {"other.example.net"}}
	soakDatasets = []map[string]policy.Actions{
		{"prices": policy.Actions(policy.Read)},
		{"sales.*": policy.Actions(policy.Read)},
		{"prices": policy.Actions(policy.Read), "sales.*": policy.Actions(policy.Read)},
	}
)

func (s tokenState) apply(t *policy.Token) {
	t.Enabled = s.enabled
	t.Domains = append([]string{}, soakDomains[s.domains]...)
	t.Datasets = map[string]policy.Actions{}
	for k, v := range soakDatasets[s.datasets] {
		t.Datasets[k] = v
	}
}

// soakVariant is what a request asks: from which page, for which dataset.
type soakVariant struct {
	fromApp bool // Referer app.example.com, else www.example.org
	sales   bool // dataset sales.q1, else prices
}

// expect is the answer the rules give a request in a state: an
// independent model of the order Evaluate applies them in.
func expect(s tokenState, v soakVariant) string {
	switch {
	case !s.enabled:
		return string(policy.CodeTokenDisabled)
	case s.domains == 1 && !v.fromApp, s.domains == 2:
		return string(policy.CodeRefererDenied)
	case v.sales && s.datasets == 0, !v.sales && s.datasets == 1:
		return string(policy.CodeDatasetDenied)
	}
	return ""
}

// version is one state of a token and the write that made it: the state
// holds after end, and may already show from start.
type version struct {
	start, end time.Time
	state      tokenState
}

// soakToken is a token and its history.
type soakToken struct {
	id, value string
	mu        sync.Mutex
	history   []version
}

func (t *soakToken) record(v version) {
	t.mu.Lock()
	t.history = append(t.history, v)
	t.mu.Unlock()
}

// answer is one Check of the soak.
type answer struct {
	token      int // -1 for unknown, -2 for malformed
	variant    soakVariant
	sent, recv time.Time
	out        Outcome
}

// SoakSample is one reading of the replica.
type SoakSample struct {
	At                    time.Duration
	HeapInuse, RSS        int64
	LiveMB                int // live heap at the last GC before the sample
	Goroutines, Entries   int
	Decisions, Invalidate float64
}

// SoakReport is what a soak run found.
type SoakReport struct {
	Config                  SoakConfig
	Took                    time.Duration
	Answers, Errors         int
	Correct, InWindow       int
	Wrong                   int
	WrongExamples           []string
	WindowExamples          []string      // the stalest in-window answers
	MaxLag                  time.Duration // the stalest in-window answer, after its change ended
	Edits                   int
	Samples                 []SoakSample
	P50, P99                time.Duration
	Codes                   map[string]int
	EditP50, EditP99        time.Duration
	ServerCPU               time.Duration
	Listener, Reconnections float64
}

// Soak runs one replica on a fresh database under mixed load while its
// tokens are edited without pause, and checks every answer against the
// token's state in the database at the time.
func Soak(ctx context.Context, cfg SoakConfig) (*SoakReport, error) {
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return nil, err
	}
	st, err := openRunStore(ctx, cfg.AdminURL, cfg.Tollgate, "tollgate_soak", 4, "Soak")
	if err != nil {
		return nil, err
	}
	defer st.Close()
	acc, dbURL := st.Account, st.URL
	toks := make([]*soakToken, cfg.Tokens)
	initial := tokenState{enabled: true, domains: 1, datasets: 2}
	for i := range toks {
		t := policy.NewToken(acc.ID, policy.Publishable)
		initial.apply(t)
		v, err := st.CreateToken(ctx, t)
		if err != nil {
			return nil, err
		}
		now := time.Now()
		toks[i] = &soakToken{id: t.ID, value: v, history: []version{{start: now, end: now, state: initial}}}
	}

	p, err := startServe("tollgate-soak", cfg.Tollgate, []string{"--log-format", "json", "--xff-trusted-hops", "1"},
		[]string{"TOLLGATE_DATABASE_URL=" + dbURL, "GODEBUG=gctrace=1"}, filepath.Join(cfg.WorkDir, "tollgate-soak.log"))
	if err != nil {
		return nil, err
	}
	defer p.Stop(20 * time.Second)
	if err := p.WaitMetric(ctx, "tollgate_listener_connected", 10*time.Second, func(v float64) bool { return v == 1 }); err != nil {
		return nil, err
	}
	target, err := Dial("tollgate", p.GRPCAddr, 2)
	if err != nil {
		return nil, err
	}
	defer target.Close()

	templates := map[soakVariant]*template{}
	for _, app := range []bool{false, true} {
		for _, sales := range []bool{false, true} {
			ref, ds := "https://www.example.org/report", "prices"
			if app {
				ref = goodReferer
			}
			if sales {
				ds = "sales.q1"
			}
			templates[soakVariant{app, sales}] = newTemplate(shape{place: inQuery, referer: ref, dataset: ds})
		}
	}
	unknown, bad := unknownValues(32), malformedValues(32)

	rep := &SoakReport{Config: cfg, Codes: map[string]int{}}
	runCtx, stop := context.WithTimeout(ctx, cfg.Duration)
	defer stop()
	start := time.Now()
	cpu0, _ := p.CPU()

	var edits []time.Duration
	var wg sync.WaitGroup
	wg.Go(func() { edits = editLoop(runCtx, st.DB, toks, cfg.EditEvery, cfg.Log) })
	wg.Go(func() { rep.Samples = sampleLoop(runCtx, p, start, cfg.SampleEvery, cfg.Log) })

	var answers []answer
	var mu sync.Mutex
	var inflight sync.WaitGroup
	var seq atomic.Uint64
	tick := time.NewTicker(time.Millisecond)
	sent := 0
	for loop := true; loop; {
		select {
		case <-runCtx.Done():
			loop = false
			continue
		case <-tick.C:
		}
		due := int(time.Since(start).Seconds() * cfg.Rate)
		for ; sent < due; sent++ {
			r := splitmix64(seq.Add(1))
			a := answer{variant: soakVariant{fromApp: r&1 == 0, sales: r&2 == 0}}
			var req []byte
			switch kind := (r >> 2) % 100; {
			case kind < 4:
				a.token = -1
				req = templates[a.variant].with(unknown[(r>>9)%uint64(len(unknown))])
			case kind < 6:
				a.token = -2
				req = templates[a.variant].with(bad[(r>>9)%uint64(len(bad))])
			default:
				a.token = int((r >> 9) % uint64(len(toks)))
				req = templates[a.variant].with(toks[a.token].value)
			}
			inflight.Add(1)
			go func() {
				defer inflight.Done()
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				a.sent = time.Now()
				a.out = target.Check(cctx, req)
				a.recv = time.Now()
				cancel()
				mu.Lock()
				answers = append(answers, a)
				mu.Unlock()
			}()
		}
	}
	tick.Stop()
	inflight.Wait()
	wg.Wait()
	rep.Took = time.Since(start)
	cpu1, _ := p.CPU()
	rep.ServerCPU = cpu1 - cpu0
	if m, err := p.Metrics(ctx); err == nil {
		rep.Listener, rep.Reconnections = m["tollgate_listener_connected"], m["tollgate_listener_reconnects_total"]
	}
	rep.Edits = len(edits)
	sortDurations(edits)
	rep.EditP50, rep.EditP99 = pct(edits, 50), pct(edits, 99)
	judge(rep, toks, answers, cfg.Window)
	return rep, nil
}

// editLoop changes a random token every pause until ctx ends, recording
// each new state, and returns how long each write took.
func editLoop(ctx context.Context, st *store.DB, toks []*soakToken, pause time.Duration, logf func(string, ...any)) []time.Duration {
	var took []time.Duration
	rng := rand.New(rand.NewPCG(1, 2))
	for ctx.Err() == nil {
		t := toks[rng.IntN(len(toks))]
		t.mu.Lock()
		s := t.history[len(t.history)-1].state
		t.mu.Unlock()
		switch rng.IntN(3) {
		case 0:
			s.enabled = !s.enabled
		case 1:
			s.domains = (s.domains + 1 + rng.IntN(2)) % 3
		case 2:
			s.datasets = (s.datasets + 1 + rng.IntN(2)) % 3
		}
		begin := time.Now()
		_, err := st.UpdateToken(context.WithoutCancel(ctx), t.id, func(tok *policy.Token) error { s.apply(tok); return nil })
		end := time.Now()
		if err != nil {
			logf("soak: edit %s: %v", t.id, err)
			continue
		}
		t.record(version{start: begin, end: end, state: s})
		took = append(took, end.Sub(begin))
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
	return took
}

// sampleLoop reads heap, goroutines and RSS every period until ctx ends.
func sampleLoop(ctx context.Context, p *Proc, start time.Time, period time.Duration, logf func(string, ...any)) []SoakSample {
	var out []SoakSample
	read := func() {
		m, err := p.Metrics(context.WithoutCancel(ctx))
		if err != nil {
			logf("soak: metrics: %v", err)
			return
		}
		rss, _ := p.RSS()
		var decisions float64
		for k, v := range m {
			if len(k) > 30 && k[:30] == "tollgate_check_decisions_total" {
				decisions += v
			}
		}
		s := SoakSample{At: time.Since(start), HeapInuse: int64(m["go_memstats_heap_inuse_bytes"]), RSS: rss,
			Goroutines: int(m["go_goroutines"]), Entries: int(m["tollgate_cache_entries"]), Decisions: decisions,
			Invalidate: m["tollgate_invalidations_total"]}
		if cycles, err := readGCTrace(p.LogPath); err == nil && len(cycles) > 0 {
			s.LiveMB = cycles[len(cycles)-1].Live
		}
		out = append(out, s)
		logf("soak: %4.0fs heap in use %.1f MiB (live %d MB), RSS %.1f MiB, %d goroutines, %d cached, %.0f decisions, %.0f invalidations",
			s.At.Seconds(), float64(s.HeapInuse)/(1<<20), s.LiveMB, float64(s.RSS)/(1<<20), s.Goroutines, s.Entries, s.Decisions, s.Invalidate)
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			read()
			return out
		case <-t.C:
			read()
		}
	}
}

// judge classifies every answer. A version of a token may have shown
// anywhere from the start of the write that made it to the end of the
// write that replaced it. An answer is correct if some version that may
// have shown while the call was in flight gives it; in the window if
// only a version that may have shown within Window before the call gives
// it (the propagation allowance); wrong otherwise.
func judge(rep *SoakReport, toks []*soakToken, answers []answer, window time.Duration) {
	var lats []time.Duration
	for _, a := range answers {
		lats = append(lats, a.recv.Sub(a.sent))
		rep.Answers++
		rep.Codes[a.out.Label()]++
		if a.out.Err != codes.OK {
			rep.Errors++
			continue
		}
		got := a.out.Code
		if !a.out.Allowed && got == "" {
			got = "deny:?"
		}
		switch a.token {
		case -1, -2:
			want := string(policy.CodeTokenUnknown)
			if a.token == -2 {
				want = string(policy.CodeTokenMalformed)
			}
			if got == want {
				rep.Correct++
			} else {
				rep.wrong(fmt.Sprintf("%s token: got %q, want %q", map[int]string{-1: "unknown", -2: "malformed"}[a.token], got, want))
			}
			continue
		}
		h := toks[a.token].history
		matches := func(from, to time.Time) (bool, time.Duration) {
			for j, v := range h {
				visibleFrom := v.start
				if j == 0 {
					visibleFrom = time.Time{}
				}
				var until time.Time // zero: still current
				if j+1 < len(h) {
					until = h[j+1].end
				}
				if visibleFrom.After(to) || (!until.IsZero() && until.Before(from)) {
					continue
				}
				if expect(v.state, a.variant) == got {
					var lag time.Duration
					if !until.IsZero() && until.Before(a.sent) {
						lag = a.sent.Sub(until)
					}
					return true, lag
				}
			}
			return false, 0
		}
		if ok, _ := matches(a.sent, a.recv); ok {
			rep.Correct++
			continue
		}
		if ok, lag := matches(a.sent.Add(-window), a.recv); ok {
			rep.InWindow++
			rep.MaxLag = max(rep.MaxLag, lag)
			if lag > 50*time.Millisecond && len(rep.WindowExamples) < 10 {
				rep.WindowExamples = append(rep.WindowExamples, fmt.Sprintf("token %d (%s) %+v sent %s, answered %s after %v: got %q, %v after the change that made it stale had committed; history %+v",
					a.token, toks[a.token].id, a.variant, a.sent.Format("15:04:05.000000"), a.recv.Format("15:04:05.000000"),
					a.recv.Sub(a.sent).Round(time.Microsecond), got, lag.Round(time.Millisecond), lastVersions(h, 4)))
			}
			continue
		}
		rep.wrong(fmt.Sprintf("token %d (%s) %+v at %s: got %q; history %+v", a.token, toks[a.token].id, a.variant,
			a.sent.Format("15:04:05.000000"), got, lastVersions(h, 4)))
	}
	sortDurations(lats)
	rep.P50, rep.P99 = pct(lats, 50), pct(lats, 99)
}

func (r *SoakReport) wrong(example string) {
	r.Wrong++
	if len(r.WrongExamples) < 10 {
		r.WrongExamples = append(r.WrongExamples, example)
	}
}

func lastVersions(h []version, n int) []string {
	var out []string
	for _, v := range h[max(0, len(h)-n):] {
		out = append(out, fmt.Sprintf("%s..%s %+v", v.start.Format("05.000000"), v.end.Format("05.000000"), v.state))
	}
	return out
}

// third returns the mean of f over the first or last third of the samples.
func third(ss []SoakSample, last bool, f func(SoakSample) float64) float64 {
	n := max(1, len(ss)/3)
	part := ss[:n]
	if last {
		part = ss[len(ss)-n:]
	}
	var sum float64
	for _, s := range part {
		sum += f(s)
	}
	return sum / float64(len(part))
}

// Markdown renders the soak's findings.
func (r *SoakReport) Markdown(command string) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	c := r.Config
	w("```sh\n%s\n```\n\n", command)
	w("One replica on Postgres, %s at %.0f Checks/s over %d tokens (plus 4%% unknown and 2%% malformed tokens; Referer and dataset varied), while one token is edited every %v — switched off or on, its allowed domains or its datasets changed — through `store.UpdateToken`.\n\n",
		r.Took.Round(time.Second), c.Rate, c.Tokens, c.EditEvery)
	w("| | |\n|---|---|\n")
	w("| answers | %d (p50 %s, p99 %s) |\n", r.Answers, lat(r.P50), lat(r.P99))
	w("| edits | %d (write p50 %s, p99 %s) |\n", r.Edits, lat(r.EditP50), lat(r.EditP99))
	w("| **wrong decisions** | **%d** |\n", r.Wrong)
	w("| answers matching the database while in flight | %d |\n", r.Correct)
	w("| answers matching a state the token left < %v before the call (propagation window) | %d (stalest: %s after its change committed) |\n", c.Window, r.InWindow, ms(r.MaxLag))
	w("| gRPC errors | %d |\n", r.Errors)
	w("| answers by outcome | %v |\n", r.Codes)
	w("| server CPU per Check | %s |\n", us(r.ServerCPU/time.Duration(max(r.Answers, 1))))
	w("| listener connected at the end / reconnections | %.0f / %.0f |\n\n", r.Listener, r.Reconnections)
	if len(r.WindowExamples) > 0 {
		w("In-window answers more than 50 ms stale:\n\n")
		for _, e := range r.WindowExamples {
			w("- %s\n", e)
		}
		w("\n")
	}
	if len(r.WrongExamples) > 0 {
		w("Wrong decisions (first %d):\n\n", len(r.WrongExamples))
		for _, e := range r.WrongExamples {
			w("- %s\n", e)
		}
		w("\n")
	}
	if len(r.Samples) > 0 {
		heap := func(s SoakSample) float64 { return float64(s.HeapInuse) / (1 << 20) }
		live := func(s SoakSample) float64 { return float64(s.LiveMB) }
		rss := func(s SoakSample) float64 { return float64(s.RSS) / (1 << 20) }
		gor := func(s SoakSample) float64 { return float64(s.Goroutines) }
		w("Flatness, mean of the first third of the samples → mean of the last third:\n\n| series | first | last | change |\n|---|---|---|---|\n")
		for _, x := range []struct {
			name string
			f    func(SoakSample) float64
		}{{"heap in use (MiB)", heap}, {"live heap at last GC (MB)", live}, {"RSS (MiB)", rss}, {"goroutines", gor}} {
			a, z := third(r.Samples, false, x.f), third(r.Samples, true, x.f)
			w("| %s | %.1f | %.1f | %+.1f%% |\n", x.name, a, z, 100*(z-a)/max(a, 1e-9))
		}
		w("\nSamples every %v:\n\n| t | heap in use | live heap | RSS | goroutines | cached | decisions | invalidations |\n|---|---|---|---|---|---|---|---|\n", c.SampleEvery)
		for _, s := range r.Samples {
			w("| %.0f s | %.1f MiB | %d MB | %.1f MiB | %d | %d | %.0f | %.0f |\n", s.At.Seconds(), heap(s), s.LiveMB, rss(s), s.Goroutines, s.Entries, s.Decisions, s.Invalidate)
		}
		w("\n")
	}
	return b.String()
}
