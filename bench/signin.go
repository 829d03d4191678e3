package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tollgate/tollgate/internal/policy"
)

// SignInFloodConfig is one run of the sign-in flood: Check at a steady
// rate alone, then with Flooders goroutines sending wrong passwords to
// POST /v1/session as fast as the replica answers.
type SignInFloodConfig struct {
	Tollgate, AdminURL, WorkDir string
	// Rate is the Check load, requests per second; Phase how long each
	// phase lasts.
	Rate  float64
	Phase time.Duration
	// Flooders is how many sign-in loops run in the flood phases, and
	// FloodRate the attempts per second they send together (0: each as
	// fast as the replica answers). A fixed rate offers the same attack to
	// every build: closed loops send more the faster they are refused, and
	// then measure HTTP serving at full speed rather than sign-in.
	Flooders  int
	FloodRate float64
	// Env is added to the replica's environment (e.g. settings of a build
	// that knows them; an older one ignores them).
	Env []string
	Log func(string, ...any)
}

// SignInPhase is one measured phase.
type SignInPhase struct {
	Name  string
	Check *Result
	// SignIns counts the flood's answers by HTTP status ("error" for a
	// failed round trip).
	SignIns map[string]int
}

// SignInFloodReport is what a run measured.
type SignInFloodReport struct {
	Config SignInFloodConfig
	Phases []SignInPhase
}

// SignInFlood measures Check latency on one replica while its console
// sign-in is hammered: alone; with a flood from one address (which attempt
// limits refuse before any hashing); and with a flood where every attempt
// comes from a new address for a new email (so that no limit applies and
// every attempt costs a bcrypt comparison: only the hashing pool's bound
// protects Check then).
func SignInFlood(ctx context.Context, cfg SignInFloodConfig) (*SignInFloodReport, error) {
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return nil, err
	}
	st, err := openRunStore(ctx, cfg.AdminURL, cfg.Tollgate, "tollgate_signin", 2, "Flood")
	if err != nil {
		return nil, err
	}
	defer st.Close()
	acc, dbURL := st.Account, st.URL
	hash, err := bcrypt.GenerateFromPassword([]byte("the right password"), bcrypt.DefaultCost)
	if err != nil {
		return nil, err
	}
	if err := st.CreateUser(ctx, &policy.User{AccountID: acc.ID, Email: "victim@flood.test", Role: policy.RoleAdmin, PasswordHash: string(hash)}); err != nil {
		return nil, err
	}
	toks := make([]string, 100)
	for i := range toks {
		t := policy.NewToken(acc.ID, policy.Publishable)
		t.Domains = []string{"app.example.com"}
		t.Datasets = map[string]policy.Actions{"prices": policy.Actions(policy.Read)}
		if toks[i], err = st.CreateToken(ctx, t); err != nil {
			return nil, err
		}
	}

	env := append([]string{"TOLLGATE_DATABASE_URL=" + dbURL}, cfg.Env...)
	p, err := startServe("tollgate-signin", cfg.Tollgate, []string{"--log-level", "warn"}, env, filepath.Join(cfg.WorkDir, "tollgate-signin.log"))
	if err != nil {
		return nil, err
	}
	defer p.Stop(20 * time.Second)
	target, err := Dial("tollgate", p.GRPCAddr, 2)
	if err != nil {
		return nil, err
	}
	defer target.Close()
	src := NewSweep(toks)
	// Warm the cache, so that every phase measures cache hits.
	if _, err := OpenLoop(ctx, target, src, cfg.Rate, 2*time.Second, nil, false, 0); err != nil {
		return nil, err
	}

	rep := &SignInFloodReport{Config: cfg}
	for _, ph := range []struct {
		name  string
		flood func(i, n int) (email, addr string)
	}{
		{"Check alone", nil},
		{fmt.Sprintf("+ %d sign-in loops, one address", cfg.Flooders), func(i, n int) (string, string) {
			return "victim@flood.test", "198.51.100.7"
		}},
		{fmt.Sprintf("+ %d sign-in loops, a new address and email each", cfg.Flooders), func(i, n int) (string, string) {
			return fmt.Sprintf("guess%d.%d@flood.test", i, n), fmt.Sprintf("10.%d.%d.%d", i, (n>>8)&255, n&255)
		}},
	} {
		r, counts, err := floodPhase(ctx, target, src, "http://"+p.HTTPAddr, cfg, ph.flood)
		if err != nil {
			return nil, err
		}
		r.Load = ph.name
		cfg.Log("%s", r)
		cfg.Log("sign-in answers: %v", counts)
		rep.Phases = append(rep.Phases, SignInPhase{Name: ph.name, Check: r, SignIns: counts})
	}
	return rep, nil
}

