package policy

import (
	"fmt"
	"time"
)

// Period is how long credits count before they start again: a token's
// credit limit and an account's quota are per period.
type Period string

// Periods, each starting on a UTC boundary.
const (
	PeriodMonth Period = "month" // calendar month (the default)
	PeriodWeek  Period = "week"  // ISO week, from Monday
	PeriodDay   Period = "day"
	PeriodHour  Period = "hour"
)

// ParsePeriod parses month, week, day or hour.
func ParsePeriod(s string) (Period, error) {
	switch p := Period(s); p {
	case PeriodMonth, PeriodWeek, PeriodDay, PeriodHour:
		return p, nil
	}
	return "", fmt.Errorf("credit period %q: want month, week, day or hour", s)
}

// Start returns the start of the period that holds t.
func (p Period) Start(t time.Time) time.Time {
	t = t.UTC()
	y, m, d := t.Date()
	switch p {
	case PeriodHour:
		return t.Truncate(time.Hour)
	case PeriodDay:
		return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	case PeriodWeek:
		back := (int(t.Weekday()) + 6) % 7 // days since Monday
		return time.Date(y, m, d-back, 0, 0, 0, 0, time.UTC)
	}
	return time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
}
