package e2e_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// startMeteredReplicas starts n replicas on databaseURL that flush usage
// every flushInterval.
func startMeteredReplicas(tb testing.TB, databaseURL string, n int, extra ...string) []*replica {
	tb.Helper()
	reps := make([]*replica, n)
	for i := range reps {
		reps[i] = startReplica(tb, fmt.Sprintf("replica-%c", 'a'+i), databaseURL,
			append([]string{"--usage-flush-interval", flushInterval.String()}, extra...)...)
	}
	return reps
}

// stopGracefully sends SIGTERM to each replica, waits for it, and fails
// unless it exited 0.
func stopGracefully(tb testing.TB, reps ...*replica) {
	tb.Helper()
	for _, r := range reps {
		r.signal(tb, syscall.SIGTERM)
	}
	awaitExit(tb, reps...)
}

// awaitExit waits for each replica to exit, and fails unless it exited 0.
func awaitExit(tb testing.TB, reps ...*replica) {
	tb.Helper()
	for _, r := range reps {
		select {
		case <-r.exited:
		case <-time.After(10 * time.Second):
			tb.Fatalf("%s did not exit within 10s of SIGTERM", r.name)
		}
		if r.waitErr != nil {
			tb.Errorf("%s exit after SIGTERM: got %v, want status 0", r.name, r.waitErr)
		}
	}
}

// answer is an outcome and the headers that came with it: an allow's
// response_headers_to_add, or a deny's headers, by lower-case name.
type answer struct {
	outcome
	Headers map[string]string
}

// num returns a header's value as an integer.
func (a answer) num(name string) (int64, bool) {
	n, err := strconv.ParseInt(a.Headers[name], 10, 64)
	return n, err == nil
}

