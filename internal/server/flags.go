package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/anomaly"
	"github.com/tollgate/tollgate/internal/extauthz"
	"github.com/tollgate/tollgate/internal/policy"
)

// AnomalyConfig turns on anomaly flags: counting per token and minute on
// the Check path, and detection on whichever replica holds the lock.
type AnomalyConfig struct {
	// On turns counting and detection on (the default).
	On       bool
	Recorder anomaly.RecorderConfig
	Detector anomaly.DetectorConfig
	// WebhookURL, when set, hears of every flag opened.
	WebhookURL string
}

func (ac *AnomalyConfig) validate() error {
	if err := ac.Detector.Validate(); err != nil {
		return err
	}
	switch r := ac.Recorder; {
	case r.MaxTokens < 1 || r.StoreTimeout <= 0:
		return errors.New("the anomaly counts must allow at least 1 token and a store timeout > 0")
	case r.FlushInterval <= 0 || r.FlushInterval > ac.Detector.Settle:
		// A run must not read a minute some replica has not flushed yet.
		return fmt.Errorf("the anomaly counts' flush interval must be > 0 and at most the detector's settle time (%s)", ac.Detector.Settle)
	}
	return nil
}

// flagKinds are the kinds the open-flags gauge reports, all of them always.
var flagKinds = []policy.FlagKind{policy.FlagSpike, policy.FlagDenials, policy.FlagNewNetwork, policy.FlagNewSite, policy.FlagSecretInBrowser}

// watchAnomalies wraps the decider with the recorder and makes the
// detector; both are nil when anomaly flags are off.
func (s *Server) watchAnomalies(d extauthz.Decider, m *metrics) (extauthz.Decider, error) {
	ac := s.cfg.Anomaly
	if !ac.On {
		return d, nil
	}
	rec, err := anomaly.NewRecorder(d, s.db, ac.Recorder, time.Now, s.log)
	if err != nil {
		return nil, fmt.Errorf("invalid config: %w", err)
	}
	var notify func(context.Context, policy.Flag)
	if ac.WebhookURL != "" {
		notify = anomaly.Webhook(ac.WebhookURL, nil, s.log)
	}
	open := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tollgate_token_flags_open", Help: "Open anomaly flags in the whole fleet, by kind (read from the store after each detection run).",
	}, []string{"kind"})
	m.reg.MustRegister(open,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tollgate_anomaly_uncounted_total", Help: "Decisions this replica left out of anomaly counts because its window was full.",
		}, func() float64 { return float64(rec.Dropped()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tollgate_anomaly_flush_errors_total", Help: "Flushes of anomaly counts that could not be written (their counts are lost to flags).",
		}, func() float64 { return float64(rec.Failures()) }))
	det, err := anomaly.NewDetector(s.db, ac.Detector, time.Now, s.log, notify, func(counts map[policy.FlagKind]int64) {
		for _, k := range flagKinds {
			open.WithLabelValues(string(k)).Set(float64(counts[k]))
		}
	})
	if err != nil {
		return nil, err
	}
	s.recorder, s.detector = rec, det
	return rec, nil
}
