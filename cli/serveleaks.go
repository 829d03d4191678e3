package cli

import (
	"github.com/spf13/pflag"

	"github.com/tollgate/tollgate/server"
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
