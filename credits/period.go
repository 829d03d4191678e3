package credits

import (
	"fmt"
	"time"
)

// Period is how long credits count before they start again.
type Period string

// Periods, each starting on a UTC boundary.
const (
	Month Period = "month" // calendar month (the default)
	Week  Period = "week"  // ISO week, from Monday
	Day   Period = "day"
	Hour  Period = "hour"
)

// ParsePeriod parses month, week, day or hour.
func ParsePeriod(s string) (Period, error) {
	switch p := Period(s); p {
	case Month, Week, Day, Hour:
		return p, nil
	}
	return "", fmt.Errorf("credit period %q: want month, week, day or hour", s)
}

// Start returns the start of the period that holds t.
func (p Period) Start(t time.Time) time.Time {
	t = t.UTC()
	y, m, d := t.Date()
	switch p {
	case Hour:
		return t.Truncate(time.Hour)
	case Day:
		return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	case Week:
		back := (int(t.Weekday()) + 6) % 7 // days since Monday
		return time.Date(y, m, d-back, 0, 0, 0, 0, time.UTC)
	}
	return time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
}
