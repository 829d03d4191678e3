// Package anomaly flags unusual usage of tokens: a spike over the token's
// own baseline, a burst of denials of one kind, traffic from network
// ranges or sites never seen for the token, a secret token from a browser.
//
// Each replica counts what it decides per token and minute (Recorder,
// bounded) and adds it to the fleet's sums in the store; one replica at a
// time, under the store's detector lock, reads the sums and opens flags
// (Detector). Flags are therefore computed on the fleet's traffic, not on
// one replica's share of it, and opened once however many replicas run.
package anomaly

import (
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
)

// Thresholds are the operator's settings for what counts as unusual.
type Thresholds struct {
	// Window is the span each run looks at; Baseline the span before it
	// that a spike is measured against.
	Window, Baseline time.Duration
	// SpikeFactor: a spike is at least this many times the token's average
	// per window over the baseline, and at least SpikeMin requests.
	SpikeFactor float64
	SpikeMin    int64
	// DenialBurst denials of one code in a window, making up at least
	// DenialShare of the token's decisions, are a burst. Codes that are
	// limits doing their job (rate_limited, credits_exhausted, …) are not.
	DenialBurst int64
	DenialShare float64
	// Learn is how long a token's network ranges and sites are learned
	// before a new one is flagged; a token younger than Learn is not
	// flagged for a spike either (it has no baseline yet).
	Learn time.Duration
}

// DefaultThresholds returns the defaults; docs/security.md gives the false
// positives they make on synthetic traffic.
func DefaultThresholds() Thresholds {
	return Thresholds{Window: 10 * time.Minute, Baseline: 24 * time.Hour, SpikeFactor: 10, SpikeMin: 600,
		DenialBurst: 100, DenialShare: 0.2, Learn: 24 * time.Hour}
}

// Validate reports a threshold that cannot be used.
func (t Thresholds) Validate() error {
	switch {
	case t.Window < time.Minute || t.Window%time.Minute != 0:
		return errors.New("the anomaly window must be whole minutes, at least 1m")
	case t.Baseline < t.Window:
		return errors.New("the anomaly baseline must be at least the window")
	case t.SpikeFactor <= 1 || t.SpikeMin < 1:
		return errors.New("the spike factor must be > 1 and the spike minimum >= 1")
	case t.DenialBurst < 1 || t.DenialShare < 0 || t.DenialShare > 1:
		return errors.New("the denial burst must be >= 1 and the denial share within [0, 1]")
	case t.Learn < 0:
		return errors.New("the learning period must be >= 0")
	}
	return nil
}

// limitCodes are denials that are limits working as meant, never a sign
// of abuse by themselves.
var limitCodes = []policy.DenyCode{policy.CodeRateLimited, policy.CodeCreditsExhausted, policy.CodeQuotaExhausted,
	policy.CodeReplayUnverifiable}

// maxEvidenceValues bounds the new networks or sites a flag lists.
const maxEvidenceValues = 10

// Finding is a flag to open, before it is stored.
type Finding struct {
	Kind     policy.FlagKind
	Evidence json.RawMessage
}

// Evaluate returns what is unusual about one token's window, given when the
// window starts. It does no I/O.
func (t Thresholds) Evaluate(w policy.TokenWindow, from time.Time) []Finding {
	var out []Finding
	add := func(kind policy.FlagKind, evidence map[string]any) {
		evidence["window"] = t.Window.String()
		b, _ := json.Marshal(evidence) // numbers, strings and lists of them always marshal
		out = append(out, Finding{Kind: kind, Evidence: b})
	}
	learned := !w.CreatedAt.After(from.Add(-t.Learn))
	perWindow := float64(w.Baseline) * float64(t.Window) / float64(t.Baseline)
	if learned && w.Requests >= t.SpikeMin && float64(w.Requests) >= t.SpikeFactor*perWindow {
		factor := 0.0
		if perWindow > 0 {
			factor = float64(w.Requests) / perWindow
		}
		add(policy.FlagSpike, map[string]any{"requests": w.Requests, "baseline_per_window": round(perWindow), "factor": round(factor)})
	}
	decisions := w.Requests + w.Denied
	var worst policy.DenyCode
	var worstN int64
	for code, n := range w.Denials {
		if slices.Contains(limitCodes, code) {
			continue
		}
		if n > worstN || (n == worstN && code < worst) {
			worst, worstN = code, n
		}
	}
	if worstN >= t.DenialBurst && float64(worstN) >= t.DenialShare*float64(decisions) {
		add(policy.FlagDenials, map[string]any{"code": worst, "count": worstN, "share": round(float64(worstN) / float64(decisions))})
	}
	if len(w.NewNetworks) > 0 {
		add(policy.FlagNewNetwork, map[string]any{"networks": firstOf(w.NewNetworks), "count": len(w.NewNetworks)})
	}
	if len(w.NewSites) > 0 {
		add(policy.FlagNewSite, map[string]any{"sites": firstOf(w.NewSites), "count": len(w.NewSites)})
	}
	if w.Kind == policy.Secret && w.SecretBrowser > 0 {
		add(policy.FlagSecretInBrowser, map[string]any{"requests": w.SecretBrowser})
	}
	return out
}

func firstOf(values []string) []string { return values[:min(len(values), maxEvidenceValues)] }

func round(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }
