package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/store"
)

// Revocation is how long a change took to show on every replica.
type Revocation struct {
	Replicas int
	// Disable holds, per trial and replica, the time from the start of the
	// disabling write (store.UpdateToken, what "tollgate tokens disable"
	// runs) until that replica first answered token_disabled.
	Disable []time.Duration
	// Enable is the same for switching the token back on (until allowed).
	Enable []time.Duration
	// Write is how long each disabling write itself took.
	Write []time.Duration
	// AfterWrite is Disable measured from the write's return instead of
	// its start (0 when the replica denied before the call returned).
	AfterWrite []time.Duration
	// CLI holds the same as Disable for "tollgate tokens disable" run as a
	// process, measured from the process's start (so it includes the
	// command's own start-up and connection).
	CLI []time.Duration
	// API holds the same as Disable for PATCH /v1/tokens/{id} sent to one
	// replica's Tokens API with the account's secret token, measured from
	// the request's start; APIRequest is how long each request took.
	API, APIRequest []time.Duration
	// Failed counts replicas that did not flip within the limit.
	Failed int
}

// pollFlip polls Check on every replica (about every millisecond) while
// change runs and returns, per replica, the time from just before change
// began until the replica first answered want ("" for allow); -1 if not
// within limit.
func pollFlip(ctx context.Context, ts []*Target, req []byte, want string, limit time.Duration, change func() error) ([]time.Duration, time.Duration, error) {
	flips := make([]time.Duration, len(ts))
	var wg sync.WaitGroup
	start := time.Now()
	for i, t := range ts {
		wg.Go(func() {
			flips[i] = -1
			for time.Since(start) < limit && ctx.Err() == nil {
				cctx, cancel := context.WithTimeout(ctx, time.Second)
				o := t.Check(cctx, req)
				cancel()
				if o.Err == 0 && o.Code == want {
					flips[i] = time.Since(start)
					return
				}
				time.Sleep(500 * time.Microsecond)
			}
		})
	}
	err := change()
	took := time.Since(start)
	wg.Wait()
	return flips, took, err
}

// waitAnswer polls t until it answers want.
func waitAnswer(ctx context.Context, t *Target, req []byte, want string, within time.Duration) error {
	deadline := time.Now().Add(within)
	var last Outcome
	for time.Now().Before(deadline) {
		last = t.Check(ctx, req)
		if last.Err == 0 && last.Code == want {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("%s: still %s after %v, want %q", t.Name, last.Label(), within, want)
}

// RevocationTrials is how many trials disable a token through each path.
type RevocationTrials struct {
	// Store calls store.UpdateToken, what "tollgate tokens disable" runs.
	Store int
	// CLI runs "tollgate tokens disable" as a process.
	CLI int
	// API sends PATCH /v1/tokens/{id} to the Tokens API at APIURL.
	API    int
	APIURL string
}

// RunRevocation disables and re-enables tokens one at a time while every
// replica is polled, through the store, the tollgate command and the
// Tokens API as n says, and measures how long each replica took to
// follow. Each token is cached on every replica first.
func RunRevocation(ctx context.Context, replicas []*Target, tollgate, dbURL string, toks []Token, n RevocationTrials, logf func(string, ...any)) (*Revocation, error) {
	total := n.Store + n.CLI + n.API
	if len(toks) < total {
		return nil, fmt.Errorf("revocation: %d tokens for %d trials", len(toks), total)
	}
	st, err := store.Open(ctx, dbURL, store.Options{MaxConns: 2})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	setEnabled := func(id string, on bool) func() error {
		return func() error {
			_, err := st.UpdateToken(ctx, id, func(t *policy.Token) error { t.Enabled = on; return nil })
			return err
		}
	}
	// The API authenticates with the account's secret token; the seeded
	// accounts have none yet.
	secrets := map[string]string{}
	for _, tok := range toks[n.Store+n.CLI : total] {
		if _, ok := secrets[tok.AccountID]; ok {
			continue
		}
		sk, err := st.CreateToken(ctx, policy.NewToken(tok.AccountID, policy.Secret))
		if err != nil {
			return nil, fmt.Errorf("revocation: secret token for %s: %w", tok.AccountID, err)
		}
		secrets[tok.AccountID] = sk
	}
	tmpl := newTemplate(shape{place: inQuery, referer: goodReferer})
	rev := &Revocation{Replicas: len(replicas)}
	const limit = 5 * time.Second
	record := func(dst *[]time.Duration, flips []time.Duration) {
		for _, f := range flips {
			if f < 0 {
				rev.Failed++
				continue
			}
			*dst = append(*dst, f)
		}
	}
	for k := range total {
		tok := toks[k]
		req := tmpl.with(tok.Value)
		for _, r := range replicas {
			if err := waitAnswer(ctx, r, req, "", 3*time.Second); err != nil {
				return nil, fmt.Errorf("revocation trial %d: warm: %w", k, err)
			}
		}
		var change func() error
		switch {
		case k < n.Store:
			change = setEnabled(tok.ID, false)
		case k < n.Store+n.CLI:
			change = func() error {
				out, err := exec.CommandContext(ctx, tollgate, "tokens", "disable", tok.ID, "--database-url", dbURL, "-o", "json").CombinedOutput()
				if err != nil {
					return fmt.Errorf("tollgate tokens disable: %v: %s", err, out)
				}
				return nil
			}
		default:
			change = func() error { return apiDisable(ctx, n.APIURL, secrets[tok.AccountID], tok.ID) }
		}
		flips, took, err := pollFlip(ctx, replicas, req, string(policy.CodeTokenDisabled), limit, change)
		if err != nil {
			return nil, err
		}
		switch {
		case k < n.Store:
			record(&rev.Disable, flips)
			rev.Write = append(rev.Write, took)
			for _, f := range flips {
				if f >= 0 {
					rev.AfterWrite = append(rev.AfterWrite, max(0, f-took))
				}
			}
		case k < n.Store+n.CLI:
			record(&rev.CLI, flips)
		default:
			record(&rev.API, flips)
			rev.APIRequest = append(rev.APIRequest, took)
		}
		flips, _, err = pollFlip(ctx, replicas, req, "", limit, setEnabled(tok.ID, true))
		if err != nil {
			return nil, err
		}
		record(&rev.Enable, flips)
		if (k+1)%25 == 0 {
			logf("revocation: %d/%d trials", k+1, total)
		}
	}
	for _, s := range [][]time.Duration{rev.Disable, rev.Enable, rev.Write, rev.AfterWrite, rev.CLI, rev.API, rev.APIRequest} {
		slices.Sort(s)
	}
	return rev, nil
}

// apiDisable switches token id off through the Tokens API at base, as the
// account's secret token sk.
func apiDisable(ctx context.Context, base, sk, id string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, base+"/v1/tokens/"+id, strings.NewReader(`{"enabled":false}`))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+sk)
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		return fmt.Errorf("PATCH /v1/tokens/%s: %w", id, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("PATCH /v1/tokens/%s: %s: %s", id, resp.Status, body)
	}
	return nil
}

// pct is the p-th percentile of sorted durations.
func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p/100*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func sortDurations(d []time.Duration) { slices.Sort(d) }
