package cli

// The serve flags of leaked tokens (secret scanning) and anomaly flags.

import (
	"github.com/spf13/pflag"

	"github.com/tollgate/tollgate/internal/server"
)

// bindLeaks binds the flags of the secret-scanning endpoint.
func bindLeaks(f *pflag.FlagSet, cfg *server.Config) {
	sc := &cfg.SecretScanning
	f.StringVar(&sc.Keys, "secret-scanning-keys", "", "file or URL of GitHub's secret-scanning public keys (e.g. https://api.github.com/meta/public_keys/secret_scanning); turns on POST /v1/secret-scanning/github (off when empty)")
	f.DurationVar(&sc.KeysRefetch, "secret-scanning-keys-refetch", sc.KeysRefetch, "read the keys again at most this often, for a report signed by a key identifier not seen yet")
	f.StringVar((*string)(&sc.Secret), "secret-scanning-secret-action", string(sc.Secret), "what a leaked secret token gets: disabled, or rolled (no grace)")
	f.StringVar((*string)(&sc.Publishable), "secret-scanning-publishable-action", string(sc.Publishable), "what a leaked publishable token gets: recorded (it is public by design), disabled, or rolled (no grace)")
	f.Int64Var(&sc.MaxBody, "secret-scanning-max-body", sc.MaxBody, "largest report accepted, in bytes (413 past it)")
	f.IntVar(&sc.MaxReports, "secret-scanning-max-reports", sc.MaxReports, "most tokens in one report (413 past it)")
}

// bindAnomaly binds the flags of anomaly flags.
func bindAnomaly(f *pflag.FlagSet, cfg *server.Config) {
	ac := &cfg.Anomaly
	d := &ac.Detector
	f.BoolVar(&ac.On, "anomaly-flags", ac.On, "count usage per token and minute and flag unusual usage (spikes, denial bursts, new networks and sites, secret tokens in browsers)")
	f.StringVar(&ac.WebhookURL, "anomaly-webhook-url", "", "URL that hears of every flag opened (a JSON POST naming the account and token); none when empty")
	f.DurationVar(&d.Window, "anomaly-window", d.Window, "span each detection run looks at (whole minutes)")
	f.DurationVar(&d.Baseline, "anomaly-baseline", d.Baseline, "span before the window that a spike is measured against; usage minutes are kept this long")
	f.Float64Var(&d.SpikeFactor, "anomaly-spike-factor", d.SpikeFactor, "a spike is this many times the token's average per window over the baseline")
	f.Int64Var(&d.SpikeMin, "anomaly-spike-min", d.SpikeMin, "and at least this many requests in the window")
	f.Int64Var(&d.DenialBurst, "anomaly-denial-burst", d.DenialBurst, "denials of one code in a window that make a burst")
	f.Float64Var(&d.DenialShare, "anomaly-denial-share", d.DenialShare, "and the share of the token's decisions in the window they must make up")
	f.DurationVar(&d.Learn, "anomaly-learn", d.Learn, "how long a token's networks and sites are learned before a new one is flagged")
	f.DurationVar(&d.Interval, "anomaly-interval", d.Interval, "how often a detection run happens (on one replica at a time)")
	f.DurationVar(&ac.Recorder.FlushInterval, "anomaly-flush-interval", ac.Recorder.FlushInterval, "how often each replica adds its counts to the fleet's")
	f.IntVar(&ac.Recorder.MaxTokens, "anomaly-max-tokens", ac.Recorder.MaxTokens, "token-minutes a replica counts between flushes; past it, others wait for the next flush")
}