// floodPhase runs Check at cfg.Rate for cfg.Phase while, if flood is set,
// cfg.Flooders loops sign in with wrong passwords.
func floodPhase(ctx context.Context, target *Target, src Source, base string, cfg SignInFloodConfig,
	flood func(i, n int) (email, addr string)) (*Result, map[string]int, error) {
	counts := map[string]int{}
	var mu sync.Mutex
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	if flood != nil {
		for i := range cfg.Flooders {
			wg.Go(func() {
				client := &http.Client{Timeout: 10 * time.Second}
				var pace <-chan time.Time
				if cfg.FloodRate > 0 {
					t := time.NewTicker(time.Duration(float64(cfg.Flooders) / cfg.FloodRate * float64(time.Second)))
					defer t.Stop()
					pace = t.C
				}
				for n := 0; runCtx.Err() == nil; n++ {
					if pace != nil {
						select {
						case <-pace:
						case <-runCtx.Done():
							return
						}
					}
					email, addr := flood(i, n)
					body := fmt.Sprintf(`{"email":%q,"password":"not the password %d"}`, email, n)
					req, err := http.NewRequestWithContext(runCtx, "POST", base+"/v1/session", strings.NewReader(body))
					if err != nil {
						return
					}
					req.Header.Set("Content-Type", "application/json")
					// Read only by a replica started with
					// --api-xff-trusted-hops 1.
					req.Header.Set("X-Forwarded-For", addr)
					key := "error"
					if res, err := client.Do(req); err == nil {
						io.Copy(io.Discard, res.Body)
						res.Body.Close()
						key = fmt.Sprint(res.StatusCode)
					} else if runCtx.Err() != nil {
						return
					}
					mu.Lock()
					counts[key]++
					mu.Unlock()
				}
			})
		}
		// Let the flood reach its stride before measuring.
		time.Sleep(time.Second)
	}
	r, err := OpenLoop(ctx, target, src, cfg.Rate, cfg.Phase, nil, false, 0)
	stop()
	wg.Wait()
	return r, counts, err
}

// Markdown renders the report as a table.
func (r *SignInFloodReport) Markdown(command string) string {
	var b bytes.Buffer
	rate := "as fast as answered"
	if r.Config.FloodRate > 0 {
		rate = fmt.Sprintf("%.0f attempts/s in all", r.Config.FloodRate)
	}
	fmt.Fprintf(&b, "`%s`: Check at %.0f rps for %v per phase, %d sign-in loops (%s) in the flood phases.\n\n",
		command, r.Config.Rate, r.Config.Phase, r.Config.Flooders, rate)
	b.WriteString("| phase | Check p50 | Check p99 | Check max | Check errors | sign-in answers |\n|---|---|---|---|---|---|\n")
	for _, ph := range r.Phases {
		fmt.Fprintf(&b, "| %s | %v | %v | %v | %d | %v |\n", ph.Name, ph.Check.Pct(50).Round(time.Microsecond),
			ph.Check.Pct(99).Round(time.Microsecond), ph.Check.Pct(100).Round(time.Microsecond), ph.Check.Errors, ph.SignIns)
	}
	return b.String()
}