// meteredCheck sends one Check as r.check does, and keeps the headers.
func (r *replica) meteredCheck(c call) answer {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	resp, err := r.auth.Check(ctx, envoyRequest(c))
	a := answer{outcome: outcome{Took: time.Since(start)}, Headers: map[string]string{}}
	if err != nil {
		st := status.Convert(err)
		a.GRPC, a.Err = st.Code(), st.Message()
		return a
	}
	switch hr := resp.GetHttpResponse().(type) {
	case *authv3.CheckResponse_OkResponse:
		a.Allowed = resp.GetStatus().GetCode() == int32(codes.OK)
		if !a.Allowed {
			a.Bad = fmt.Sprintf("OkResponse with status %v", resp.GetStatus())
		}
		for _, h := range hr.OkResponse.GetResponseHeadersToAdd() {
			a.Headers[strings.ToLower(h.GetHeader().GetKey())] = h.GetHeader().GetValue()
		}
	case *authv3.CheckResponse_DeniedResponse:
		if resp.GetStatus().GetCode() == int32(codes.OK) {
			a.Bad = "DeniedResponse with status OK"
		}
		a.HTTP = int(hr.DeniedResponse.GetStatus().GetCode())
		var body struct {
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		if err := json.Unmarshal([]byte(hr.DeniedResponse.GetBody()), &body); err != nil {
			a.Bad = fmt.Sprintf("deny body %q: %v", hr.DeniedResponse.GetBody(), err)
		}
		a.DenyCode = body.Error.Code
		for _, h := range hr.DeniedResponse.GetHeaders() {
			a.Headers[strings.ToLower(h.GetHeader().GetKey())] = h.GetHeader().GetValue()
		}
	default:
		a.Bad = fmt.Sprintf("CheckResponse without an http_response: %v", resp)
	}
	return a
}

// hammerCredits sends Checks from perReplica goroutines per replica, each
// goroutine with calls[g % len(calls)], until done(replica) holds,
// pausing pace() (if pace is set) between Checks; see gets every answer.
// It fails tb if that takes longer than within, and returns how long it
// took.
func hammerCredits(tb testing.TB, reps []*replica, calls []call, perReplica int, within time.Duration,
	pace func() time.Duration, done func(ri int) bool, see func(ri, ci int, a answer)) time.Duration {
	tb.Helper()
	start := time.Now()
	deadline := start.Add(within)
	var wg sync.WaitGroup
	for ri, r := range reps {
		for g := range perReplica {
			ci := g % len(calls)
			wg.Go(func() {
				for !done(ri) && time.Now().Before(deadline) {
					see(ri, ci, r.meteredCheck(calls[ci]))
					if pace != nil {
						time.Sleep(pace())
					}
				}
			})
		}
	}
	wg.Wait()
	for ri, r := range reps {
		if !done(ri) {
			tb.Fatalf("%s: hammering not done within %v", r.name, within)
		}
	}
	return time.Since(start)
}

// creditTally counts what a hammering run saw and checks each answer: an
// allow with consistent credit headers, or a 402 with code.
type creditTally struct {
	limit int64
	code  string

	mu         sync.Mutex
	allowed    int
	refusals   int
	allowedBy  []int   // per replica
	allowedFor []int   // per call
	refusedFor []int   // per call
	refusedBy  [][]int // per replica, per call
	used       []int64 // x-credits-used of every allow
	problems   []string
	nProblems  int
}

func newCreditTally(replicas, calls int, limit int64, code string) *creditTally {
	tl := &creditTally{limit: limit, code: code, allowedBy: make([]int, replicas),
		allowedFor: make([]int, calls), refusedFor: make([]int, calls), refusedBy: make([][]int, replicas)}
	for i := range tl.refusedBy {
		tl.refusedBy[i] = make([]int, calls)
	}
	return tl
}

func (tl *creditTally) add(ri, ci int, a answer) {
	problem := creditHeaderProblem(a, tl.limit)
	tl.mu.Lock()
	defer tl.mu.Unlock()
	switch {
	case isAllowed(a.outcome):
		tl.allowed++
		tl.allowedBy[ri]++
		tl.allowedFor[ci]++
		if used, ok := a.num("x-credits-used"); ok {
			tl.used = append(tl.used, used)
		}
	case a.denied(tl.code) && a.HTTP == 402:
		tl.refusals++
		tl.refusedFor[ci]++
		tl.refusedBy[ri][ci]++
	default:
		problem = fmt.Sprintf("got %v, want allow or 402 %s", a.outcome, tl.code)
	}
	if problem != "" {
		tl.nProblems++
		if len(tl.problems) < 10 {
			tl.problems = append(tl.problems, fmt.Sprintf("replica %d: %s", ri, problem))
		}
	}
}

func (tl *creditTally) allowedCount() int {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return tl.allowed
}

// refused reports whether replica ri has refused every call at least once.
func (tl *creditTally) refused(ri int) bool {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return !slices.Contains(tl.refusedBy[ri], 0)
}

// allRefused reports whether every replica has refused every call: a
// replica that refuses holds no credits, so none are left anywhere.
func (tl *creditTally) allRefused() bool {
	for ri := range tl.refusedBy {
		if !tl.refused(ri) {
			return false
		}
	}
	return true
}

func (tl *creditTally) report(tb testing.TB) {
	tb.Helper()
	for _, p := range tl.problems {
		tb.Errorf("%s", p)
	}
	if tl.nProblems > len(tl.problems) {
		tb.Errorf("… and %d more bad answers", tl.nProblems-len(tl.problems))
	}
}

// checkUsedSlots checks the x-credits-used of the allows. A replica
// reports the reserved total of its last reservation less its unspent
// block, so each allowed credit reports the slot it was reserved in:
// never twice, and with nothing lost, exactly 1 to n.
func (tl *creditTally) checkUsedSlots(tb testing.TB, n int, all bool) {
	tb.Helper()
	used := slices.Clone(tl.used)
	slices.Sort(used)
	for i := 1; i < len(used); i++ {
		if used[i] == used[i-1] {
			tb.Errorf("x-credits-used %d was reported on two allows; each allowed credit has its own slot", used[i])
			return
		}
	}
	if all && (len(used) != n || used[0] != 1 || used[len(used)-1] != int64(n)) {
		tb.Errorf("x-credits-used of the allows: got %d values from %d to %d, want 1 to %d", len(used), used[0], used[len(used)-1], n)
	}
}

// creditHeaderProblem says how a's credit headers are wrong, if they are.
func creditHeaderProblem(a answer, limit int64) string {
	if !a.Allowed && a.HTTP != 402 {
		return ""
	}
	used, okU := a.num("x-credits-used")
	lim, okL := a.num("x-credits-limit")
	rem, okR := a.num("x-credits-remaining")
	cost, okC := a.num("x-credits-cost")
	switch {
	case !okU || !okL || !okR || !okC:
		return fmt.Sprintf("%v: credit headers missing or not numbers: %v", a.outcome, a.Headers)
	case lim != limit:
		return fmt.Sprintf("%v: x-credits-limit got %d, want %d", a.outcome, lim, limit)
	case a.Allowed && (cost != 1 || used < 1 || used > limit || rem != limit-used):
		return fmt.Sprintf("allow: got used %d, cost %d, remaining %d, want cost 1, 1 <= used <= %d, remaining = limit - used", used, cost, rem, limit)
	case !a.Allowed && (rem != 0 || used < limit):
		return fmt.Sprintf("402: got used %d, remaining %d, want used >= %d and remaining 0", used, rem, limit)
	}
	return ""
}

// untilEach polls every replica at once, every 10 ms, until cond holds for
// one of its answers, and returns how long each took; it fails tb past
// within. see gets every answer.
func untilEach(tb testing.TB, reps []*replica, c call, within time.Duration, what string, see func(answer), cond func(answer) bool) []time.Duration {
	tb.Helper()
	return untilEachSince(tb, reps, c, time.Now(), within, what, see, cond)
}

// untilEachSince is untilEach timed from since.
func untilEachSince(tb testing.TB, reps []*replica, c call, since time.Time, within time.Duration, what string,
	see func(answer), cond func(answer) bool) []time.Duration {
	tb.Helper()
	took := make([]time.Duration, len(reps))
	last := make([]answer, len(reps))
	var wg sync.WaitGroup
	for i, r := range reps {
		wg.Go(func() {
			for time.Since(since) < within+time.Second {
				a := r.meteredCheck(c)
				see(a)
				last[i] = a
				if cond(a) {
					took[i] = time.Since(since)
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
			took[i] = -1
		})
	}
	wg.Wait()
	for i, r := range reps {
		if took[i] < 0 || took[i] > within {
			tb.Errorf("%s: %s: took %v, want within %v (last: %v %v)", r.name, what, took[i], within, last[i].outcome, last[i].Headers)
		}
		took[i] = took[i].Round(time.Millisecond)
	}
	return took
}

// reservedCredits returns credit_usage.reserved of a token or account,
// over all periods.
func reservedCredits(tb testing.TB, db *sql.DB, subject string) int64 {
	tb.Helper()
	var n int64
	if err := db.QueryRow(`SELECT COALESCE(SUM(reserved), 0) FROM credit_usage WHERE subject = $1`, subject).Scan(&n); err != nil {
		tb.Fatalf("read credit_usage of %s: %v", subject, err)
	}
	return n
}

// usageTotal is a token's usage history summed over days.
type usageTotal struct {
	Requests, Credits int64
	Denials           map[string]int64
}

// usageFromSQL sums usage_daily and usage_denials for a token.
func usageFromSQL(tb testing.TB, db *sql.DB, tokenID string) usageTotal {
	tb.Helper()
	u := usageTotal{Denials: map[string]int64{}}
	if err := db.QueryRow(`SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(credits), 0) FROM usage_daily WHERE token_id = $1`,
		tokenID).Scan(&u.Requests, &u.Credits); err != nil {
		tb.Fatalf("read usage_daily of %s: %v", tokenID, err)
	}
	rows, err := db.Query(`SELECT code, SUM(count) FROM usage_denials WHERE token_id = $1 GROUP BY code`, tokenID)
	if err != nil {
		tb.Fatalf("read usage_denials of %s: %v", tokenID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var code string
		var n int64
		if err := rows.Scan(&code, &n); err != nil {
			tb.Fatalf("read usage_denials of %s: %v", tokenID, err)
		}
		u.Denials[code] = n
	}
	if err := rows.Err(); err != nil {
		tb.Fatalf("read usage_denials of %s: %v", tokenID, err)
	}
	return u
}

// usageFromCLI sums "tollgate usage --token ID" over today and yesterday
// (a run may straddle midnight UTC).
func usageFromCLI(tb testing.TB, databaseURL, tokenID string) usageTotal {
	tb.Helper()
	var days []struct {
		Requests int64            `json:"requests"`
		Credits  int64            `json:"credits"`
		Denials  map[string]int64 `json:"denials"`
	}
	mustJSON(tb, runCLI(tb, databaseURL, "usage", "--token", tokenID, "--days", "2"), &days)
	u := usageTotal{Denials: map[string]int64{}}
	for _, d := range days {
		u.Requests += d.Requests
		u.Credits += d.Credits
		for code, n := range d.Denials {
			u.Denials[code] += n
		}
	}
	return u
}

// rateField returns the integer parameter key of an IETF RateLimit or
// RateLimit-Policy field ("token";q=5;w=1), or -1.
func rateField(field, key string) int {
	for p := range strings.SplitSeq(field, ";") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(p), key+"="); ok {
			if n, err := strconv.Atoi(v); err == nil {
				return n
			}
		}
	}
	return -1
}

func ptrTo[T any](v T) *T { return &v }
