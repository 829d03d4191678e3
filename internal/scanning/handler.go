// Package scanning acts on leaks of token values that GitHub's secret
// scanning partner programme reports: it checks the report's signature
// (ECDSA P-256 with SHA-256 over the raw body, by a key GitHub publishes),
// finds each reported token, applies the operator's policy for its kind
// (disable, roll with no grace, or record), and answers in GitHub's
// feedback format. Tokens are reached through TokenActions, which the
// server wires to the token service (today the store).
package scanning

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/tollgate/tollgate/internal/policy"
)

// Header names of GitHub's signature; Go canonicalises the case.
const (
	HeaderKeyID     = "Github-Public-Key-Identifier"
	HeaderSignature = "Github-Public-Key-Signature"
)

// Reporter is how the audit log and the console name GitHub.
const Reporter = "github"

// TokenActions is what a report needs from the tokens: finding one by a
// value's hash and acting on it. Each action is audited by its
// implementation, as every change to a token is.
type TokenActions interface {
	// TokenByHash returns the token one of whose live values has hash h,
	// or an error wrapping policy.ErrNotFound.
	TokenByHash(ctx context.Context, h policy.Hash) (*policy.Token, *policy.Account, error)
	// DisableToken switches the token off; it returns ErrAlreadyDisabled
	// when the token was off already.
	DisableToken(ctx context.Context, id, reason string) error
	// RollToken gives the token a new value with no grace, so the leaked
	// one stops at once; the new value is shown to no one (its owner rolls
	// again to see one).
	RollToken(ctx context.Context, id, reason string) error
	// RecordLeak keeps the report for the console and the audit log; its
	// ID and time are set.
	RecordLeak(ctx context.Context, l *policy.Leak) error
}

// ErrAlreadyDisabled is DisableToken's answer for a token already off.
var ErrAlreadyDisabled = errors.New("scanning: token already disabled")

// Config is the operator's policy and the bounds on a report.
type Config struct {
	// Secret is what happens to a leaked secret token: LeakDisabled or
	// LeakRolled. A secret found in public is never only recorded.
	Secret policy.LeakAction
	// Publishable is what happens to a leaked publishable token, which is
	// public by design (it sits in web pages): LeakRecorded by default,
	// or LeakDisabled or LeakRolled.
	Publishable policy.LeakAction
	// MaxBody bounds a report's size in bytes; MaxReports the tokens in it.
	MaxBody    int64
	MaxReports int
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Secret: policy.LeakDisabled, Publishable: policy.LeakRecorded, MaxBody: 1 << 20, MaxReports: 1000}
}

// Validate reports a policy or bound that cannot be used.
func (c Config) Validate() error {
	switch {
	case c.Secret != policy.LeakDisabled && c.Secret != policy.LeakRolled:
		return fmt.Errorf("the action on a leaked secret token must be disabled or rolled, not %q", c.Secret)
	case c.Publishable != policy.LeakRecorded && c.Publishable != policy.LeakDisabled && c.Publishable != policy.LeakRolled:
		return fmt.Errorf("the action on a leaked publishable token must be recorded, disabled or rolled, not %q", c.Publishable)
	case c.MaxBody < 1 || c.MaxReports < 1:
		return errors.New("the bounds on a secret-scanning report's size and count must be > 0")
	}
	return nil
}

// Observer hears of every reported token (its kind, "" when unknown, and
// the outcome: an action, "unknown" or "malformed") and of every refused
// report (the refusal's code). Metrics hang off it.
type Observer struct {
	Reported func(kind, outcome string)
	Refused  func(code string)
}

// Handler serves GitHub's reports.
type Handler struct {
	keys    *Keys
	tokens  TokenActions
	cfg     Config
	log     *slog.Logger
	observe Observer
}

// NewHandler returns a Handler; observe's functions may be nil.
func NewHandler(keys *Keys, tokens TokenActions, cfg Config, log *slog.Logger, observe Observer) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid config: %w", err)
	}
	if observe.Reported == nil {
		observe.Reported = func(string, string) {}
	}
	if observe.Refused == nil {
		observe.Refused = func(string) {}
	}
	return &Handler{keys: keys, tokens: tokens, cfg: cfg, log: log, observe: observe}, nil
}

// report is one match GitHub found.
type report struct {
	Token  string `json:"token"`
	Type   string `json:"type"`
	URL    string `json:"url"`
	Source string `json:"source"`
}

// Feedback is GitHub's feedback format for one reported token, with
// Tollgate's own word beside the label: a token that does not exist is a
// false positive ("unknown" or "malformed"), one already off says so.
type Feedback struct {
	TokenHash string `json:"token_hash"`
	TokenType string `json:"token_type"`
	Label     string `json:"label"` // true_positive | false_positive
	Status    string `json:"tollgate_status"`
}

// refusal is a report refused whole: nothing was done.
type refusal struct {
	status  int
	code    string
	message string
}

