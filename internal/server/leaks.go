package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/manage"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/scanning"
	"github.com/tollgate/tollgate/internal/store"
)

// SecretScanningConfig turns on the GitHub secret-scanning endpoint
// (POST /v1/secret-scanning/github on the HTTP listener).
type SecretScanningConfig struct {
	// Keys is the file or URL of GitHub's public keys; "" leaves the
	// endpoint off.
	Keys string
	// KeysRefetch bounds how often the keys are read again for a
	// signature by an identifier not seen yet.
	KeysRefetch time.Duration
	scanning.Config
}

// secretScanningPath is where GitHub sends its reports.
const secretScanningPath = "POST /v1/secret-scanning/github"

// leakActor is the audit log's name for what acted on a report.
const leakActor = "secret-scanning:" + scanning.Reporter

// leakActions acts on secret-scanning reports through the token service,
// as the operator (whose policy, --secret-scanning-*, it carries out: it
// may disable even an account's secret token), auditing each action as
// the Tokens API does.
type leakActions struct {
	db  *store.DB
	svc *manage.Service
}

var _ scanning.TokenActions = leakActions{}

func (a leakActions) TokenByHash(ctx context.Context, h policy.Hash) (*policy.Token, *policy.Account, error) {
	return a.db.TokenByHash(ctx, h)
}

func (a leakActions) DisableToken(ctx context.Context, id, reason string) error {
	op := policy.OperatorPrincipal()
	t, err := a.svc.Token(ctx, op, id)
	if err != nil {
		return err
	}
	if !t.Enabled {
		return scanning.ErrAlreadyDisabled
	}
	if _, err := a.svc.SetEnabled(ctx, op, id, false); err != nil {
		return err
	}
	return a.audit(ctx, t.AccountID, "token.disable", id, map[string]any{"fields": []string{"enabled"}, "reason": reason})
}

func (a leakActions) RollToken(ctx context.Context, id, reason string) error {
	is, err := a.svc.RollToken(ctx, policy.OperatorPrincipal(), id, 0)
	if err != nil {
		return err
	}
	return a.audit(ctx, is.Token.AccountID, "token.roll", id, map[string]any{"grace_period": "0s", "reason": reason})
}

func (a leakActions) RecordLeak(ctx context.Context, l *policy.Leak) error {
	if err := a.db.RecordLeak(ctx, l); err != nil {
		return err
	}
	return a.audit(ctx, l.AccountID, "token.leak_reported", l.TokenID, map[string]any{
		"reporter": l.Reporter, "type": l.TokenType, "url": l.URL, "source": l.Source, "action": l.Action})
}

func (a leakActions) audit(ctx context.Context, accountID, action, target string, details map[string]any) error {
	b, err := json.Marshal(details)
	if err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	return a.db.Audit(ctx, policy.AuditEntry{AccountID: accountID, Actor: leakActor, Action: action, Target: target, Details: string(b)})
}

// secretScanning returns the endpoint's handler, or nil when it is off.
func (s *Server) secretScanning(svc *manage.Service, m *metrics) (http.Handler, error) {
	sc := s.cfg.SecretScanning
	if sc.Keys == "" {
		return nil, nil
	}
	keys, err := scanning.NewKeys(sc.Keys, sc.KeysRefetch, nil, time.Now)
	if err != nil {
		return nil, fmt.Errorf("invalid config: %w", err)
	}
	return scanning.NewHandler(keys, leakActions{db: s.db, svc: svc}, sc.Config, s.log, m.followLeaks())
}

// followLeaks registers the secret-scanning series: reported tokens by
// kind and outcome, and refused reports by code. Neither has a label per
// token or account.
func (m *metrics) followLeaks() scanning.Observer {
	reported := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_leak_reports_total",
		Help: "Tokens reported leaked by secret scanning, by kind and outcome (disabled, rolled, recorded, already_disabled, unknown, malformed).",
	}, []string{"kind", "outcome"})
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_leak_reports_refused_total", Help: "Secret-scanning reports refused whole, by code; nothing in them was acted on.",
	}, []string{"code"})
	m.reg.MustRegister(reported, refused)
	return scanning.Observer{
		Reported: func(kind, outcome string) { reported.WithLabelValues(kind, outcome).Inc() },
		Refused:  func(code string) { refused.WithLabelValues(code).Inc() },
	}
}
