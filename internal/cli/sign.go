package cli

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/signing"
)

func (a *app) signCmd() *cobra.Command {
	var token, secret, method, rawURL, bodyFile, date string
	var hdrs []string
	cmd := &cobra.Command{
		Use:   "sign --token T --secret S --method M --url URL",
		Short: "Print the headers that sign a request (TOLLGATE-HMAC-SHA256), one 'Name: value' per line",
		Long: `Print the headers that sign a request for a token that requires signed
requests: x-tollgate-date, x-tollgate-content-sha256 and Authorization. Add
them to the request as they are. --token is the token's id or the
publishable token itself; --secret is its signing secret. Headers given with
--header are sent and signed too. The scheme is in docs/signing.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var body io.Reader
			if bodyFile != "" {
				f, err := os.Open(bodyFile)
				if err != nil {
					return fmt.Errorf("--body-file: %w", err)
				}
				defer f.Close()
				body = f
			}
			req, err := http.NewRequest(strings.ToUpper(method), rawURL, body)
			if err != nil {
				return fmt.Errorf("--url: %w", err)
			}
			if req.URL.Host == "" {
				return fmt.Errorf("--url must be absolute, like https://api.example.com/v1/prices?symbol=AAPL")
			}
			var names []string
			for _, h := range hdrs {
				k, v, ok := strings.Cut(h, ":")
				if !ok || strings.TrimSpace(k) == "" {
					return fmt.Errorf("--header %q: want Name:value", h)
				}
				k = strings.ToLower(strings.TrimSpace(k))
				req.Header.Add(k, strings.TrimSpace(v))
				names = append(names, k)
			}
			now := time.Now()
			if date != "" {
				if now, err = time.Parse(signing.DateFormat, date); err != nil {
					return fmt.Errorf("--date: want %s, like 20261122T063000Z", "YYYYMMDDTHHMMSSZ")
				}
			}
			if err := signing.SignHTTP(req, token, []byte(secret), now, names...); err != nil {
				return err
			}
			out := map[string]string{}
			for _, name := range []string{signing.DateHeader, signing.ContentHeader, "Authorization"} {
				out[name] = req.Header.Get(name)
			}
			return a.print(out, func(w io.Writer) {
				for _, name := range []string{signing.DateHeader, signing.ContentHeader, "Authorization"} {
					fmt.Fprintf(w, "%s: %s\n", name, out[name])
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&token, "token", "", "the token's id, or the publishable token (required)")
	f.StringVar(&secret, "secret", "", "the token's signing secret (required)")
	f.StringVar(&method, "method", "GET", "the request's method")
	f.StringVar(&rawURL, "url", "", "the request's absolute URL, query included (required)")
	f.StringArrayVar(&hdrs, "header", nil, "Name:value of a header to send and sign (repeatable)")
	f.StringVar(&bodyFile, "body-file", "", "a file holding the request's body")
	f.StringVar(&date, "date", "", "sign as of this time, YYYYMMDDTHHMMSSZ (default: now); for test vectors")
	cmd.MarkFlagRequired("token")
	cmd.MarkFlagRequired("secret")
	cmd.MarkFlagRequired("url")
	return cmd
}
