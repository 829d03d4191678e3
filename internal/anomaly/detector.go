package anomaly

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
)

// Store is what the Detector needs: *store.DB.
type Store interface {
	// WithDetectorLock runs fn while this replica alone holds the
	// detector's lock, and reports whether it ran.
	WithDetectorLock(ctx context.Context, fn func(ctx context.Context) error) (bool, error)
	UsageWindows(ctx context.Context, baselineFrom, from, to, learnedBefore time.Time) ([]policy.TokenWindow, error)
	// OpenFlag reports whether the flag was newly opened.
	OpenFlag(ctx context.Context, f *policy.Flag, quietSince time.Time) (bool, error)
	OpenFlagCounts(ctx context.Context) (map[policy.FlagKind]int64, error)
	PruneMinutes(ctx context.Context, before, sightingsBefore time.Time) error
}

// DetectorConfig shapes a Detector.
type DetectorConfig struct {
	Thresholds
	// Interval is how often a run happens (on whichever replica takes
	// the lock); Settle is how long after a minute ends its counts are
	// taken as complete (the recorders' flush interval, and some).
	Interval, Settle time.Duration
	// KeepSightings is how long a network range or site not seen again is
	// remembered for a token.
	KeepSightings time.Duration
	// Timeout bounds one run.
	Timeout time.Duration
}

// DefaultDetectorConfig returns the defaults.
func DefaultDetectorConfig() DetectorConfig {
	return DetectorConfig{Thresholds: DefaultThresholds(), Interval: time.Minute, Settle: 30 * time.Second,
		KeepSightings: 30 * 24 * time.Hour, Timeout: 30 * time.Second}
}

// Validate reports a setting that cannot be used.
func (c DetectorConfig) Validate() error {
	if err := c.Thresholds.Validate(); err != nil {
		return err
	}
	if c.Interval <= 0 || c.Settle < 0 || c.KeepSightings <= 0 || c.Timeout <= 0 {
		return fmt.Errorf("the detector's interval, settle time, sightings kept and run timeout must be positive")
	}
	return nil
}

// Detector opens flags from the fleet's sums.
type Detector struct {
	store  Store
	cfg    DetectorConfig
	now    func() time.Time
	log    *slog.Logger
	notify func(ctx context.Context, f policy.Flag)
	gauge  func(map[policy.FlagKind]int64)
}

// NewDetector returns a Detector. notify hears of each flag newly opened
// (the webhook; nil for none); gauge of the fleet's open flags by kind
// after each run (nil for none).
func NewDetector(s Store, cfg DetectorConfig, now func() time.Time, log *slog.Logger,
	notify func(ctx context.Context, f policy.Flag), gauge func(map[policy.FlagKind]int64)) (*Detector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid config: %w", err)
	}
	if notify == nil {
		notify = func(context.Context, policy.Flag) {}
	}
	if gauge == nil {
		gauge = func(map[policy.FlagKind]int64) {}
	}
	return &Detector{store: s, cfg: cfg, now: now, log: log, notify: notify, gauge: gauge}, nil
}

// Run runs every interval until ctx ends.
func (d *Detector) Run(ctx context.Context) {
	t := time.NewTicker(d.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := d.RunOnce(ctx); err != nil {
				d.log.Warn("anomaly: detection run failed; the next one covers its window", "err", err)
			}
		}
	}
}

// RunOnce runs detection once, if no other replica is at it, and returns
// the flags it newly opened. Every replica reads the open flags' count
// for its gauge, whoever ran.
func (d *Detector) RunOnce(ctx context.Context) ([]policy.Flag, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	var opened []policy.Flag
	_, err := d.store.WithDetectorLock(ctx, func(ctx context.Context) error {
		var err error
		opened, err = d.detect(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	for _, f := range opened {
		d.notify(ctx, f)
	}
	counts, err := d.store.OpenFlagCounts(ctx)
	if err != nil {
		return opened, err
	}
	d.gauge(counts)
	return opened, nil
}

// detect reads the last complete window and opens what it finds.
func (d *Detector) detect(ctx context.Context) ([]policy.Flag, error) {
	to := d.now().Add(-d.cfg.Settle).Truncate(time.Minute)
	from := to.Add(-d.cfg.Window)
	windows, err := d.store.UsageWindows(ctx, from.Add(-d.cfg.Baseline), from, to, from.Add(-d.cfg.Learn))
	if err != nil {
		return nil, err
	}
	var opened []policy.Flag
	for _, w := range windows {
		for _, found := range d.cfg.Evaluate(w, from) {
			f := policy.Flag{TokenID: w.TokenID, AccountID: w.AccountID, Kind: found.Kind, Evidence: found.Evidence}
			// A flag resolved within the window is not opened again for
			// what the window still holds.
			isNew, err := d.store.OpenFlag(ctx, &f, to.Add(-d.cfg.Window))
			if err != nil {
				return opened, err
			}
			if isNew {
				d.log.Info("anomaly: flag opened", "token", f.TokenID, "kind", string(f.Kind), "evidence", string(f.Evidence))
				opened = append(opened, f)
			}
		}
	}
	return opened, d.store.PruneMinutes(ctx, from.Add(-d.cfg.Baseline), to.Add(-d.cfg.KeepSightings))
}
