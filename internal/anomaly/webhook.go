package anomaly

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
)

// webhookTimeout bounds one notification; a slow receiver delays the
// next detection run by at most this per flag opened.
const webhookTimeout = 5 * time.Second

// Webhook returns a notify function for NewDetector that posts each newly
// opened flag to url as {"event":"token.flagged","flag":{…}}, for the
// operator to pass on to the account (the flag names the account). A
// failure is logged; the flag stays open and visible in the API and
// console either way.
func Webhook(url string, client *http.Client, log *slog.Logger) func(ctx context.Context, f policy.Flag) {
	if client == nil {
		client = &http.Client{Timeout: webhookTimeout}
	}
	return func(ctx context.Context, f policy.Flag) {
		body, err := json.Marshal(map[string]any{"event": "token.flagged", "flag": f})
		if err != nil {
			log.Error("anomaly: webhook body", "err", err)
			return
		}
		ctx, cancel := context.WithTimeout(ctx, webhookTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			log.Error("anomaly: webhook request", "err", err)
			return
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			log.Warn("anomaly: webhook not delivered", "flag", f.ID, "err", err)
			return
		}
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			log.Warn("anomaly: webhook refused", "flag", f.ID, "status", resp.Status)
		}
	}
}