func (r *refusal) Error() string { return r.message }

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	out, err := h.serve(r)
	if err != nil {
		var ref *refusal
		if !errors.As(err, &ref) {
			// Tollgate failed part way: GitHub retries, and what was done
			// already is reported as such the second time.
			h.log.Error("secret scanning: report not handled", "err", err)
			ref = &refusal{http.StatusServiceUnavailable, "unavailable", "the report could not be handled now; retry"}
		}
		h.observe.Refused(ref.code)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(ref.status)
		json.NewEncoder(w).Encode(map[string]string{"code": ref.code, "message": ref.message})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

func (h *Handler) serve(r *http.Request) ([]Feedback, error) {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, h.cfg.MaxBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, &refusal{http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("a report is at most %d bytes", h.cfg.MaxBody)}
		}
		return nil, &refusal{http.StatusBadRequest, "body_unreadable", "the body could not be read"}
	}
	if err := h.verify(r.Context(), r.Header.Get(HeaderKeyID), r.Header.Get(HeaderSignature), body); err != nil {
		return nil, err
	}
	reports, err := h.parse(body)
	if err != nil {
		return nil, err
	}
	out := make([]Feedback, 0, len(reports))
	for _, rep := range reports {
		fb, err := h.act(r.Context(), rep)
		if err != nil {
			return nil, err
		}
		out = append(out, fb)
	}
	return out, nil
}

var errSignature = &refusal{http.StatusUnauthorized, "signature_invalid",
	"the report must be signed: " + HeaderKeyID + " and " + HeaderSignature + " (base64 ASN.1 ECDSA P-256 over the raw body)"}

// verify checks the signature over the raw body before anything in the
// body is looked at.
func (h *Handler) verify(ctx context.Context, keyID, sig string, body []byte) error {
	if keyID == "" || sig == "" || len(keyID) > 256 || len(sig) > 256 {
		return errSignature
	}
	der, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return errSignature
	}
	key, err := h.keys.Key(ctx, keyID)
	if errors.Is(err, errUnknownKey) {
		return &refusal{http.StatusUnauthorized, "signature_key_unknown", "the public key identifier is not one the reporter publishes"}
	}
	if err != nil {
		return err
	}
	digest := sha256.Sum256(body)
	if !ecdsa.VerifyASN1(key, digest[:], der) {
		return errSignature
	}
	return nil
}

// parse reads a signed body: a JSON array of reports, each with a token.
// Anything else refuses the whole report, so nothing half-read is acted on.
func (h *Handler) parse(body []byte) ([]report, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '[' {
		return nil, &refusal{http.StatusBadRequest, "body_invalid", "the body must be a JSON array of reports"}
	}
	var reports []report
	if err := json.Unmarshal(trimmed, &reports); err != nil {
		return nil, &refusal{http.StatusBadRequest, "body_invalid", "the body must be a JSON array of reports: " + err.Error()}
	}
	if len(reports) > h.cfg.MaxReports {
		return nil, &refusal{http.StatusRequestEntityTooLarge, "too_many_reports", fmt.Sprintf("a report carries at most %d tokens", h.cfg.MaxReports)}
	}
	for i, rep := range reports {
		if rep.Token == "" {
			return nil, &refusal{http.StatusBadRequest, "body_invalid", fmt.Sprintf("report %d has no token", i)}
		}
	}
	return reports, nil
}

// maxField bounds what is kept of a report's type, URL and source.
const maxField = 2048

// act applies the policy to one reported token.
func (h *Handler) act(ctx context.Context, rep report) (Feedback, error) {
	hash := policy.HashValue(rep.Token)
	fb := Feedback{TokenHash: hash.String(), TokenType: rep.Type, Label: "false_positive"}
	if _, err := policy.ParseValue(rep.Token); err != nil {
		fb.Status = "malformed"
		h.observe.Reported("", fb.Status)
		return fb, nil
	}
	t, _, err := h.tokens.TokenByHash(ctx, hash)
	if errors.Is(err, policy.ErrNotFound) {
		fb.Status = "unknown"
		h.observe.Reported("", fb.Status)
		return fb, nil
	}
	if err != nil {
		return fb, fmt.Errorf("find reported token: %w", err)
	}
	action := h.cfg.Publishable
	if t.Kind == policy.Secret {
		action = h.cfg.Secret
	}
	reason := fmt.Sprintf("found in public by %s at %s", Reporter, clip(rep.URL))
	switch action {
	case policy.LeakDisabled:
		err = h.tokens.DisableToken(ctx, t.ID, reason)
		if errors.Is(err, ErrAlreadyDisabled) {
			action, err = policy.LeakAlreadyDisabled, nil
		}
	case policy.LeakRolled:
		err = h.tokens.RollToken(ctx, t.ID, reason)
	}
	if err != nil {
		return fb, fmt.Errorf("%s reported token %s: %w", action, t.ID, err)
	}
	leak := &policy.Leak{TokenID: t.ID, AccountID: t.AccountID, Reporter: Reporter, TokenType: clip(rep.Type),
		URL: clip(rep.URL), Source: clip(rep.Source), Action: action}
	if err := h.tokens.RecordLeak(ctx, leak); err != nil {
		return fb, fmt.Errorf("record leak of token %s: %w", t.ID, err)
	}
	h.log.Warn("secret scanning: token reported leaked", "token", t.ID, "kind", t.Kind.String(), "action", string(action), "url", leak.URL)
	fb.Label, fb.Status = "true_positive", string(action)
	h.observe.Reported(t.Kind.String(), fb.Status)
	return fb, nil
}

func clip(s string) string {
	if len(s) > maxField {
		// Cutting may split a character; the store takes only valid UTF-8.
		return strings.ToValidUTF8(s[:maxField], "")
	}
	return s
}
