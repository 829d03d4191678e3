package bench

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// TestJudge checks the soak's oracle on a hand-made history: a token
// enabled until a write that disabled it ran from t+100ms to t+110ms.
func TestJudge(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	on := tokenState{enabled: true, domains: 0, datasets: 2}
	off := on
	off.enabled = false
	toks := []*soakToken{{id: "tok_1", history: []version{
		{start: t0, end: t0, state: on},
		{start: at(100), end: at(110), state: off},
	}}}
	v := soakVariant{fromApp: true}
	allow, disabled := Outcome{Allowed: true}, Outcome{Code: "token_disabled"}
	tests := map[string]struct {
		sent, recv int
		out        Outcome
		want       string // correct, window, wrong, error
	}{
		"allowed before the write":           {50, 51, allow, "correct"},
		"denied before the write":            {50, 51, disabled, "wrong"},
		"allowed while the write ran":        {105, 106, allow, "correct"},
		"denied while the write ran":         {105, 106, disabled, "correct"},
		"call spanning the write, allowed":   {90, 120, allow, "correct"},
		"call spanning the write, denied":    {90, 120, disabled, "correct"},
		"denied after the write":             {200, 201, disabled, "correct"},
		"allowed 0.5 s after the write":      {610, 611, allow, "window"},
		"allowed 2 s after the write":        {2110, 2111, allow, "wrong"},
		"an error":                           {200, 201, Outcome{Err: codes.Unavailable}, "error"},
		"allowed just after the write ended": {111, 112, allow, "window"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			rep := &SoakReport{Codes: map[string]int{}}
			judge(rep, toks, []answer{{token: 0, variant: v, sent: at(tc.sent), recv: at(tc.recv), out: tc.out}}, time.Second)
			got := map[bool]string{true: "correct"}[rep.Correct == 1]
			switch {
			case rep.InWindow == 1:
				got = "window"
			case rep.Wrong == 1:
				got = "wrong"
			case rep.Errors == 1:
				got = "error"
			}
			if got != tc.want {
				t.Errorf("got %s, want %s (%+v)", got, tc.want, rep)
			}
		})
	}
}

// TestExpect checks the soak's model of the rules against the order
// Evaluate applies them in.
func TestExpect(t *testing.T) {
	tests := []struct {
		s    tokenState
		v    soakVariant
		want string
	}{
		{tokenState{enabled: false, domains: 2, datasets: 1}, soakVariant{}, "token_disabled"},
		{tokenState{enabled: true, domains: 2, datasets: 2}, soakVariant{fromApp: true}, "referer_denied"},
		{tokenState{enabled: true, domains: 1, datasets: 2}, soakVariant{fromApp: false}, "referer_denied"},
		{tokenState{enabled: true, domains: 1, datasets: 2}, soakVariant{fromApp: true}, ""},
		{tokenState{enabled: true, domains: 0, datasets: 0}, soakVariant{sales: true}, "dataset_denied"},
		{tokenState{enabled: true, domains: 0, datasets: 1}, soakVariant{sales: false}, "dataset_denied"},
		{tokenState{enabled: true, domains: 0, datasets: 1}, soakVariant{sales: true}, ""},
	}
	for _, tc := range tests {
		if got := expect(tc.s, tc.v); got != tc.want {
			t.Errorf("expect(%+v, %+v) = %q, want %q", tc.s, tc.v, got, tc.want)
		}
	}
}
